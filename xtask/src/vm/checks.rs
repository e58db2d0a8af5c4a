//! What the full run asserts from what came back from the guest: each record
//! run's plan attaches the checked stages with the run's mechanism, and its
//! spawns carry what those mechanisms measure.
use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;

use super::binaries::Binaries;
use super::console::{Section, indent, ok_section, section};
use super::runs::{PATH_MISSES, RUNS, Run, SPAWN_COUNT};

/// Stages whose attach mechanism the runs pin down: the kernel functions
/// inside a fork, and the syscall stages that avoid syscall tracepoints.
const CHECKED_STAGES: [&str; 10] = [
    "first_run",
    "copy_page_range",
    "anon_vma_fork",
    "dup_mmap",
    "mm_lock_wait",
    "clone",
    "exec",
    "reap",
    "page_faults",
    "exec_prepare",
];

pub fn check_full(sections: &[Section], bins: &Binaries) -> Result<()> {
    if let Ok(probes) = section(sections, "probes") {
        println!("vm-test: spawnprof probes in the VM: {}", probes.describe());
    }
    let mut failures = Vec::new();
    for run in &RUNS {
        match assert_tiers(sections, run, bins.spawner.is_some()) {
            Ok(spawns) => println!(
                "vm-test: run {} ok: {} via {}, {spawns} {} spawns with {}, \
                 clone via kernel_clone, {} reaps seen{}",
                run.label,
                CHECKED_STAGES.join(", "),
                run.mechanism,
                run.method,
                if run.spawns_vfork(bins.spawner.is_some()) {
                    "the parent's release at begin_new_exec"
                } else {
                    "kernel_fn timings"
                },
                run.reap,
                if bins.spawner.is_some() {
                    ", PATH misses as failed exec attempts"
                } else {
                    ""
                }
            ),
            Err(e) => failures.push(format!(
                "run {} (`spawnprof record{}`, expects {}): {e:#}",
                run.label, run.flags, run.mechanism
            )),
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    if bins.spawner.is_none() {
        failures.push("note: the workload was the busybox fallback loop".to_string());
    }
    bail!("vm-test failed:\n{}", failures.join("\n"))
}

/// Checks one record run: its plan attaches CHECKED_STAGES with the run's
/// mechanism, and at least SPAWN_COUNT spawns of the run's method carry what
/// those tiers measure. Returns the number of such spawns. `with_spawner`:
/// false for the busybox fallback, whose loop always forks and has no PATH
/// misses.
fn assert_tiers(sections: &[Section], run: &Run, with_spawner: bool) -> Result<usize> {
    let d = run.dir;
    ok_section(sections, &format!("record-{d}"))?;
    check_plan(&ok_section(sections, &format!("summary-{d}"))?.body, run)?;
    let spawns_text = &ok_section(sections, &format!("spawns-{d}"))?.body;
    check_spawns(spawns_text, run, with_spawner)
}

/// summary.json's plan attaches every CHECKED_STAGES with the run's mechanism.
fn check_plan(summary_text: &str, run: &Run) -> Result<()> {
    let summary: Value = serde_json::from_str(summary_text)
        .with_context(|| format!("summary.json is not JSON:\n{}", indent(summary_text)))?;
    let plan = summary
        .get("plan")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            anyhow!(
                "summary.json has no \"plan\" array:\n{}",
                indent(summary_text)
            )
        })?;
    for stage in CHECKED_STAGES {
        let row = plan
            .iter()
            .find(|row| row.get("stage").and_then(Value::as_str) == Some(stage))
            .ok_or_else(|| {
                anyhow!(
                    "the plan has no row for stage {stage}; plan rows:\n{}",
                    indent(&plan.iter().map(json).collect::<Vec<_>>().join("\n"))
                )
            })?;
        ensure!(
            row.get("mechanism").and_then(Value::as_str) == Some(run.mechanism),
            "stage {stage} should use {} but the plan says {}",
            run.mechanism,
            json(row)
        );
    }
    Ok(())
}

/// At least SPAWN_COUNT spawns of the run's method (no threads), each with
/// what the run's tiers measure; returns how many there were.
fn check_spawns(spawns_text: &str, run: &Run, with_spawner: bool) -> Result<usize> {
    let vfork = run.spawns_vfork(with_spawner);
    let expected = if vfork { "vfork" } else { "fork" };
    let mut seen = 0;
    let mut bad = Vec::new();
    for (i, line) in spawns_text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let spawn: Value = serde_json::from_str(line)
            .with_context(|| format!("spawns.jsonl line {} is not JSON: {line}", i + 1))?;
        let method = spawn.get("method").and_then(Value::as_str);
        let thread = spawn.get("thread").and_then(Value::as_bool);
        if method != Some(expected) || thread != Some(false) {
            continue;
        }
        seen += 1;
        let mut problems = check_common(&spawn, run);
        problems.extend(if vfork {
            check_vfork_release(&spawn)
        } else {
            check_fork(&spawn)
        });
        if with_spawner && let Err(e) = check_exec_attempts(&spawn) {
            problems.push(e.to_string());
        }
        bad.extend(problems.into_iter().map(|p| format!("line {}: {p}", i + 1)));
    }
    ensure!(
        bad.is_empty(),
        "{} problems in {seen} {expected} spawns, e.g.\n{}",
        bad.len(),
        indent(&bad[..bad.len().min(3)].join("\n"))
    );
    ensure!(
        seen >= SPAWN_COUNT,
        "expected at least {SPAWN_COUNT} {expected} spawns (method {expected}, thread false), \
         found {seen} in {} lines of spawns.jsonl",
        spawns_text.lines().count()
    );
    Ok(seen)
}

fn ts(spawn: &Value, field: &str) -> Option<u64> {
    spawn
        .pointer(&format!("/ts/{field}"))
        .and_then(Value::as_u64)
}

/// What every spawn of a kernel-function tier has: the clone seen on
/// kernel_clone, the reap, the first run (schedule_tail) and its CPUs.
fn check_common(spawn: &Value, run: &Run) -> Vec<String> {
    let mut bad = Vec::new();
    // kernel_clone, not a syscall tracepoint, saw the clone.
    let syscall = spawn.get("syscall").and_then(Value::as_str);
    if syscall != Some("kernel_clone") {
        bad.push(format!("syscall {syscall:?}, expected \"kernel_clone\""));
    }
    if ts(spawn, "reap").is_none() {
        bad.push(format!("no reap time ({})", run.reap));
    }
    if ts(spawn, "first_run").is_none() {
        bad.push("no first run (schedule_tail)".to_string());
    }
    // schedule_tail runs on the child's first CPU: the placement data.
    let cpu = |f: &str| spawn.get(f).and_then(Value::as_u64);
    if cpu("parent_cpu").is_none() || cpu("child_first_cpu").is_none() {
        bad.push(format!(
            "no CPUs (parent_cpu {:?}, child_first_cpu {:?})",
            cpu("parent_cpu"),
            cpu("child_first_cpu")
        ));
    }
    bad
}

/// A fork copies the mm: the lock wait inside dup_mmap, CoW faults on
/// do_wp_page and the copy_page_range / anon_vma_fork times.
fn check_fork(spawn: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    // The lock wait inside dup_mmap, from uprobe_start_dup_mmap to
    // uprobe_dup_mmap, with no mmap_lock tracepoint attached.
    match (ts(spawn, "mm_lock_wait"), ts(spawn, "mm_copy_start")) {
        (Some(wait), Some(held)) if wait <= held => {}
        other => bad.push(format!(
            "no lock wait inside dup_mmap (mm_lock_wait, mm_copy_start) = {other:?}"
        )),
    }
    // The child writes to its stack, shared copy-on-write, before its
    // exec: do_wp_page sees it.
    let count = |f: &str| {
        spawn
            .pointer(&format!("/faults/{f}"))
            .and_then(Value::as_u64)
    };
    if count("pre_exec_cow").is_none_or(|c| c == 0) || count("total").is_none_or(|c| c == 0) {
        bad.push(format!(
            "no pre-exec CoW fault (do_wp_page) or no fault total (task counters): faults = {}",
            spawn.get("faults").map_or("absent".to_string(), json)
        ));
    }
    let positive = |field: &str| {
        spawn
            .pointer(&format!("/kernel_fn/{field}"))
            .and_then(Value::as_f64)
            .is_some_and(|v| v > 0.0)
    };
    let missing: Vec<&str> = [
        "copy_page_range_ns",
        "copy_page_range_calls",
        "anon_vma_fork_calls",
    ]
    .into_iter()
    .filter(|f| !positive(f))
    .collect();
    if !missing.is_empty() {
        bad.push(format!(
            "kernel_fn.{} not > 0: kernel_fn = {}",
            missing.join(", kernel_fn."),
            spawn.get("kernel_fn").map_or("absent".to_string(), json)
        ));
    }
    bad
}

/// A vfork-style spawn on a kernel before 6.10 (no sched_prepare_exec):
/// begin_new_exec marks the exec's point of no return, which releases the
/// suspended parent, and the parent returns after it.
fn check_vfork_release(spawn: &Value) -> Vec<String> {
    let (prepare, release, back) = (
        ts(spawn, "exec_prepare"),
        ts(spawn, "vfork_release"),
        ts(spawn, "clone_exit"),
    );
    match (prepare, release, back) {
        (Some(p), Some(r), Some(b)) if p == r && r <= b => Vec::new(),
        other => vec![format!(
            "no vfork release at begin_new_exec before the parent's return \
             (exec_prepare, vfork_release, clone_exit) = {other:?}"
        )],
    }
}

/// The spawner's PATH search, seen through the exec stage's kernel-function
/// tier: the PATH_MISSES made-up directories fail with ENOENT first, in
/// order, and the last attempt succeeds.
fn check_exec_attempts(spawn: &Value) -> Result<()> {
    let attempts = spawn
        .get("exec_attempts")
        .and_then(Value::as_array)
        .context("no exec_attempts")?;
    ensure!(
        attempts.len() > PATH_MISSES,
        "{} exec attempts, expected more than {PATH_MISSES}: {}",
        attempts.len(),
        json(&Value::Array(attempts.clone()))
    );
    for (n, a) in attempts.iter().take(PATH_MISSES).enumerate() {
        let path = a.get("path").and_then(Value::as_str).unwrap_or("");
        ensure!(
            path.ends_with(&format!("spawnprof-miss-{n}/true"))
                && a.get("ret").and_then(Value::as_i64) == Some(-2),
            "attempt {n} should be a failed (ENOENT) spawnprof-miss-{n}/true: {}",
            json(a)
        );
    }
    let last = attempts.last().expect("non-empty");
    ensure!(
        last.get("ret").and_then(Value::as_i64) == Some(0),
        "the last exec attempt did not succeed: {}",
        json(last)
    );
    Ok(())
}

pub fn print_shell(sections: &[Section]) -> Result<()> {
    let mut failed = Vec::new();
    for s in sections {
        println!("{}", s.describe());
        if s.rc != Some(0) {
            failed.push(s.name.clone());
        }
    }
    ensure!(failed.is_empty(), "failed in the VM: {}", failed.join(", "));
    Ok(())
}

/// Compact JSON for quoting values in error messages.
fn json(value: &Value) -> String {
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections_for(dir: &str, mechanism: &str, copy_ns: u64) -> Vec<Section> {
        let sec = |name: String, body: String| Section {
            name,
            rc: Some(0),
            body,
        };
        let rows: Vec<String> = CHECKED_STAGES
            .iter()
            .map(|stage| format!(r#"{{"stage":"{stage}","mechanism":"{mechanism}"}}"#))
            .chain([r#"{"stage":"exit","mechanism":"tracepoint"}"#.to_string()])
            .collect();
        let plan = format!(r#"{{"plan":[{}]}}"#, rows.join(","));
        let attempts = r#"[{"path":"/nonexistent/spawnprof-miss-0/true","ret":-2},
            {"path":"/nonexistent/spawnprof-miss-1/true","ret":-2},{"path":"/bin/true","ret":0}]"#
            .replace('\n', "");
        let fork = format!(
            r#"{{"syscall":"kernel_clone","method":"fork","thread":false,"parent_cpu":0,"child_first_cpu":1,"ts":{{"reap":7,"mm_lock_wait":3,"mm_copy_start":4,"first_run":5}},"faults":{{"pre_exec_cow":2,"total":90}},"exec_attempts":{attempts},"kernel_fn":{{"copy_page_range_ns":{copy_ns},"copy_page_range_calls":9,"anon_vma_fork_calls":3}}}}"#
        );
        let vfork = format!(
            r#"{{"syscall":"kernel_clone","method":"vfork","thread":false,"parent_cpu":0,"child_first_cpu":0,"ts":{{"reap":9,"first_run":2,"exec_prepare":5,"vfork_release":5,"clone_exit":6}},"exec_attempts":{attempts}}}"#
        );
        let thread = r#"{"syscall":"kernel_clone","method":"thread","thread":true,"kernel_fn":{}}"#;
        let spawns = [
            vec![thread.to_string()],
            vec![fork; SPAWN_COUNT],
            vec![vfork; SPAWN_COUNT],
        ]
        .concat()
        .join("\n");
        vec![
            sec(format!("record-{dir}"), String::new()),
            sec(format!("summary-{dir}"), plan),
            sec(format!("spawns-{dir}"), spawns),
        ]
    }

    /// `sections` with `from` replaced by `to` in every output.
    fn edited(sections: Vec<Section>, from: &str, to: &str) -> Vec<Section> {
        sections
            .into_iter()
            .map(|mut s| {
                s.body = s.body.replace(from, to);
                s
            })
            .collect()
    }

    #[test]
    fn tiers_pass_and_fail() {
        let (a, b) = (&RUNS[0], &RUNS[1]);
        assert_eq!(
            assert_tiers(&sections_for("a", "fentry", 5000), a, true).ok(),
            Some(SPAWN_COUNT)
        );
        assert_eq!(
            assert_tiers(&sections_for("b", "kprobe", 5000), b, true).ok(),
            Some(SPAWN_COUNT)
        );
        let wrong_tier = assert_tiers(&sections_for("b", "fentry", 5000), b, true).unwrap_err();
        assert!(format!("{wrong_tier:#}").contains(r#""mechanism":"fentry""#));
        let no_time = assert_tiers(&sections_for("a", "fentry", 0), a, true).unwrap_err();
        assert!(format!("{no_time:#}").contains("copy_page_range_ns"));
        let no_cpu: Vec<Section> = edited(
            sections_for("a", "fentry", 5000),
            r#""child_first_cpu":1,"#,
            "",
        );
        let no_cpu = assert_tiers(&no_cpu, a, true).unwrap_err();
        assert!(
            format!("{no_cpu:#}").contains("child_first_cpu"),
            "{no_cpu:#}"
        );
    }

    #[test]
    fn posix_spawn_runs_check_the_vfork_release_not_the_mm_copy() {
        let c = &RUNS[2];
        assert_eq!(c.method, "posix-spawn");
        assert_eq!(
            assert_tiers(&sections_for("c", "fentry", 0), c, true).ok(),
            Some(SPAWN_COUNT)
        );
        let unreleased: Vec<Section> =
            edited(sections_for("c", "fentry", 0), r#""vfork_release":5,"#, "");
        let err = assert_tiers(&unreleased, c, true).unwrap_err();
        assert!(format!("{err:#}").contains("vfork_release"), "{err:#}");
        // The busybox fallback forks in every run.
        assert_eq!(
            assert_tiers(&sections_for("c", "fentry", 5000), c, false).ok(),
            Some(SPAWN_COUNT)
        );
    }

    #[test]
    fn a_spawn_seen_by_syscall_tracepoints_or_without_its_path_misses_fails() {
        let a = &RUNS[0];
        let tracepoint_clone: Vec<Section> = edited(
            sections_for("a", "fentry", 5000),
            r#""syscall":"kernel_clone""#,
            r#""syscall":"clone""#,
        );
        let err = assert_tiers(&tracepoint_clone, a, true).unwrap_err();
        assert!(format!("{err:#}").contains("kernel_clone"), "{err:#}");
        let no_misses: Vec<Section> = edited(
            sections_for("a", "fentry", 5000),
            "spawnprof-miss-1",
            "elsewhere",
        );
        let err = assert_tiers(&no_misses, a, true).unwrap_err();
        assert!(format!("{err:#}").contains("spawnprof-miss-1"), "{err:#}");
        // Without the spawner (busybox loop) there is no PATH search to check.
        assert!(assert_tiers(&no_misses, a, false).is_ok());
    }
}
