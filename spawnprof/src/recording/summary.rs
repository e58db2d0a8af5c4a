//! `summary.json`: the recording's facts, attach plan, counts and
//! per-stage statistics.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    analysis::{Counts, HiddenCosts, Placement, SpawnTime, StageStats},
    model::FaultCoverage,
    probe::{park::ParkCounts, plan::PlanRow},
    sys::node::NodeFacts,
    trace::AssemblyStats,
};

/// Bumped whenever a field changes meaning or disappears (docs/OUTPUT.md).
/// 2: spawns are assembled in the kernel: `lost` (by reason) and
/// `lost_spawns` replace `lost_marks`, `assembly` replaces `correlation`.
pub const SCHEMA_VERSION: u32 = 2;

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
    /// `--duration` ended it, and with it the command, if still running
    /// (SIGTERM, as `timeout` does).
    #[serde(default)]
    pub timed_out: bool,
    /// Exit status of the traced command (128+signal when killed).
    pub exit_code: Option<i32>,
    /// The attach plan, one row per probe stage.
    pub plan: Vec<PlanRow>,
    pub counts: Counts,
    /// Spawns that happened in traced processes and have no record: the
    /// kernel had no room to keep them (spawns.jsonl holds the others).
    #[serde(default)]
    pub lost_spawns: u64,
    /// What could not be kept, by reason (see docs/OUTPUT.md); reasons with
    /// nothing lost are left out.
    #[serde(default)]
    pub lost: BTreeMap<String, u64>,
    /// How the kernel's records were joined into spawns.
    #[serde(default)]
    pub assembly: AssemblyStats,
    /// Which fault figures the probes count (the others are null), as the
    /// attach plan decided: what a rebuild of a killed recording needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_coverage: Option<FaultCoverage>,
    /// Per stage: count, mean, p50, p90, p99, max, total (ns).
    pub stages: BTreeMap<String, StageStats>,
    /// Argument values and environment values are never recorded; only counts.
    pub captured: Vec<String>,
    /// How stacks were sampled for stacks.svg ("off", "unavailable: …").
    #[serde(default)]
    pub stack_sampling: String,
    #[serde(default)]
    pub stack_samples: u64,
    /// How often the fork-only probes were parked while the traced
    /// processes did not fork, and brought back at a fork (both 0 where
    /// they are not tracepoints).
    #[serde(default)]
    pub fork_probes: ParkCounts,
    /// What spawnprof itself cost while recording (`--probe-cost`; absent
    /// without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_cost: Option<ProbeCost>,
    /// Where the children first ran relative to their parent's CPU, and
    /// their wait to first run on each (absent without the first_run stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Where spawn time goes, each nanosecond counted once (absent in
    /// older recordings, and when no spawn had a known start and end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawn_time: Option<SpawnTime>,
    /// The hidden costs the spawns paid: forks whose child exec'd, PATH
    /// searches, wrappers that exec again (absent in older recordings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_costs: Option<HiddenCosts>,
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
    /// The part of it spent parking and bringing back the fork-only probes:
    /// a few ms each time, not a cost per spawn.
    #[serde(default)]
    pub parking_cpu_ns: u64,
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
    /// A summary of `target` on `kernel` that knows nothing else yet: what
    /// the recorder, the recovery of a cut recording and the synthetic
    /// ones start from.
    pub fn new(target: String, kernel: String) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            spawnprof_version: env!("CARGO_PKG_VERSION").into(),
            target,
            kernel,
            node: None,
            start_monotonic_ns: 0,
            start_unix_s: 0,
            duration_ns: 0,
            interrupted: false,
            timed_out: false,
            exit_code: None,
            plan: Vec::new(),
            counts: Default::default(),
            lost_spawns: 0,
            lost: Default::default(),
            assembly: Default::default(),
            fault_coverage: None,
            stages: Default::default(),
            captured: Vec::new(),
            stack_sampling: String::new(),
            stack_samples: 0,
            fork_probes: Default::default(),
            probe_cost: None,
            placement: None,
            spawn_time: None,
            hidden_costs: None,
            spawns_incomplete: None,
            unfinished: None,
        }
    }

    pub fn schema_ok(&self) -> bool {
        self.schema_version == SCHEMA_VERSION
    }
}
