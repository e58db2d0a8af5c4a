//! What the full test asserts from what came back from a guest: each record
//! run's plan resolved every stage to the mechanism docs/KERNELS.md expects
//! on that kernel, and its spawns carry data for exactly the stages that
//! resolved to something.
use std::collections::BTreeSet;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;

use super::binaries::Binaries;
use super::console::{Section, indent, ok_section, section};
use super::expect::{self, Expectations};
use super::guests::Guest;
use super::runs::{PATH_MISSES, RAW_METHODS, Run, SPAWN_COUNT, runs_for};

/// What one run on one kernel must show.
struct Expected<'a> {
    /// (stage, mechanism) for every stage of the plan.
    stages: Vec<(&'a str, &'a str)>,
    /// The stages whose data is not asserted: known gaps.
    unchecked: Vec<&'a str>,
}

impl<'a> Expected<'a> {
    fn new(exp: &'a Expectations, kernel: &str, flags: &str) -> Result<Expected<'a>> {
        let stages = exp.table(flags)?.column(kernel)?;
        let unchecked = stages
            .iter()
            .filter(|&&(stage, m)| exp.gap(kernel, stage, m).is_some())
            .map(|&(stage, _)| stage)
            .collect();
        Ok(Expected { stages, unchecked })
    }

    fn mechanism(&self, stage: &str) -> Option<&'a str> {
        self.stages
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, m)| *m)
    }
}

/// Checks every record run of `guest`; returns a line per run, and a
/// `SKIPPED:` line for each known gap it did not assert.
pub fn check_full(guest: &Guest, sections: &[Section], bins: &Binaries) -> Result<Vec<String>> {
    let exp = expect::expectations()?;
    let with_spawner = bins.spawner.is_some();
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    let mut resolved = BTreeSet::new();
    for run in runs_for(guest) {
        let what = format!(
            "run {} (`spawnprof record {}`, {} spawns)",
            run.label, run.flags, run.method
        );
        let outcome = Expected::new(&exp, guest.name, run.flags).and_then(|expected| {
            resolved.extend(expected.stages.iter().copied());
            if !expected.unchecked.is_empty() {
                lines.push(format!(
                    "SKIPPED: vm-test [{}] run {}: {} data not asserted (known gaps, docs/KERNELS.md)",
                    guest.name,
                    run.label,
                    expected.unchecked.join(", ")
                ));
            }
            assert_run(sections, run, &expected, with_spawner)
        });
        match outcome {
            Ok(spawns) => lines.push(format!(
                "{what}: plan as expected, {spawns} spawns with the data of every stage it resolved{}",
                section(sections, &format!("record-{}", run.dir()))
                    .ok()
                    .and_then(|s| s.seconds)
                    .map_or(String::new(), |s| format!(" ({s:.1} s)"))
            )),
            Err(e) => failures.push(format!("{what}: {e:#}")),
        }
    }
    failures.extend(stale_gaps(&exp, guest.name, &resolved));
    if with_spawner {
        for check in [check_raw_methods, check_serve] {
            match check(sections) {
                Ok(line) => lines.push(line),
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
    }
    if failures.is_empty() {
        return Ok(lines);
    }
    if !with_spawner {
        failures.push("note: the workload was the busybox fallback loop".to_string());
    }
    bail!("{}", failures.join("\n"))
}

/// `spawnprof serve` counted every fork of the spawner, with a clone and a
/// dup_mmap duration each and exec durations, and stopped cleanly on SIGTERM.
fn check_serve(sections: &[Section]) -> Result<String> {
    let s = ok_section(sections, "serve")?;
    let body = &s.body;
    let n = super::runs::SERVE_FORKS;
    ensure!(
        body.contains("serve exit 0"),
        "serve did not exit 0 on SIGTERM:\n{}",
        indent(body)
    );
    let series = |name: &str, extra: &str| {
        format!("{name}{{comm=\"spawnprof-spawn\",method=\"fork\"{extra}}} {n}")
    };
    let mut want = vec![series("spawnprof_spawns_total", "")];
    // Not exec: 5.10's kretprobes miss some execve returns (KERNELS.md).
    for stage in ["clone", "dup_mmap"] {
        want.push(series(
            "spawnprof_stage_duration_seconds_count",
            &format!(",stage=\"{stage}\""),
        ));
    }
    for w in &want {
        ensure!(
            body.lines().any(|l| l == w),
            "serve: no `{w}` in:\n{}",
            indent(body)
        );
    }
    ensure!(
        body.lines().any(|l| l.starts_with(
            "spawnprof_stage_duration_seconds_count{comm=\"spawnprof-spawn\",method=\"fork\",stage=\"exec\"}"
        )),
        "serve: no exec durations in:\n{}",
        indent(body)
    );
    let stages = body.lines().filter(|l| l.contains("stage=\"")).count();
    Ok(format!(
        "serve: {n} forks counted, {stages} stage histograms, clean stop"
    ))
}

/// Each of RAW_METHODS ran (its result line is JSON with a rate).
fn check_raw_methods(sections: &[Section]) -> Result<String> {
    let s = ok_section(sections, "raw-methods")?;
    let results = s
        .body
        .lines()
        .filter(|l| l.starts_with('{') && l.contains("\"spawns_per_sec\""))
        .count();
    ensure!(
        results == RAW_METHODS.len(),
        "{results} spawner results for {} methods: {}",
        RAW_METHODS.len(),
        s.describe()
    );
    Ok(format!("spawner methods {} ran", RAW_METHODS.join(", ")))
}

/// Known gaps of `kernel` whose stage no run resolved to their mechanism:
/// fixed or moved, so the document must say so.
fn stale_gaps(exp: &Expectations, kernel: &str, resolved: &BTreeSet<(&str, &str)>) -> Vec<String> {
    exp.gaps
        .iter()
        .filter(|g| g.kernels.iter().any(|k| k == kernel))
        .flat_map(|g| g.stages.iter().map(move |stage| (g, stage)))
        .filter(|(g, stage)| !resolved.contains(&(stage.as_str(), g.mechanism.as_str())))
        .map(|(g, stage)| {
            format!(
                "docs/KERNELS.md lists {stage} via {} as a known gap on {kernel} ({}), but no \
                 run resolves it so: remove it from the gaps",
                g.mechanism, g.why
            )
        })
        .collect()
}

/// Checks one record run: its plan, then its spawns. Returns the number of
/// spawns of the run's method. `with_spawner`: false for the busybox
/// fallback, whose loop always forks and has no PATH misses.
fn assert_run(
    sections: &[Section],
    run: &Run,
    expected: &Expected,
    with_spawner: bool,
) -> Result<usize> {
    let d = run.dir();
    ok_section(sections, &format!("record-{d}"))?;
    check_plan(
        &ok_section(sections, &format!("summary-{d}"))?.body,
        &expected.stages,
    )?;
    let spawns_text = &ok_section(sections, &format!("spawns-{d}"))?.body;
    check_spawns(spawns_text, run, expected, with_spawner)
}

/// summary.json's plan resolved every stage as expected, and has no stage
/// the expectation does not name.
fn check_plan(summary_text: &str, expected: &[(&str, &str)]) -> Result<()> {
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
    let mut wrong = Vec::new();
    for (stage, mechanism) in expected {
        let row = plan.iter().find(|r| field(r, "stage") == *stage);
        match row {
            Some(r) if same_mechanism(field(r, "mechanism"), mechanism) => {}
            Some(r) => wrong.push(format!(
                "{stage}: expected {mechanism}, plan says {}",
                describe_row(r)
            )),
            None => wrong.push(format!(
                "{stage}: expected {mechanism}, the plan has no row"
            )),
        }
    }
    for row in plan {
        let stage = field(row, "stage");
        if !expected.iter().any(|(s, _)| *s == stage) {
            wrong.push(format!(
                "{stage}: not in docs/KERNELS.md (plan says {})",
                describe_row(row)
            ));
        }
    }
    ensure!(
        wrong.is_empty(),
        "the plan differs from docs/KERNELS.md:\n{}",
        indent(&wrong.join("\n"))
    );
    Ok(())
}

fn field<'a>(row: &'a Value, name: &str) -> &'a str {
    row.get(name).and_then(Value::as_str).unwrap_or("")
}

/// summary.json writes `rawtracepoint` where `spawnprof probes` and the
/// docs write `raw_tracepoint`.
fn same_mechanism(json: &str, doc: &str) -> bool {
    json.replace('_', "") == doc.replace('_', "")
}

/// A plan row's mechanism and why better ones were rejected, on one line.
fn describe_row(row: &Value) -> String {
    let rejected: Vec<String> = row
        .get("rejected")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| format!("{} rejected: {}", field(r, "mechanism"), field(r, "reason")))
        .collect();
    let mechanism = field(row, "mechanism");
    if rejected.is_empty() {
        mechanism.to_string()
    } else {
        format!("{mechanism} ({})", rejected.join("; "))
    }
}

/// At least SPAWN_COUNT spawns of the run's method (no threads), each
/// consistent with the expected stages; returns how many there were.
fn check_spawns(
    spawns_text: &str,
    run: &Run,
    expected: &Expected,
    with_spawner: bool,
) -> Result<usize> {
    let vfork = run.spawns_vfork(with_spawner);
    let method = if vfork { "vfork" } else { "fork" };
    let mut seen = 0;
    let mut bad = Vec::new();
    for (i, line) in spawns_text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let spawn: Value = serde_json::from_str(line)
            .with_context(|| format!("spawns.jsonl line {} is not JSON: {line}", i + 1))?;
        if spawn.get("method").and_then(Value::as_str) != Some(method)
            || spawn.get("thread").and_then(Value::as_bool) != Some(false)
        {
            continue;
        }
        seen += 1;
        let mut problems = check_spawn(&spawn, expected, vfork);
        let exec_checked = !expected.unchecked.contains(&"exec");
        if with_spawner
            && exec_checked
            && let Err(e) = check_exec_attempts(&spawn)
        {
            problems.push(e.to_string());
        }
        bad.extend(problems.into_iter().map(|p| format!("line {}: {p}", i + 1)));
    }
    ensure!(
        bad.is_empty(),
        "{} problems in {seen} {method} spawns, e.g.\n{}",
        bad.len(),
        indent(&bad[..bad.len().min(3)].join("\n"))
    );
    ensure!(
        seen >= SPAWN_COUNT,
        "expected at least {SPAWN_COUNT} {method} spawns (thread false), found {seen} in {} \
         lines of spawns.jsonl",
        spawns_text.lines().count()
    );
    Ok(seen)
}

/// Every stage shows data in the spawn exactly when it resolved to a
/// mechanism; the clone was seen where the mechanism says; a vfork parent
/// is released at the exec's prepare point when there is one.
fn check_spawn(spawn: &Value, expected: &Expected, vfork: bool) -> Vec<String> {
    let mut bad = Vec::new();
    let mechanism = |stage: &str| expected.mechanism(stage);
    for (stage, mech) in &expected.stages {
        if expected.unchecked.contains(stage) {
            continue;
        }
        let available = !same_mechanism("unavailable", mech);
        match shows(stage, spawn, vfork) {
            Some(shown) if shown != available => bad.push(format!(
                "stage {stage} is {mech} but the spawn {} its data: {}",
                if shown { "has" } else { "lacks" },
                evidence(spawn)
            )),
            _ => {}
        }
    }
    let syscall = spawn.get("syscall").and_then(Value::as_str);
    let by_function = matches!(mechanism("clone"), Some("fentry" | "kprobe"));
    let syscall_ok = if by_function {
        syscall == Some("kernel_clone")
    } else {
        matches!(syscall, Some("clone" | "clone3" | "fork" | "vfork"))
    };
    if !syscall_ok {
        bad.push(format!(
            "syscall {syscall:?} does not fit clone via {}",
            mechanism("clone").unwrap_or("?")
        ));
    }
    if vfork && mechanism("exec_prepare").is_some_and(|m| m != "unavailable") {
        bad.extend(check_vfork_release(spawn));
    }
    bad
}

/// Whether `spawn` has data from `stage`; None where the stage says nothing
/// about this kind of spawn (the mm copy of a vfork, which shares the mm).
fn shows(stage: &str, spawn: &Value, vfork: bool) -> Option<bool> {
    let ts = |f: &str| ts(spawn, f).is_some();
    let number = |pointer: &str| spawn.pointer(pointer).and_then(Value::as_u64);
    let duration = |f: &str| number(&format!("/durations/{f}")).is_some();
    let positive = |pointer: &str| number(pointer).is_some_and(|n| n > 0);
    let fork_only = |shown: bool| (!vfork).then_some(shown);
    Some(match stage {
        "clone" => ts("clone_enter") && ts("clone_exit"),
        "copy_process" => duration("copy_process"),
        "dup_mmap" => return fork_only(duration("dup_mmap")),
        "mm_lock_wait" => return fork_only(duration("mm_lock_wait")),
        "copy_page_range" => {
            return fork_only(
                positive("/kernel_fn/copy_page_range_calls")
                    && positive("/kernel_fn/copy_page_range_ns"),
            );
        }
        "anon_vma_fork" => return fork_only(positive("/kernel_fn/anon_vma_fork_calls")),
        "fork_done" => ts("fork_done"),
        "wakeup_new" => ts("wakeup_new"),
        // schedule_tail runs on the child's first CPU: the placement data.
        "first_run" => {
            ts("first_run")
                && number("/parent_cpu").is_some()
                && number("/child_first_cpu").is_some()
        }
        "exec" => ts("exec_enter") && ts("exec_return"),
        "exec_prepare" => ts("exec_prepare"),
        "exec_done" => ts("exec_done"),
        "exit" => ts("exit"),
        "reap" => ts("reap"),
        // The child writes to its stack, shared copy-on-write, before its
        // exec; the total comes from the task counters.
        "page_faults" => {
            return fork_only(positive("/faults/pre_exec_cow") && positive("/faults/total"));
        }
        _ => return None,
    })
}

/// The parts of a spawn the stage checks read, for messages.
fn evidence(spawn: &Value) -> String {
    ["ts", "durations", "kernel_fn", "faults"]
        .iter()
        .map(|f| format!("{f} = {}", spawn.get(f).map_or("absent".to_string(), json)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ts(spawn: &Value, field: &str) -> Option<u64> {
    spawn
        .pointer(&format!("/ts/{field}"))
        .and_then(Value::as_u64)
}

/// A vfork-style spawn: the exec's prepare point (begin_new_exec or
/// sched_prepare_exec) releases the suspended parent, which returns after it.
fn check_vfork_release(spawn: &Value) -> Vec<String> {
    let (prepare, release, back) = (
        ts(spawn, "exec_prepare"),
        ts(spawn, "vfork_release"),
        ts(spawn, "clone_exit"),
    );
    match (prepare, release, back) {
        (Some(p), Some(r), Some(b)) if p == r && r <= b => Vec::new(),
        other => vec![format!(
            "no vfork release at the exec's prepare point before the parent's return \
             (exec_prepare, vfork_release, clone_exit) = {other:?}"
        )],
    }
}

/// The spawner's PATH search: the PATH_MISSES made-up directories fail with
/// ENOENT first, in order, and the last attempt succeeds.
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

/// The `--shell` commands' outputs, failing if any failed.
pub fn shell_outputs(sections: &[Section]) -> Result<Vec<String>> {
    let failed: Vec<&str> = sections
        .iter()
        .filter(|s| s.rc != Some(0))
        .map(|s| s.name.as_str())
        .collect();
    let outputs = sections.iter().map(Section::describe).collect();
    if failed.is_empty() {
        return Ok(outputs);
    }
    bail!(
        "failed in the VM: {}\n{}",
        failed.join(", "),
        outputs.join("\n")
    )
}

/// Compact JSON for quoting values in error messages.
fn json(value: &Value) -> String {
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::runs::RUNS;

    /// A kernel with every tier: the kernel functions where spawnprof has
    /// them, raw tracepoints for the sched events.
    const FULL: &[(&str, &str)] = &[
        ("clone", "fentry"),
        ("dup_mmap", "fentry"),
        ("mm_lock_wait", "fentry"),
        ("copy_page_range", "fentry"),
        ("anon_vma_fork", "fentry"),
        ("first_run", "fentry"),
        ("exec", "fentry"),
        ("exec_prepare", "fentry"),
        ("exit", "tracepoint"),
        ("reap", "fentry"),
        ("page_faults", "fentry"),
    ];

    fn sections_for(dir: &str, plan: &[(&str, &str)], copy_ns: u64) -> Vec<Section> {
        let sec = |name: String, body: String| Section {
            name,
            rc: Some(0),
            seconds: Some(1.0),
            body,
        };
        let rows: Vec<String> = plan
            .iter()
            .map(|(stage, m)| format!(r#"{{"stage":"{stage}","mechanism":"{m}"}}"#))
            .collect();
        let plan = format!(r#"{{"plan":[{}]}}"#, rows.join(","));
        let attempts = r#"[{"path":"/nonexistent/spawnprof-miss-0/true","ret":-2},
            {"path":"/nonexistent/spawnprof-miss-1/true","ret":-2},{"path":"/bin/true","ret":0}]"#
            .replace('\n', "");
        let common = r#""thread":false,"parent_cpu":0,"child_first_cpu":1,"durations":{"dup_mmap":9,"mm_lock_wait":1}"#;
        let fork = format!(
            r#"{{"syscall":"kernel_clone","method":"fork",{common},"ts":{{"clone_enter":1,"clone_exit":8,"exec_enter":6,"exec_prepare":7,"exec_return":8,"exit":9,"reap":10,"first_run":5}},"faults":{{"pre_exec_cow":2,"total":90}},"exec_attempts":{attempts},"kernel_fn":{{"copy_page_range_ns":{copy_ns},"copy_page_range_calls":9,"anon_vma_fork_calls":3}}}}"#
        );
        let vfork = format!(
            r#"{{"syscall":"kernel_clone","method":"vfork",{common},"ts":{{"clone_enter":1,"reap":9,"first_run":2,"exec_enter":3,"exec_return":8,"exit":8,"exec_prepare":5,"vfork_release":5,"clone_exit":6}},"exec_attempts":{attempts}}}"#
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

    fn exp<'a>(stages: &[(&'a str, &'a str)]) -> Expected<'a> {
        Expected {
            stages: stages.to_vec(),
            unchecked: Vec::new(),
        }
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

    fn err(result: Result<usize>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn a_plan_or_spawns_off_the_table_fail() {
        let a = &RUNS[0];
        assert_eq!(
            assert_run(&sections_for("a", FULL, 5000), a, &exp(FULL), true).ok(),
            Some(SPAWN_COUNT)
        );
        let kprobe_cpr: Vec<_> = FULL
            .iter()
            .map(|&(s, m)| (s, if s == "copy_page_range" { "kprobe" } else { m }))
            .collect();
        let e = err(assert_run(
            &sections_for("a", FULL, 5000),
            a,
            &exp(&kprobe_cpr),
            true,
        ));
        assert!(e.contains("copy_page_range: expected kprobe"), "{e}");
        let e = err(assert_run(&sections_for("a", FULL, 0), a, &exp(FULL), true));
        assert!(
            e.contains("stage copy_page_range is fentry but the spawn lacks"),
            "{e}"
        );
        let no_cpu = edited(sections_for("a", FULL, 5000), r#""child_first_cpu":1,"#, "");
        let e = err(assert_run(&no_cpu, a, &exp(FULL), true));
        assert!(e.contains("stage first_run"), "{e}");
        let extra: Vec<_> = FULL.iter().copied().filter(|(s, _)| *s != "exit").collect();
        let e = err(assert_run(
            &sections_for("a", FULL, 5000),
            a,
            &exp(&extra),
            true,
        ));
        assert!(e.contains("exit: not in docs/KERNELS.md"), "{e}");
    }

    #[test]
    fn an_unavailable_stage_must_have_no_data() {
        let a = &RUNS[0];
        let no_cpr: Vec<_> = FULL
            .iter()
            .map(|&(s, m)| {
                (
                    s,
                    if s == "copy_page_range" {
                        "unavailable"
                    } else {
                        m
                    },
                )
            })
            .collect();
        let e = err(assert_run(
            &sections_for("a", &no_cpr, 5000),
            a,
            &exp(&no_cpr),
            true,
        ));
        assert!(
            e.contains("stage copy_page_range is unavailable but the spawn has"),
            "{e}"
        );
        assert!(assert_run(&sections_for("a", &no_cpr, 0), a, &exp(&no_cpr), true).is_ok());
    }

    #[test]
    fn a_known_gap_is_not_asserted() {
        let a = &RUNS[0];
        let gap = Expected {
            stages: FULL.to_vec(),
            unchecked: vec!["copy_page_range"],
        };
        assert!(assert_run(&sections_for("a", FULL, 0), a, &gap, true).is_ok());
    }

    #[test]
    fn a_gap_no_run_resolves_any_more_is_stale() {
        let exp = Expectations {
            tables: Vec::new(),
            gaps: vec![expect::Gap {
                kernels: vec!["6.1".into()],
                stages: vec!["dup_mmap".into(), "mm_lock_wait".into()],
                mechanism: "raw_tracepoint".into(),
                why: "old prototype".into(),
            }],
        };
        let resolved = BTreeSet::from([("dup_mmap", "raw_tracepoint"), ("mm_lock_wait", "fentry")]);
        let stale = stale_gaps(&exp, "6.1", &resolved);
        assert_eq!(stale.len(), 1);
        assert!(
            stale[0].contains("mm_lock_wait via raw_tracepoint"),
            "{stale:?}"
        );
        assert!(stale_gaps(&exp, "5.10", &BTreeSet::new()).is_empty());
    }

    #[test]
    fn posix_spawn_runs_check_the_vfork_release_not_the_mm_copy() {
        let c = &RUNS[2];
        assert_eq!(c.method, "posix-spawn");
        assert_eq!(
            assert_run(&sections_for("c", FULL, 0), c, &exp(FULL), true).ok(),
            Some(SPAWN_COUNT)
        );
        let unreleased = edited(sections_for("c", FULL, 0), r#""vfork_release":5,"#, "");
        let e = err(assert_run(&unreleased, c, &exp(FULL), true));
        assert!(e.contains("vfork_release"), "{e}");
        // The busybox fallback forks in every run.
        assert_eq!(
            assert_run(&sections_for("c", FULL, 5000), c, &exp(FULL), false).ok(),
            Some(SPAWN_COUNT)
        );
    }

    #[test]
    fn the_clone_must_be_seen_where_the_plan_says_and_the_path_misses_too() {
        let a = &RUNS[0];
        let by_tracepoint = edited(
            sections_for("a", FULL, 5000),
            r#""syscall":"kernel_clone""#,
            r#""syscall":"clone""#,
        );
        let e = err(assert_run(&by_tracepoint, a, &exp(FULL), true));
        assert!(e.contains("does not fit clone via fentry"), "{e}");
        let tp_clone: Vec<_> = FULL
            .iter()
            .map(|&(s, m)| (s, if s == "clone" { "tracepoint" } else { m }))
            .collect();
        let tp_sections = edited(
            sections_for("a", &tp_clone, 5000),
            r#""syscall":"kernel_clone""#,
            r#""syscall":"clone""#,
        );
        assert!(assert_run(&tp_sections, a, &exp(&tp_clone), true).is_ok());
        let no_misses = edited(
            sections_for("a", FULL, 5000),
            "spawnprof-miss-1",
            "elsewhere",
        );
        let e = err(assert_run(&no_misses, a, &exp(FULL), true));
        assert!(e.contains("spawnprof-miss-1"), "{e}");
        // Without the spawner (busybox loop) there is no PATH search to check.
        assert!(assert_run(&no_misses, a, &exp(FULL), false).is_ok());
    }
}
