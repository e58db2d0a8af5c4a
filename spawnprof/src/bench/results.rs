//! What `bench.json` holds: each configuration's outcome, the overhead
//! measurement and the node they ran on.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    analysis::{Placement, StageStats},
    probe::plan::PlanRow,
    sys::node::NodeFacts,
    workload::{Config, SpawnResult},
};

/// One configuration of the sweep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchConfig {
    /// Unique, filesystem-safe name, e.g. `method-rss/fork-exec-1g`.
    pub name: String,
    /// The experiment it belongs to: `method-rss`, `minimal-child`,
    /// `placement`, `thp`, `env`, `path`, `tokio`, `fork-chain`.
    pub experiment: String,
    pub spawner: Config,
}

/// A stage's share of the spawn call, for "why is this configuration slow".
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StageShare {
    pub stage: String,
    pub mean_ns: u64,
    /// Of the parent's clone syscall (the call the spawner times).
    pub share_of_call: f64,
}

/// The outcome of one configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigResult {
    pub config: BenchConfig,
    pub spawner: SpawnResult,
    /// Spawns recorded inside the spawner's timed window.
    pub spawns_in_window: u64,
    /// Stage statistics over those spawns.
    pub stages: BTreeMap<String, StageStats>,
    /// The stages inside the spawn call, largest first.
    pub breakdown: Vec<StageShare>,
    /// Where those spawns' children first ran (absent in older benches).
    #[serde(default)]
    pub placement: Option<Placement>,
    /// Failed execve attempts per spawn in the window, as recorded: the
    /// node's own PATH misses plus the ones a configuration adds (absent
    /// in older benches and when the window is empty).
    #[serde(default)]
    pub failed_execs_per_spawn: Option<f64>,
    #[serde(alias = "lost_marks")]
    pub lost_spawns: u64,
    /// The recording, relative to the bench directory.
    pub recording: String,
}

/// Spawn rate with and without probes, measured in the same run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Overhead {
    pub method: String,
    pub count: u64,
    pub mode: String,
    pub without_probes_spawns_per_sec: f64,
    pub with_probes_spawns_per_sec: f64,
    /// 1 - with/without: the fraction of the spawn rate the probes cost.
    pub cost: f64,
    /// The CPU the spawner and its children were pinned to, so that no child
    /// waits for an idle CPU to wake (which swings the rate by more than the
    /// probes cost on VMs); absent with a single CPU.
    #[serde(default)]
    pub cpu: Option<u32>,
    /// Rounds of each side; the figures are their medians.
    #[serde(default)]
    pub rounds: u32,
    /// Median latency of the spawn call: steadier than the rate, which a few
    /// host stalls dominate.
    #[serde(default)]
    pub without_probes_p50_ns: Option<f64>,
    #[serde(default)]
    pub with_probes_p50_ns: Option<f64>,
    /// with/without - 1 of the p50s: what the probes add to a spawn call.
    #[serde(default)]
    pub p50_cost: Option<f64>,
    /// From one more recording with `--probe-cost`: the probes' own run
    /// time per spawn in the kernel (BPF statistics), a figure that does not
    /// swing with the node's scheduling the way the rates do.
    #[serde(default)]
    pub probe_ns_per_spawn: Option<f64>,
    /// spawnprof's own CPU time per spawn in that recording.
    #[serde(default)]
    pub reader_ns_per_spawn: Option<f64>,
}

/// `bench.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    pub schema_version: u32,
    pub node: NodeFacts,
    pub plan: Vec<PlanRow>,
    pub quick: bool,
    pub duration_ns: u64,
    pub configs: Vec<ConfigResult>,
    pub overhead: Option<Overhead>,
    /// Stopped by Ctrl-C, SIGTERM or SIGHUP: `configs` holds the ones that finished.
    #[serde(default)]
    pub interrupted: bool,
    /// Written while the sweep ran (after each configuration, so a bench
    /// killed where no handler runs keeps what finished); false once done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unfinished: bool,
    /// When the sweep started (Unix seconds) and which spawnprof ran it, for
    /// a page read away from the node (absent in older benches).
    #[serde(default)]
    pub start_unix_s: Option<u64>,
    #[serde(default)]
    pub spawnprof_version: Option<String>,
}
