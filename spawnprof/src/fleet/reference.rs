//! The fleet median as a node of its own, so any node can be set against
//! it with the bench `diff` (node against node): every configuration's
//! median call, rate and stage means over the nodes that ran it.
use std::collections::BTreeMap;

use super::facts::median;
use crate::bench::BenchReport;

/// The per-configuration figures of every node read so far: a few numbers
/// per node and configuration, never a whole bench.
#[derive(Default)]
pub struct Samples {
    /// The bench whose configurations and facts the median node borrows
    /// (its figures replaced): the one with the most configurations.
    template: Option<BenchReport>,
    configs: BTreeMap<String, ConfigSamples>,
}

#[derive(Default)]
struct ConfigSamples {
    p50_ns: Vec<f64>,
    spawns_per_sec: Vec<f64>,
    stage_mean_ns: BTreeMap<String, Vec<f64>>,
}

impl Samples {
    pub fn add(&mut self, r: &BenchReport) {
        for c in &r.configs {
            let s = self.configs.entry(c.config.name.clone()).or_default();
            s.p50_ns.push(c.spawner.latency_ns.p50 as f64);
            s.spawns_per_sec.push(c.spawner.spawns_per_sec);
            for b in &c.breakdown {
                let stage = s.stage_mean_ns.entry(b.stage.clone()).or_default();
                stage.push(b.mean_ns as f64);
            }
        }
        let more = self
            .template
            .as_ref()
            .is_none_or(|t| r.configs.len() > t.configs.len());
        if more {
            let mut t = r.clone();
            // Only what the diff shows is kept.
            for c in &mut t.configs {
                c.stages.clear();
            }
            self.template = Some(t);
        }
    }

    pub fn merge(&mut self, other: Samples) {
        for (name, o) in other.configs {
            let s = self.configs.entry(name).or_default();
            s.p50_ns.extend(o.p50_ns);
            s.spawns_per_sec.extend(o.spawns_per_sec);
            for (stage, v) in o.stage_mean_ns {
                s.stage_mean_ns.entry(stage).or_default().extend(v);
            }
        }
        if let Some(t) = other.template {
            let more = self
                .template
                .as_ref()
                .is_none_or(|mine| t.configs.len() > mine.configs.len());
            if more {
                self.template = Some(t);
            }
        }
    }

    /// A bench whose every figure is the fleet's median, named "fleet median".
    pub fn median_node(&self) -> Option<BenchReport> {
        let mut m = self.template.clone()?;
        m.node.hostname = "fleet median".into();
        m.node.node_name = Some("fleet median".into());
        m.node.slurm = None;
        for c in &mut m.configs {
            let Some(s) = self.configs.get(&c.config.name) else {
                continue;
            };
            c.spawner.latency_ns.p50 = median(s.p50_ns.clone()).unwrap_or(0.0).round() as u64;
            c.spawner.spawns_per_sec = median(s.spawns_per_sec.clone()).unwrap_or(0.0);
            for b in &mut c.breakdown {
                if let Some(v) = s.stage_mean_ns.get(&b.stage) {
                    b.mean_ns = median(v.clone()).unwrap_or(0.0).round() as u64;
                }
            }
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bench::results::testing, workload::Method};

    #[test]
    fn the_median_node_holds_each_configurations_median() {
        let mut all = Samples::default();
        let mut half = Samples::default();
        for (i, p50) in [10_000u64, 30_000, 20_000].into_iter().enumerate() {
            let mut c = testing::config("thp/fork-exec-1gib-none", Method::ForkExec, 0, p50);
            c.breakdown = vec![testing::share("dup_mmap", p50 / 2)];
            let r = testing::bench(vec![c]);
            if i == 0 { &mut all } else { &mut half }.add(&r);
        }
        all.merge(half);
        let m = all.median_node().unwrap();
        assert_eq!(m.node.name(), "fleet median");
        assert_eq!(m.configs[0].spawner.latency_ns.p50, 20_000);
        assert_eq!(m.configs[0].breakdown[0].mean_ns, 10_000);
    }
}
