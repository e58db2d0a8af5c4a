//! `spawnprof probes` names the kernel features it looked at, so that a
//! report of "stage X unavailable" carries what is needed to fix it.
use std::process::Command;

use spawnprof::probe::KernelBtf;
use spawnprof_tests::{require_root, spawnprof_bin};

#[test]
fn probes_lists_the_kernel_features_it_looked_at_before_the_plan() {
    require_root();
    let out = Command::new(spawnprof_bin())
        .arg("probes")
        .output()
        .expect("run spawnprof probes");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let features = text
        .split_once("kernel features looked at:\n")
        .and_then(|(_, rest)| rest.split_once("\nstage "))
        .map(|(features, _)| features)
        .unwrap_or_else(|| panic!("no features section before the plan:\n{text}"));
    for name in [
        "architecture",
        "BTF",
        "kprobes",
        "functions",
        "tracepoints",
        "raw prototypes",
        "struct fields",
    ] {
        assert!(
            features.lines().any(|l| l.trim_start().starts_with(name)),
            "no {name} line in:\n{features}"
        );
    }
    // The raw mmap_lock programs are chosen by where BTF puts `write`.
    if let Ok(btf) = KernelBtf::from_sys_fs()
        && let Some(at) = btf.raw_tracepoint_bool_arg("mmap_lock_start_locking")
    {
        let line = format!("mmap_lock_start_locking: first bool is argument {at}");
        assert!(features.contains(&line), "no {line:?} in:\n{features}");
    }
}
