//! Lost marks are counted and reported, never silent.
use spawnprof_tests::record;

#[test]
fn a_tiny_ring_buffer_under_a_burst_reports_an_exact_loss() {
    let run = record(
        "loss",
        &[
            "--ring-buffer",
            "4096",
            "--",
            "sh",
            "-c",
            "for i in $(seq 300); do /bin/true & done; wait",
        ],
    );
    let s = &run.summary;
    assert!(
        s.lost_marks_total > 0,
        "a one-page ring buffer must overflow under 300 parallel spawns"
    );
    assert_eq!(s.lost_marks_total, s.lost_marks.values().sum::<u64>());
    let err = run.stderr();
    assert!(
        err.contains("lost marks") && err.contains("WARNING"),
        "{err}"
    );
    // Whatever arrived is still turned into records, marked incomplete where needed.
    assert!(!run.records.is_empty());
}
