//! Sampled on-CPU stacks: a fork of a large process shows the page-table
//! copy even on kernels where fentry and kprobes are unavailable.
use spawnprof_tests::{record, spawner_bin};

#[test]
fn a_big_fork_shows_copy_page_range_in_the_sampled_stacks() {
    let spawner = spawner_bin();
    let run = record(
        "stacks",
        &[
            "--sample-hz",
            "999",
            "--",
            spawner.to_str().unwrap(),
            "--method",
            "fork-exec",
            "--rss",
            "512M",
            "--count",
            "30",
            "--mode",
            "serial",
        ],
    );
    assert!(run.output.status.success(), "{}", run.stderr());
    assert!(
        run.summary.stack_sampling.starts_with("cpu-clock"),
        "{}",
        run.summary.stack_sampling
    );
    assert!(run.summary.stack_samples > 0);
    let folded = std::fs::read_to_string(run.dir.join("stacks.folded")).unwrap();
    let mut total = 0u64;
    let mut copying = 0u64;
    for line in folded.lines() {
        let (stack, count) = line.rsplit_once(' ').expect("`frames count` lines");
        let count: u64 = count.parse().expect("a sample count");
        assert!(!stack.is_empty());
        total += count;
        if stack.contains("dup_mmap_[k]") {
            copying += count;
        }
    }
    assert_eq!(total, run.summary.stack_samples);
    assert!(copying > 0, "no sample inside dup_mmap among {total}");
    assert!(folded.contains("copy_page_range_[k]"));
    let svg = std::fs::read_to_string(run.dir.join("stacks.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("copy_page_range"));
}
