//! Outputs of a recording. Every one of them is built from the
//! [`SpawnRecord`]s (and the [`Summary`]), never from the kernel, so
//! `spawnprof report DIR` can rebuild them from a saved recording.
pub mod bench;
pub mod bench_charts;
pub mod bench_diff;
pub mod charts;
pub mod diff;
pub mod export;
pub mod files;
pub mod flamegraph;
pub mod folded;
pub mod html;
pub mod recover;
pub mod stream;
pub mod table;
pub mod trace;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    analysis::{Counts, Placement, StageStats},
    correlate::CorrelationStats,
    model::SCHEMA_VERSION,
    node::NodeFacts,
    plan::{Mechanism, PlanRow},
};

/// `summary.json`: what was recorded, how, and the per-stage statistics.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub schema_version: u32,
    pub spawnprof_version: String,
    /// What was traced: the command line, or `pid N`.
    pub target: String,
    pub kernel: String,
    /// Facts about the machine that explain spawn costs (glibc, THP, env size…).
    #[serde(default)]
    pub node: Option<NodeFacts>,
    /// The kernel's monotonic clock (CLOCK_MONOTONIC outside a time
    /// namespace) at the start, in ns; every timestamp is relative to it.
    pub start_monotonic_ns: u64,
    /// Wall-clock start, seconds since the Unix epoch.
    pub start_unix_s: u64,
    pub duration_ns: u64,
    /// Ended by Ctrl-C/SIGTERM rather than by the target or the duration.
    pub interrupted: bool,
    /// Exit status of the traced command (128+signal when killed).
    pub exit_code: Option<i32>,
    /// The attach plan, one row per probe stage.
    pub plan: Vec<PlanRow>,
    pub counts: Counts,
    /// Marks dropped because the ring buffer was full, by kind.
    pub lost_marks: BTreeMap<String, u64>,
    pub lost_marks_total: u64,
    pub correlation: CorrelationStats,
    /// Per stage: count, mean, p50, p90, p99, max, total (ns).
    pub stages: BTreeMap<String, StageStats>,
    /// Argument values and environment values are never recorded; only counts.
    pub captured: Vec<String>,
    /// How stacks were sampled for stacks.svg ("off", "unavailable: …").
    #[serde(default)]
    pub stack_sampling: String,
    #[serde(default)]
    pub stack_samples: u64,
    /// What spawnprof itself cost while recording (`--probe-cost`).
    #[serde(default)]
    pub probe_cost: Option<ProbeCost>,
    /// Where the children first ran relative to their parent's CPU, and
    /// their wait to first run on each (absent without the first_run stage).
    #[serde(default)]
    pub placement: Option<Placement>,
    /// Why `spawns.jsonl` holds fewer records than `counts` (its writing
    /// failed, say on a full disk); absent when it holds them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawns_incomplete: Option<String>,
    /// Set while a recording runs (the summary spawnprof writes as tracing
    /// starts), and kept by `spawnprof report` when it rebuilt the figures of
    /// a recording whose spawnprof was killed before it wrote the final one:
    /// what is known and what is not. Absent in a finished recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfinished: Option<String>,
}

/// spawnprof's own cost during a recording: the kernel's run-time statistics
/// of each probe program (BPF_ENABLE_STATS) and the CPU time of the reader.
/// Divided by the spawns recorded, this is what tracing added to each spawn.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProbeCost {
    /// Per program: how often it ran and for how long in total (ns).
    pub programs: Vec<ProgramCost>,
    /// Sum of `programs[].run_ns`.
    pub bpf_ns: u64,
    /// Program runs in total.
    pub bpf_runs: u64,
    /// CPU time (user + system) of spawnprof's own process while recording.
    pub reader_cpu_ns: u64,
    /// Spawns recorded, the denominator of the per-spawn figures.
    pub spawns: u64,
    /// The probes' gate counters at the end (all zero once every traced
    /// clone returned, every child ran and every fork's window closed; a
    /// non-zero one means its probes did full work for the rest of the run).
    #[serde(default)]
    pub gates_at_end: Option<spawnprof_common::Gates>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProgramCost {
    pub name: String,
    pub runs: u64,
    pub run_ns: u64,
}

impl ProbeCost {
    pub fn bpf_ns_per_spawn(&self) -> Option<f64> {
        (self.spawns > 0).then(|| self.bpf_ns as f64 / self.spawns as f64)
    }
    pub fn reader_ns_per_spawn(&self) -> Option<f64> {
        (self.spawns > 0).then(|| self.reader_cpu_ns as f64 / self.spawns as f64)
    }
}

impl Summary {
    pub fn schema_ok(&self) -> bool {
        self.schema_version == SCHEMA_VERSION
    }
}

/// Writes every shareable output (stage flamegraph and folded stacks,
/// trace.json, charts, report.html) into the recording directory `dir`;
/// returns the paths written. See [`export`].
pub fn write_all(
    dir: &Path,
    summary: &Summary,
    records: &[crate::model::SpawnRecord],
) -> anyhow::Result<Vec<PathBuf>> {
    export::write_all(dir, summary, records)
}

/// The stages a report cannot show for this recording, with why: the
/// probes the plan could not attach (or was told to skip), and the stages
/// of the breakdown that needed their boundaries.
pub fn unavailable_stages(summary: &Summary) -> Vec<Unmeasured> {
    unmeasured(&summary.plan)
}

fn unmeasured(plan: &[PlanRow]) -> Vec<Unmeasured> {
    let missing: Vec<&PlanRow> = plan
        .iter()
        .filter(|r| r.mechanism == Mechanism::Unavailable)
        .collect();
    let why = |rows: &[&PlanRow]| {
        let names: Vec<&str> = rows.iter().map(|r| r.stage.as_str()).collect();
        let flags: Vec<&str> = rows.iter().filter_map(|r| r.left_out_by()).collect();
        if flags.len() < rows.len() {
            format!("unavailable on this kernel (no {} probe)", names.join("/"))
        } else if flags.iter().all(|f| *f == crate::plan::LOW_OVERHEAD) {
            format!("left out (--low-overhead: no {} probe)", names.join("/"))
        } else {
            format!("skipped (--skip-stage {})", names.join(", "))
        }
    };
    let names: Vec<&str> = missing.iter().map(|r| r.stage.as_str()).collect();
    let mut out: Vec<Unmeasured> = missing
        .iter()
        .map(|r| Unmeasured {
            stage: r.stage.clone(),
            why: match r.left_out_by() {
                Some(flag) => format!("left out ({flag})"),
                None => "unavailable on this kernel".into(),
            },
        })
        .collect();
    // The report's stages those probes' boundaries were needed for, each
    // blamed on the missing probes without which it would be measured.
    for stage in crate::model::stages_lost_without(&names) {
        if out.iter().any(|u| u.stage == stage) {
            continue;
        }
        let needed: Vec<&PlanRow> = missing
            .iter()
            .copied()
            .filter(|row| {
                let others: Vec<&str> = names.iter().copied().filter(|n| *n != row.stage).collect();
                !crate::model::stages_lost_without(&others).contains(&stage)
            })
            .collect();
        // Or, when any one of several would do (sched_delay needs both
        // wakeup_new and first_run), those that take it away alone.
        let enough: Vec<&PlanRow> = missing
            .iter()
            .copied()
            .filter(|row| crate::model::stages_lost_without(&[row.stage.as_str()]).contains(&stage))
            .collect();
        let blamed = [needed, enough]
            .into_iter()
            .find(|rows| !rows.is_empty())
            .unwrap_or_else(|| missing.clone());
        out.push(Unmeasured {
            stage: stage.into(),
            why: why(&blamed),
        });
    }
    out
}

/// A stage of the report with no data by construction, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmeasured {
    pub stage: String,
    pub why: String,
}

/// The note for a breakdown row without data: why it cannot have any, or
/// "not seen" when it could have and no spawn had it.
pub fn why_no_data<'a>(unavailable: &'a [Unmeasured], stage: &str) -> &'a str {
    unavailable
        .iter()
        .find(|u| u.stage == stage)
        .map_or("not seen", |u| u.why.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan row; `left_out_by`: the option that rejected its candidates.
    fn row(stage: &str, mechanism: Mechanism, left_out_by: Option<&str>) -> PlanRow {
        let reason = left_out_by.map(|flag| format!("left out on request ({flag})"));
        PlanRow::for_test(stage, mechanism, reason.as_deref())
    }

    #[test]
    fn a_stage_without_data_says_which_probe_is_missing_and_why() {
        use Mechanism::{RawTracepoint, Unavailable};
        let plan = [
            row("wakeup_new", RawTracepoint, None),
            row("first_run", Unavailable, Some("--skip-stage")),
            row("exec_prepare", Unavailable, None),
            row("copy_page_range", Unavailable, None),
            row("mm_lock_wait", Unavailable, Some("--low-overhead")),
            row("dup_mmap", Unavailable, Some("--low-overhead")),
        ];
        let why = |stage: &str| {
            unmeasured(&plan)
                .into_iter()
                .find(|u| u.stage == stage)
                .map(|u| u.why)
        };
        assert_eq!(why("first_run").as_deref(), Some("left out (--skip-stage)"));
        assert_eq!(
            why("sched_delay").as_deref(),
            Some("skipped (--skip-stage first_run)")
        );
        assert_eq!(
            why("vfork_resume").as_deref(),
            Some("unavailable on this kernel (no exec_prepare probe)")
        );
        assert_eq!(
            why("exec_load").as_deref(),
            Some("unavailable on this kernel (no exec_prepare probe)")
        );
        assert_eq!(
            why("copy_page_range").as_deref(),
            Some("unavailable on this kernel")
        );
        assert_eq!(
            why("mm_lock_wait").as_deref(),
            Some("left out (--low-overhead)")
        );
        // dup_mmap's tracepoint derivation needs the mmap lock probes.
        assert_eq!(
            why("dup_mmap").as_deref(),
            Some("left out (--low-overhead)")
        );
        assert_eq!(why("fork_wakeup"), None, "wakeup_new is attached");
        assert_eq!(why("exec"), None);
    }
}
