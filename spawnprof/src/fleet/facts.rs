//! The node facts that set a node apart from the rest of the fleet: a
//! THP setting, glibc, kernel or CPU unlike most nodes', a much larger
//! environment, missing PATH directories, CPUs it was pinned away from.
//! These are what a flag names as the likely reason for an outlier.
use std::collections::HashMap;

use super::metrics::Fact;
use crate::{sys::node::NodeFacts, units::format_bytes};

/// What most nodes of the fleet look like.
#[derive(Clone, Debug, Default)]
pub struct Norms {
    thp: Option<String>,
    glibc: Option<String>,
    kernel: Option<String>,
    cpu_model: Option<String>,
    wakeup: Option<String>,
    env_count: f64,
    path_missing: f64,
}

/// The most common value (the first seen among equals), or `None` when no
/// value is shared by more than one node in a fleet of several.
fn mode<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut n = 0;
    for (i, v) in values.enumerate() {
        counts.entry(v).or_insert((0, i)).0 += 1;
        n += 1;
    }
    let (value, (count, _)) = counts
        .into_iter()
        .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1)))?;
    (count > 1 || n == 1).then(|| value.to_string())
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

fn wakeup(n: &NodeFacts) -> String {
    format!(
        "{} {}",
        match n.virtual_cpus {
            Some(true) => "virtual CPUs",
            Some(false) => "physical CPUs",
            None => "CPUs",
        },
        n.cpuidle.as_deref().unwrap_or("no cpuidle driver")
    )
}

impl Norms {
    pub fn of(nodes: &[&NodeFacts]) -> Norms {
        let text = |f: fn(&NodeFacts) -> Option<String>| {
            let values: Vec<String> = nodes.iter().filter_map(|n| f(n)).collect();
            mode(values.iter().map(String::as_str))
        };
        Norms {
            thp: text(|n| n.thp_enabled.clone()),
            glibc: text(|n| Some(n.glibc_version.clone())),
            kernel: text(|n| Some(n.kernel_release.clone())),
            cpu_model: text(|n| n.cpu_model.clone()),
            wakeup: text(|n| Some(wakeup(n))),
            env_count: median(nodes.iter().map(|n| n.env_count as f64).collect()).unwrap_or(0.0),
            path_missing: median(
                nodes
                    .iter()
                    .map(|n| n.path_missing.unwrap_or(0) as f64)
                    .collect(),
            )
            .unwrap_or(0.0),
        }
    }

    /// The facts in which `n` differs from most of the fleet, each with
    /// the words a flag uses, e.g. (Thp, "THP never").
    pub fn unusual(&self, n: &NodeFacts) -> Vec<(Fact, String)> {
        let mut out = Vec::new();
        let differs = |norm: &Option<String>, v: Option<&str>| {
            norm.as_deref()
                .is_some_and(|norm| v.is_some_and(|v| v != norm))
        };
        if differs(&self.thp, n.thp_enabled.as_deref()) {
            let thp = n.thp_enabled.as_deref().unwrap_or("?");
            out.push((Fact::Thp, format!("THP {thp}")));
        }
        let env = n.env_count as f64;
        if env >= (2.0 * self.env_count).max(self.env_count + 100.0) {
            out.push((
                Fact::Environment,
                format!(
                    "environment of {} variables ({}), the fleet's median {:.0}",
                    n.env_count,
                    format_bytes(n.env_bytes),
                    self.env_count
                ),
            ));
        }
        let missing = n.path_missing.unwrap_or(0);
        if missing as f64 >= self.path_missing + 5.0 {
            out.push((
                Fact::PathMissing,
                format!(
                    "PATH has {missing} missing directories of {}",
                    n.path_entries
                ),
            ));
        }
        if let Some(usable) = n.usable_cpus.filter(|&u| u < n.cpus_online) {
            out.push((
                Fact::PinnedCpus,
                format!("pinned to {usable} of {} CPUs", n.cpus_online),
            ));
        }
        if differs(&self.wakeup, Some(&wakeup(n))) {
            out.push((Fact::CpuWakeup, wakeup(n)));
        } else if let Some(steal) = n.steal_share.filter(|&s| s >= 0.05) {
            out.push((
                Fact::CpuWakeup,
                format!("{:.0}% steal since boot", 100.0 * steal),
            ));
        }
        if differs(&self.glibc, Some(&n.glibc_version)) {
            let glibc = format!(
                "glibc {} (Rust std {})",
                n.glibc_version,
                n.std_spawn_path()
            );
            out.push((Fact::Glibc, glibc));
        }
        if differs(&self.kernel, Some(&n.kernel_release)) {
            out.push((Fact::Kernel, format!("kernel {}", n.kernel_release)));
        }
        if differs(&self.cpu_model, n.cpu_model.as_deref()) {
            let model = n.cpu_model.as_deref().unwrap_or("?");
            out.push((Fact::CpuModel, format!("CPU {model}")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(thp: &str, env: u64, missing: u64, usable: u64) -> NodeFacts {
        let mut n = NodeFacts::collect();
        n.thp_enabled = Some(thp.into());
        n.env_count = env;
        n.path_missing = Some(missing);
        n.cpus_online = 2;
        n.usable_cpus = Some(usable);
        n.steal_share = None;
        n
    }

    #[test]
    fn the_facts_unlike_the_fleets_are_named() {
        let nodes = [
            node("always", 30, 0, 2),
            node("always", 35, 0, 2),
            node("never", 30, 0, 2),
            node("always", 2030, 0, 2),
            node("always", 30, 30, 2),
            node("always", 30, 0, 1),
        ];
        let refs: Vec<&NodeFacts> = nodes.iter().collect();
        let norms = Norms::of(&refs);
        let names = |i: usize| -> Vec<String> {
            norms.unusual(&nodes[i]).into_iter().map(|f| f.1).collect()
        };
        assert!(names(0).is_empty(), "{:?}", names(0));
        assert_eq!(names(2), ["THP never"]);
        assert!(names(3)[0].starts_with("environment of 2030 variables"));
        assert_eq!(
            names(4),
            ["PATH has 30 missing directories of 1"]
                .map(|s| { s.replace(" of 1", &format!(" of {}", nodes[4].path_entries)) })
        );
        assert_eq!(names(5), ["pinned to 1 of 2 CPUs"]);
    }

    #[test]
    fn a_mode_needs_a_shared_value_and_a_median_the_middle() {
        assert_eq!(mode(["a", "b", "a"].into_iter()).as_deref(), Some("a"));
        assert_eq!(mode(["a", "b"].into_iter()), None);
        assert_eq!(mode(["a"].into_iter()).as_deref(), Some("a"));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
