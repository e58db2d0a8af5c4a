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

/// `cargo xtask bench-overhead` times the hooks alone with
/// `SPAWNPROF_BENCH_EMPTY_PROGRAMS=1`: every tracepoint program is then
/// replaced by one that returns at once, on the same hooks, and no spawn
/// is recorded. The stand-ins must really run at each spawn, and the real
/// programs must not.
#[test]
fn the_benchs_empty_programs_run_on_every_hook_and_record_nothing() {
    require_root();
    let dir = spawnprof_tests::out_dir("empty-programs");
    let out = Command::new(spawnprof_bin())
        .env("SPAWNPROF_BENCH_EMPTY_PROGRAMS", "1")
        .args([
            "record",
            "--force",
            "--no-live",
            "--low-overhead",
            "--probe-cost",
            "-o",
        ])
        .arg(&dir)
        .arg("--")
        .arg(spawnprof_tests::spawner_bin())
        .args([
            "--method",
            "posix-spawn",
            "--count",
            "50",
            "--mode",
            "serial",
        ])
        .output()
        .expect("run spawnprof record");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("returns at once"), "no warning:\n{stderr}");
    let summary = spawnprof_tests::summary_json(&dir);
    let records = spawnprof_tests::records_json(&dir);
    // The command's own record is opened as tracing starts; no spawn has one.
    assert!(
        records.len() <= 1 && records.iter().all(|r| r["root"] == true),
        "spawns were recorded: {records:#?}"
    );
    let programs = summary["probe_cost"]["programs"]
        .as_array()
        .unwrap_or_else(|| panic!("no probe_cost.programs: {summary:#}"));
    let runs = |name: &str| {
        programs
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["runs"].as_u64())
    };
    // The clone, fork, exec and exit hooks each fire once a spawn at least.
    let stand_in_runs =
        runs("empty_tracepoint").unwrap_or(0) + runs("empty_raw_tracepoint").unwrap_or(0);
    assert!(
        stand_in_runs >= 4 * 50,
        "stand-ins ran {stand_in_runs} times: {programs:#?}"
    );
    // Only the programs that ran are listed.
    let real: Vec<&str> = programs
        .iter()
        .filter_map(|p| p["name"].as_str())
        .filter(|name| !name.starts_with("empty_"))
        .collect();
    assert!(real.is_empty(), "real programs ran: {real:?}");
}
