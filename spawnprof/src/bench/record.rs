//! One configuration: the reference spawner recorded under the probes, and
//! the stage figures of the spawns inside its timed window.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use super::results::{BenchConfig, ConfigResult, StageShare};
use crate::{
    analysis::{self, StageStats},
    model::SpawnRecord,
    probe::{SessionOptions, plan::PlanRow},
    recorder::{self, RecordOptions, Target, interrupt::Interrupted},
    recording::{ProbeCost, load_recording},
    workload::{SPAWNER_BIN, SpawnResult, spawner_args},
};

/// Path of the spawner binary: next to this executable.
pub fn spawner_path() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the spawnprof executable")?;
    let path = exe.with_file_name(SPAWNER_BIN);
    if !path.exists() {
        bail!(
            "the reference spawner {} is missing; build it with `cargo build --release` \
             (or run `cargo xtask bench`)",
            path.display()
        );
    }
    Ok(path)
}

/// Records one configuration; with `probe_cost`, also what the probes cost.
pub(super) async fn run_config(
    cfg: &BenchConfig,
    spawner: &Path,
    dir: &Path,
    session: &SessionOptions,
    probe_cost: bool,
) -> Result<(ConfigResult, Vec<PlanRow>, Option<ProbeCost>)> {
    let rec_dir = dir.join(&cfg.name);
    std::fs::create_dir_all(&rec_dir)?;
    let stdout = rec_dir.join("spawner.json");
    let mut argv = vec![spawner.display().to_string()];
    argv.extend(spawner_args(&cfg.spawner));
    let mut opts = RecordOptions::new(Target::Command(argv), rec_dir.clone());
    opts.session = session.clone();
    opts.force = true;
    opts.announce = false;
    opts.command_stdout = Some(stdout.clone());
    opts.probe_cost = probe_cost;
    opts.owns_command = true;
    if session.low_overhead {
        opts.sample_hz = 0;
    }
    let rec = recorder::record(opts).await?;
    rec.saved()?;
    if rec.summary.interrupted {
        return Err(Interrupted.into());
    }
    if rec.summary.exit_code != Some(0) {
        bail!(
            "the spawner failed for {} (exit {:?}); its output is in {}",
            cfg.name,
            rec.summary.exit_code,
            rec_dir.display()
        );
    }
    let result = parse_result(&stdout)?;
    // All of the configuration's spawns, not just the ones kept in memory.
    let (_, records) = load_recording(&rec_dir)?;
    let window = in_window(&records, &result, rec.summary.start_monotonic_ns);
    let summary = summarise(cfg, result, &window, rec.summary.lost_spawns);
    Ok((summary, rec.summary.plan, rec.summary.probe_cost))
}

fn parse_result(path: &Path) -> Result<SpawnResult> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| {
            format!(
                "the spawner printed no result line (see {})",
                path.display()
            )
        })?;
    serde_json::from_str(line)
        .with_context(|| format!("parsing the spawner's result in {}", path.display()))
}

/// Spawns of a configuration: created inside the spawner's timed window.
fn in_window<'a>(
    records: &'a [SpawnRecord],
    result: &SpawnResult,
    t0: u64,
) -> Vec<&'a SpawnRecord> {
    let start = result.t_start_mono_ns.saturating_sub(t0);
    let end = result.t_end_mono_ns.saturating_sub(t0);
    records
        .iter()
        .filter(|r| !r.root && !r.thread)
        .filter(|r| {
            r.ts.clone_enter
                .or(r.ts.fork_done)
                .is_some_and(|t| t >= start && t <= end)
        })
        .collect()
}

/// The configuration's outcome: the spawner's own figures joined with the
/// stage statistics and placement of the spawns in its window.
fn summarise(
    cfg: &BenchConfig,
    result: SpawnResult,
    window: &[&SpawnRecord],
    lost_spawns: u64,
) -> ConfigResult {
    // One pass for the stage statistics and the placement split.
    let mut acc = analysis::Accumulator::default();
    window.iter().for_each(|r| acc.add(r));
    let stages = acc.stage_stats();
    let vfork_style = window
        .iter()
        .filter(|r| r.method.as_deref() == Some("vfork"))
        .count()
        * 2
        > window.len();
    ConfigResult {
        config: cfg.clone(),
        spawns_in_window: window.len() as u64,
        breakdown: call_breakdown(&stages, vfork_style),
        placement: acc.placement(),
        failed_execs_per_spawn: (!window.is_empty()).then(|| {
            let failed: u64 = window.iter().map(|r| r.failed_exec_attempts).sum();
            failed as f64 / window.len() as f64
        }),
        stages,
        spawner: result,
        lost_spawns,
        recording: cfg.name.clone(),
    }
}

/// The stages that make up the spawn call, as shares of the parent's clone.
/// For vfork-style spawns the child's pre-exec work and exec happen while
/// the parent waits, so they count; for fork they happen after it returns.
/// Of a vfork child's exec only the part up to the release (exec_load)
/// counts when the release is known: the rest runs after the parent is
/// free again, alongside its vfork_resume, and would be counted twice.
pub fn call_breakdown(stages: &BTreeMap<String, StageStats>, vfork_style: bool) -> Vec<StageShare> {
    let mean = |s: &str| stages.get(s).filter(|s| s.count > 0).map(|s| s.mean_ns);
    let Some(call) = mean("clone").filter(|&c| c > 0) else {
        return Vec::new();
    };
    let mut parts: Vec<(String, u64)> = Vec::new();
    let dup = mean("dup_mmap");
    if let Some(d) = dup {
        parts.push(("dup_mmap".into(), d));
    }
    if let Some(cp) = mean("copy_process") {
        parts.push((
            "copy_process (rest)".into(),
            cp.saturating_sub(dup.unwrap_or(0)),
        ));
    }
    for s in ["fork_wakeup"] {
        if let Some(v) = mean(s) {
            parts.push((s.into(), v));
        }
    }
    // After the wake-up, a vfork parent waits through its child's start
    // and exec, then for its own CPU; a fork parent only returns.
    let released = mean("exec_load").is_some() && mean("vfork_resume").is_some();
    let after_wakeup = if vfork_style {
        &[
            "sched_delay",
            "pre_exec",
            "path_search",
            if released { "exec_load" } else { "exec" },
            "vfork_resume",
        ][..]
    } else {
        &["parent_return"][..]
    };
    for s in after_wakeup {
        if let Some(v) = mean(s) {
            parts.push(((*s).into(), v));
        }
    }
    let mut out: Vec<StageShare> = parts
        .into_iter()
        .map(|(stage, mean_ns)| StageShare {
            stage,
            mean_ns,
            share_of_call: mean_ns as f64 / call as f64,
        })
        .collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.mean_ns));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stages seen once each, with these means.
    fn seen_once(means: &[(&str, u64)]) -> BTreeMap<String, StageStats> {
        means
            .iter()
            .map(|&(name, mean_ns)| {
                let stats = StageStats {
                    count: 1,
                    mean_ns,
                    ..Default::default()
                };
                (name.to_string(), stats)
            })
            .collect()
    }

    #[test]
    fn the_call_breakdown_puts_dup_mmap_first_for_a_big_fork() {
        let stages = seen_once(&[
            ("clone", 10_000),
            ("copy_process", 9_900),
            ("dup_mmap", 9_800),
            ("fork_wakeup", 50),
            ("parent_return", 50),
        ]);
        let b = call_breakdown(&stages, false);
        assert_eq!(b[0].stage, "dup_mmap");
        assert!((b[0].share_of_call - 0.98).abs() < 1e-9);
    }

    #[test]
    fn a_vfork_call_counts_the_childs_exec_only_up_to_the_release() {
        let mut stages = seen_once(&[
            ("clone", 100_000),
            ("copy_process", 10_000),
            ("fork_wakeup", 2_000),
            ("sched_delay", 3_000),
            ("pre_exec", 20_000),
            ("path_search", 0),
            ("exec", 80_000),
            ("exec_load", 40_000),
            ("vfork_resume", 25_000),
        ]);
        let b = call_breakdown(&stages, true);
        let total: f64 = b.iter().map(|s| s.share_of_call).sum();
        assert!((total - 1.0).abs() < 1e-9, "{b:?}");
        assert!(b.iter().any(|s| s.stage == "exec_load"));
        assert!(!b.iter().any(|s| s.stage == "exec"));
        // Without the release point (before 6.10 on tracepoints) the whole
        // exec is all there is.
        stages.remove("exec_load");
        stages.remove("vfork_resume");
        let b = call_breakdown(&stages, true);
        assert!(b.iter().any(|s| s.stage == "exec"));
    }
}
