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

/// Bench results made up for tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::workload::{Config, Latency, Method};

    /// A configuration of `method` at `rss` whose spawn call's p50 (and
    /// mean) is `p50`, with a clone stage and no breakdown.
    pub fn config(name: &str, method: Method, rss: u64, p50: u64) -> ConfigResult {
        let spawner: SpawnResult = serde_json::from_value(serde_json::json!({
            "method": method.to_string(), "count": 10, "warmup": 0, "threads": 1, "mode": "serial",
            "rss_requested": rss, "rss_mapped": rss, "rss_baseline": 0, "rss_measured": rss,
            "anon_huge_bytes": 0, "hugetlb_bytes": 0, "huge_pages": "none",
            "env_count": 0, "env_bytes": 0, "environ_count": 0, "environ_bytes": 0,
            "program": "/bin/true", "program_resolved": "/bin/true", "args": [],
            "path_misses": 0, "path_entries": 1, "total_ns": 1, "window_ns": 1,
            "spawns_per_sec": 1e9 / p50.max(1) as f64,
            "latency_ns": Latency { p50, mean: p50 as f64, ..Default::default() },
            "parent_user_ns": 0, "parent_sys_ns": 0, "helper_user_ns": null,
            "helper_sys_ns": null, "helper_rss": null, "failed_spawns": 0,
            "children_exit_127": 0, "glibc_version": "2.36", "kernel_release": "6.18",
            "t_start_mono_ns": 0, "t_end_mono_ns": 1, "spawner_pid": 1
        }))
        .expect("a spawner result");
        let mut cfg = Config::new(method);
        cfg.rss = rss;
        ConfigResult {
            config: BenchConfig {
                name: name.into(),
                experiment: name.split('/').next().unwrap().into(),
                spawner: cfg,
            },
            spawner,
            spawns_in_window: 10,
            stages: BTreeMap::from([("clone".to_string(), StageStats::default())]),
            breakdown: Vec::new(),
            placement: None,
            failed_execs_per_spawn: None,
            lost_spawns: 0,
            recording: name.into(),
        }
    }

    /// A stage of the call with its mean (and a half share).
    pub fn share(stage: &str, mean_ns: u64) -> StageShare {
        StageShare {
            stage: stage.into(),
            mean_ns,
            share_of_call: 0.5,
        }
    }

    /// A finished bench of `configs` on this node.
    pub fn bench(configs: Vec<ConfigResult>) -> BenchReport {
        BenchReport {
            schema_version: crate::recording::SCHEMA_VERSION,
            node: NodeFacts::collect(),
            plan: Vec::new(),
            quick: true,
            duration_ns: 1,
            configs,
            overhead: None,
            interrupted: false,
            unfinished: false,
            start_unix_s: None,
            spawnprof_version: None,
        }
    }
}
