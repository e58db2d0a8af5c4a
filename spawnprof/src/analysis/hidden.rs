//! The hidden costs of spawning that a recording shows, over every spawn:
//! forks whose child exec'd (the page-table copy bought nothing), PATH
//! searches (one failed exec per directory before the program) and
//! wrappers that exec again (Java's jspawnhelper, env). `report::findings`
//! puts them into words.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Distribution;
use crate::model::SpawnRecord;

/// One hidden cost, summed over the spawns that paid it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiddenCost {
    pub spawns: u64,
    /// What was timed: a stage (`dup_mmap`, `copy_process`, `path_search`)
    /// or `second_exec`.
    pub timed: String,
    pub total_ns: u64,
    pub p50_ns: u64,
    /// The name most of them share, and how many do: the parent's comm for
    /// forks, the program for PATH searches and wrappers.
    pub most_common: String,
    pub most_common_spawns: u64,
    /// Failed exec attempts (PATH searches only).
    #[serde(default)]
    pub failed_execs: u64,
}

/// `summary.json`'s `hidden_costs`: each cost found (absent: none paid it),
/// and the spawn time they are shares of.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiddenCosts {
    /// Every spawn's time summed (clone entry to its exec, or to its first
    /// run without one).
    pub spawn_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forks_then_exec: Option<HiddenCost>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_search: Option<HiddenCost>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub re_exec: Option<HiddenCost>,
}

/// Distinct names kept per cost: a recording of many programs keeps
/// bounded memory (later names are not counted for `most_common`).
const NAMES: usize = 256;

#[derive(Default)]
struct CostAccumulator {
    times: Distribution,
    names: BTreeMap<String, u64>,
    failed: u64,
}

impl CostAccumulator {
    fn add(&mut self, ns: u64, name: Option<&str>) {
        self.times.push(ns);
        let Some(name) = name else { return };
        if let Some(n) = self.names.get_mut(name) {
            *n += 1;
        } else if self.names.len() < NAMES {
            self.names.insert(name.to_string(), 1);
        }
    }

    fn finish(&mut self, timed: &str) -> Option<HiddenCost> {
        let stats = self.times.stats();
        let (name, n) = (self.names.iter())
            .max_by_key(|(_, n)| **n)
            .map_or((String::new(), 0), |(name, n)| (name.clone(), *n));
        (stats.count > 0).then(|| HiddenCost {
            spawns: stats.count,
            timed: timed.into(),
            total_ns: stats.total_ns,
            p50_ns: stats.p50_ns,
            most_common: name,
            most_common_spawns: n,
            failed_execs: self.failed,
        })
    }
}

#[derive(Default)]
pub(super) struct HiddenAccumulator {
    /// Forks whose child exec'd: dup_mmap where measured, and copy_process.
    fork_dup_mmap: CostAccumulator,
    fork_copy: CostAccumulator,
    path_search: CostAccumulator,
    re_exec: CostAccumulator,
}

impl HiddenAccumulator {
    /// A spawn (not a thread, not the root command).
    pub(super) fn add(&mut self, r: &SpawnRecord) {
        let Some(program) = r.exec_path.as_deref() else {
            return;
        };
        if r.method.as_deref() == Some("fork") {
            let parent = r.parent_comm.as_deref();
            if let Some(ns) = r.duration("dup_mmap") {
                self.fork_dup_mmap.add(ns, parent);
            }
            if let Some(ns) = r.duration("copy_process") {
                self.fork_copy.add(ns, parent);
            }
        }
        if r.failed_exec_attempts > 0
            && let Some(ns) = r.duration("path_search")
        {
            self.path_search.add(ns, Some(program));
            self.path_search.failed += r.failed_exec_attempts;
        }
        if let Some(second) = r.later_execs().next() {
            let ns = second.exit.map_or(0, |e| e.saturating_sub(second.enter));
            self.re_exec.add(ns, Some(program));
        }
    }

    pub(super) fn finish(&mut self, spawn_ns: u64) -> HiddenCosts {
        let forks = match self.fork_dup_mmap.times.count {
            0 => self.fork_copy.finish("copy_process"),
            _ => self.fork_dup_mmap.finish("dup_mmap"),
        };
        HiddenCosts {
            spawn_ns,
            forks_then_exec: forks,
            path_search: self.path_search.finish("path_search"),
            re_exec: self.re_exec.finish("second_exec"),
        }
    }
}
