//! The figures a fleet report sets side by side, one value per node, each
//! computed from the node's own `bench.json` the way its bench page does
//! (`bench::findings`), and the node facts that can explain each.
use crate::{
    bench::{
        BenchReport,
        findings::{MIB, fit, p50, path_slopes, rss_series, series, slopes},
    },
    report::charts::Unit,
    workload::{HugePages, Method},
};

/// A node fact that can explain a figure (see `facts.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact {
    Thp,
    Environment,
    PathMissing,
    PinnedCpus,
    CpuWakeup,
    Glibc,
    Kernel,
    CpuModel,
}

/// One column of the fleet table.
pub struct Metric {
    /// Key in fleet.json and `#sort=`.
    pub id: &'static str,
    /// As a flag reads it: "node017: fork per MiB 3.1× the fleet median".
    pub name: &'static str,
    pub unit: Unit,
    /// Below this a value is noise: ratios are taken against it, so 0.1 µs
    /// against 0.05 µs is not "2× the median".
    pub floor: f64,
    /// The facts that can move this figure, most likely first.
    pub explained_by: &'static [Fact],
    pub value: fn(&BenchReport) -> Option<f64>,
}

pub const METRICS: [Metric; 9] = [
    Metric {
        id: "fork_ns_per_mib",
        name: "fork per MiB of RSS",
        unit: Unit::Nanos,
        floor: 200.0,
        explained_by: &[Fact::Thp, Fact::Kernel, Fact::CpuModel, Fact::CpuWakeup],
        value: fork_ns_per_mib,
    },
    Metric {
        id: "posix_spawn_p50_ns",
        name: "posix_spawn p50",
        unit: Unit::Nanos,
        floor: 10_000.0,
        explained_by: &[
            Fact::Environment,
            Fact::Glibc,
            Fact::PinnedCpus,
            Fact::CpuWakeup,
            Fact::Kernel,
            Fact::CpuModel,
        ],
        value: posix_spawn_p50,
    },
    Metric {
        id: "thp_factor",
        name: "THP factor",
        unit: Unit::Plain,
        floor: 1.0,
        explained_by: &[Fact::Thp, Fact::Kernel],
        value: thp_factor,
    },
    Metric {
        id: "ns_per_env_var",
        name: "cost per environment variable",
        unit: Unit::Nanos,
        floor: 50.0,
        explained_by: &[Fact::Environment, Fact::Kernel, Fact::CpuModel],
        value: ns_per_env_var,
    },
    Metric {
        id: "env_vars_per_spawn",
        name: "variables each child gets",
        unit: Unit::Plain,
        floor: 10.0,
        explained_by: &[Fact::Environment],
        value: env_vars_per_spawn,
    },
    Metric {
        id: "ns_per_path_miss",
        name: "cost per PATH miss",
        unit: Unit::Nanos,
        floor: 1_000.0,
        explained_by: &[Fact::PathMissing, Fact::Kernel, Fact::CpuModel],
        value: ns_per_path_miss,
    },
    Metric {
        id: "path_misses_per_spawn",
        name: "failed execs per spawn by name",
        unit: Unit::Plain,
        floor: 1.0,
        explained_by: &[Fact::PathMissing],
        value: path_misses_per_spawn,
    },
    Metric {
        id: "other_cpu_wait_ns",
        name: "wake-up on another CPU",
        unit: Unit::Nanos,
        floor: 5_000.0,
        explained_by: &[Fact::PinnedCpus, Fact::CpuWakeup, Fact::Kernel],
        value: other_cpu_wait_ns,
    },
    Metric {
        id: "probe_overhead",
        name: "probe overhead",
        unit: Unit::Plain,
        floor: 0.05,
        explained_by: &[Fact::Kernel, Fact::CpuModel],
        value: probe_overhead,
    },
];

/// Least-squares slope of fork-exec's p50 over its resident size, per MiB.
fn fork_ns_per_mib(r: &BenchReport) -> Option<f64> {
    let points: Vec<(f64, f64)> = rss_series(r, Method::ForkExec)
        .iter()
        .map(|c| (c.spawner.rss_requested as f64, p50(c)))
        .collect();
    Some(fit(&points)?.0 * MIB)
}

/// posix_spawn's median call with no extra memory.
fn posix_spawn_p50(r: &BenchReport) -> Option<f64> {
    rss_series(r, Method::PosixSpawn).first().map(|c| p50(c))
}

/// Fork at 1 GiB with 4 KiB pages against with transparent huge pages.
fn thp_factor(r: &BenchReport) -> Option<f64> {
    let of = |hp: HugePages| {
        r.configs
            .iter()
            .find(|c| c.config.experiment == "thp" && c.config.spawner.huge_pages == hp)
    };
    Some(p50(of(HugePages::None)?) / p50(of(HugePages::Thp)?).max(1.0))
}

fn ns_per_env_var(r: &BenchReport) -> Option<f64> {
    let points = series(r, "env", |c| c.config.spawner.env_count as f64, "exec_load");
    Some(slopes(&points, Method::PosixSpawn)?.0)
}

/// The whole environment each child of the spawner received, with no
/// variables added: the node's own (a module system's, a login shell's).
fn env_vars_per_spawn(r: &BenchReport) -> Option<f64> {
    let c = rss_series(r, Method::PosixSpawn)
        .first()
        .copied()
        .or(r.configs.first())?;
    Some(c.spawner.environ_count.saturating_sub(c.spawner.env_count) as f64)
}

fn ns_per_path_miss(r: &BenchReport) -> Option<f64> {
    Some(path_slopes(r)?.1)
}

/// Failed execve calls per spawn by name with no added misses: the
/// node's own PATH, as recorded.
fn path_misses_per_spawn(r: &BenchReport) -> Option<f64> {
    r.configs
        .iter()
        .find(|c| c.config.experiment == "path" && c.config.spawner.path_misses == 0)?
        .failed_execs_per_spawn
}

/// The median wait to run of children placed on another CPU than their
/// parent's, free placement.
fn other_cpu_wait_ns(r: &BenchReport) -> Option<f64> {
    r.configs
        .iter()
        .filter(|c| c.config.experiment == "placement" && c.config.spawner.cpus.is_none())
        .filter_map(|c| c.placement.as_ref())
        .find(|p| p.sched_delay_other_cpu.count > 0)
        .map(|p| p.sched_delay_other_cpu.p50_ns as f64)
}

/// What the probes add to the spawn call's median (or cost of the rate).
fn probe_overhead(r: &BenchReport) -> Option<f64> {
    let o = r.overhead.as_ref()?;
    Some(o.p50_cost.unwrap_or(o.cost))
}

/// A figure as the table shows it.
pub fn format(m: &Metric, v: f64) -> String {
    match m.id {
        "thp_factor" => format!("{v:.1}×"),
        "probe_overhead" => format!("{:+.0}%", 100.0 * v),
        "path_misses_per_spawn" => format!("{v:.1}"),
        "env_vars_per_spawn" => format!("{v:.0}"),
        _ => m.unit.format(v),
    }
}

/// Every metric's value for one bench, in [`METRICS`] order.
pub fn values(r: &BenchReport) -> Vec<Option<f64>> {
    METRICS
        .iter()
        .map(|m| (m.value)(r).filter(|v| v.is_finite()))
        .collect()
}
