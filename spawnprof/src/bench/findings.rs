//! What a bench found on this node, computed from its own configurations,
//! each set against what the published measurements say
//! (docs/BENCHMARKS.md and the seeds it cites): fork's cost per MiB of
//! resident memory, vfork-style spawns staying flat, the huge-page factor,
//! the cost per environment variable and per missing PATH directory, a
//! child starting on another CPU, and what tracing cost.
use super::results::{BenchReport, ConfigResult};
use crate::{
    units::format_ns,
    workload::{HugePages, Method},
};

/// One finding: a line with its number, the published figures beside it,
/// and the chart that shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// Anchor in bench.html.
    pub id: &'static str,
    pub title: &'static str,
    /// What this node measured.
    pub here: String,
    /// What others measured, and how this compares.
    pub published: String,
    /// The chart file behind it.
    pub chart: Option<&'static str>,
}

/// Every finding the bench's configurations allow, in the order of the
/// story: the cost of fork, what avoids it, then the smaller costs.
pub fn findings(r: &BenchReport) -> Vec<Finding> {
    let each: [fn(&BenchReport) -> Option<Finding>; 7] = [
        fork_per_mib,
        vfork_flat,
        thp_factor,
        per_variable,
        per_path_miss,
        other_cpu,
        tracing_cost,
    ];
    each.iter().filter_map(|f| f(r)).collect()
}

pub(crate) const MIB: f64 = (1u64 << 20) as f64;

/// The median spawn call, the figure the table shows too.
pub(crate) fn p50(c: &ConfigResult) -> f64 {
    c.spawner.latency_ns.p50 as f64
}

/// Least-squares slope and intercept of y over x, and r²; `None` with
/// fewer than two distinct x.
pub fn fit(points: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let syy: f64 = points.iter().map(|(_, y)| (y - my).powi(2)).sum();
    if points.len() < 2 || sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy > 0.0 {
        sxy * sxy / (sxx * syy)
    } else {
        1.0
    };
    Some((slope, my - slope * mx, r2))
}

/// `method`'s method-rss configurations, by resident size.
pub(crate) fn rss_series(r: &BenchReport, method: Method) -> Vec<&ConfigResult> {
    let mut v: Vec<&ConfigResult> = r
        .configs
        .iter()
        .filter(|c| c.config.experiment == "method-rss" && c.config.spawner.method == method)
        .collect();
    v.sort_by_key(|c| c.spawner.rss_requested);
    v
}

/// ns per MiB as µs, e.g. `9.9 µs`.
fn per_mib(slope_ns_per_byte: f64) -> String {
    format_ns((slope_ns_per_byte * MIB).max(0.0).round() as u64)
}

/// What the smallest fork copies of the spawner itself: its own mappings.
/// A C program that only spawns has about 24 (dynamically linked); the
/// spawner built by `cargo xtask` is static and has about 13, while a
/// plain `cargo build` one has about 35, which makes its fork-exec at 0
/// RSS slower than such a C program's (docs/BENCHMARKS.md: 0.82x).
fn own_mappings(c: &ConfigResult) -> String {
    const C_PROGRAM: u64 = 24;
    match c.spawner.own_mappings {
        Some(n) if n > C_PROGRAM => format!(
            "; the smallest fork still copies the spawner's own {n} mappings (a C program \
             that only spawns has about {C_PROGRAM}: each mapping adds to every fork; \
             `cargo xtask install` links the spawner statically)"
        ),
        Some(n) => format!(
            "; the spawner's own {n} mappings are no more than a C program's that only \
             spawns (about {C_PROGRAM})"
        ),
        None => String::new(),
    }
}

fn fork_per_mib(r: &BenchReport) -> Option<Finding> {
    let fork = rss_series(r, Method::ForkExec);
    let points: Vec<(f64, f64)> = fork
        .iter()
        .map(|c| (c.spawner.rss_requested as f64, p50(c)))
        .collect();
    let (slope, _, r2) = fit(&points)?;
    let (first, last) = (fork.first()?, fork.last()?);
    let dup = last
        .breakdown
        .iter()
        .find(|s| s.stage == "dup_mmap")
        .map(|s| {
            format!(
                "; dup_mmap is {:.0}% of the call at the largest",
                100.0 * s.share_of_call
            )
        })
        .unwrap_or_default();
    let here_mib = slope * MIB / 1e3;
    // Kobzol's cluster: 0.49 ms per GiB per spawn (1-5 GiB), ~0.48 µs/MiB.
    let ratio = here_mib / 0.48;
    let thp = thp_per_mib(r)
        .map(|t| format!(" (our fork with THP costs {t} per MiB: that cluster likely had THP on)"))
        .unwrap_or_default();
    Some(Finding {
        id: "fork-per-mib",
        title: "fork cost per MiB of RSS",
        here: format!(
            "fork-exec: {} per MiB of resident memory (least squares over {} sizes, r² {r2:.3}; p50 {} → {}){dup}{floor}",
            per_mib(slope),
            fork.len(),
            format_ns(first.spawner.latency_ns.p50),
            format_ns(last.spawner.latency_ns.p50),
            floor = own_mappings(first),
        ),
        published: format!(
            "{ratio:.0}× the ≈0.48 µs per MiB of Kobzol's HPC cluster (0.49 ms per GiB per spawn, 1–5 GiB){thp}; \
             dlang/phobos#9139 measured 30–45 ms at 1 GiB (≈30–44 µs per MiB); this VM's earlier benches 9–12 µs per MiB"
        ),
        chart: Some("bench-rss.svg"),
    })
}

/// Fork with THP at 1 GiB, per MiB.
fn thp_per_mib(r: &BenchReport) -> Option<String> {
    let thp = r
        .configs
        .iter()
        .find(|c| c.config.experiment == "thp" && c.config.spawner.huge_pages == HugePages::Thp)?;
    Some(per_mib(p50(thp) / thp.spawner.rss_requested.max(1) as f64))
}

fn vfork_flat(r: &BenchReport) -> Option<Finding> {
    let fork_last = rss_series(r, Method::ForkExec).last().copied();
    let mut parts = Vec::new();
    let mut worst_ratio = f64::INFINITY;
    for m in [
        Method::VforkExec,
        Method::PosixSpawn,
        Method::Clone3Vfork,
        Method::Std,
    ] {
        let s = rss_series(r, m);
        let (Some(first), Some(last)) = (s.first(), s.last()) else {
            continue;
        };
        if s.len() < 2 {
            continue;
        }
        parts.push(format!(
            "{m} {} → {}",
            format_ns(first.spawner.latency_ns.p50),
            format_ns(last.spawner.latency_ns.p50)
        ));
        if let Some(f) = fork_last.filter(|f| f.spawner.rss_requested == last.spawner.rss_requested)
        {
            worst_ratio = worst_ratio.min(p50(f) / p50(last).max(1.0));
        }
    }
    let top = rss_series(r, Method::VforkExec)
        .last()
        .or(rss_series(r, Method::PosixSpawn).last())
        .map(|c| crate::units::format_bytes(c.spawner.rss_requested))?;
    let against_fork = if worst_ratio.is_finite() {
        format!(", at least {worst_ratio:.0}× less than fork at {top}")
    } else {
        String::new()
    };
    Some(Finding {
        id: "vfork-flat",
        title: "vfork and posix_spawn stay flat",
        here: format!("p50 from no extra memory to {top}: {}{against_fork}", parts.join(", ")),
        published: "Kobzol's cluster: posix_spawn with POSIX_SPAWN_USEVFORK 1.28–1.30 s per 10,000 spawns at every size from 1 to 5 GiB, 19.7× faster than fork at 5 GiB; Go 1.9's switch to CLONE_VFORK: 16 ms → 0.5 ms at 10 GB".into(),
        chart: Some("bench-rss.svg"),
    })
}

fn thp_factor(r: &BenchReport) -> Option<Finding> {
    let of = |hp: HugePages| {
        r.configs
            .iter()
            .find(|c| c.config.experiment == "thp" && c.config.spawner.huge_pages == hp)
    };
    let (small, huge) = (of(HugePages::None)?, of(HugePages::Thp)?);
    let factor = p50(small) / p50(huge).max(1.0);
    let within = if (15.0..=55.0).contains(&factor) {
        "within"
    } else {
        "outside"
    };
    Some(Finding {
        id: "thp",
        title: "the THP factor",
        here: format!(
            "fork at {}: p50 {} with 4 KiB pages, {} with transparent huge pages: {factor:.1}× faster",
            crate::units::format_bytes(small.spawner.rss_requested),
            format_ns(small.spawner.latency_ns.p50),
            format_ns(huge.spawner.latency_ns.p50),
        ),
        published: format!(
            "{within} the 17–50× published: huge pages gave ~2,400 forks/s regardless of size where 500 MB forked ~50 times a second (Stack Overflow 2731531)"
        ),
        chart: Some("bench-thp.svg"),
    })
}

/// The env or path experiment's points for `method`: (x, p50, a stage's p50).
pub(crate) fn series(
    r: &BenchReport,
    experiment: &str,
    x: impl Fn(&ConfigResult) -> f64,
    stage: &str,
) -> Vec<(Method, f64, f64, Option<f64>)> {
    r.configs
        .iter()
        .filter(|c| c.config.experiment == experiment)
        .map(|c| {
            let s = c
                .stages
                .get(stage)
                .filter(|s| s.count > 0)
                .map(|s| s.p50_ns as f64);
            (c.config.spawner.method, x(c), p50(c), s)
        })
        .collect()
}

/// Slope of the spawn call, and of `stage`, over x, for one method.
pub(crate) fn slopes(
    points: &[(Method, f64, f64, Option<f64>)],
    m: Method,
) -> Option<(f64, Option<f64>, usize)> {
    let mine: Vec<_> = points.iter().filter(|p| p.0 == m).collect();
    let call: Vec<(f64, f64)> = mine.iter().map(|p| (p.1, p.2)).collect();
    let stage: Vec<(f64, f64)> = mine.iter().filter_map(|p| Some((p.1, p.3?))).collect();
    let (s, _, _) = fit(&call)?;
    Some((s, fit(&stage).map(|f| f.0), mine.len()))
}

fn per_variable(r: &BenchReport) -> Option<Finding> {
    let points = series(r, "env", |c| c.config.spawner.env_count as f64, "exec_load");
    let max = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let mut parts = Vec::new();
    for m in [Method::PosixSpawn, Method::StdEnv] {
        let Some((call, load, _)) = slopes(&points, m) else {
            continue;
        };
        let load = load.map_or_else(String::new, |l| {
            format!(
                " (exec_load, the kernel's copy: {})",
                format_ns(l.max(0.0).round() as u64)
            )
        });
        parts.push(format!(
            "{m} {}{load}",
            format_ns(call.max(0.0).round() as u64)
        ));
    }
    if parts.is_empty() {
        return None;
    }
    Some(Finding {
        id: "per-variable",
        title: "the cost per environment variable",
        here: format!(
            "per extra variable, on the spawn call's p50 (0 to {max:.0} extra, serial, pinned): {}",
            parts.join("; ")
        ),
        published: "Kobzol: 50 → 250 variables cost ≈0.3 µs per variable per spawn on a laptop and ≈1.6 µs on the cluster (0.69 → 1.28 s and 5.56 → 8.72 s per 10,000 spawns), more with std's env() override".into(),
        chart: Some("bench-env.svg"),
    })
}

/// The path experiment's slopes over the failed execs per spawn: the
/// spawn call's and path_search's, and how many configurations.
pub(crate) fn path_slopes(r: &BenchReport) -> Option<(Method, f64, Option<f64>, usize)> {
    let points = series(
        r,
        "path",
        |c| {
            c.failed_execs_per_spawn
                .unwrap_or(c.config.spawner.path_misses as f64)
        },
        "path_search",
    );
    let m = points.first()?.0;
    let (call, search, n) = slopes(&points, m)?;
    Some((m, call, search, n))
}

fn per_path_miss(r: &BenchReport) -> Option<Finding> {
    let (m, call, search, n) = path_slopes(r)?;
    if n < 2 {
        return None;
    }
    let search = search.map_or_else(String::new, |s| {
        format!(
            " (path_search, the failed execs themselves: {})",
            format_ns(s.max(0.0).round() as u64)
        )
    });
    Some(Finding {
        id: "per-path-miss",
        title: "the cost per missing PATH directory",
        here: format!(
            "{m} by name: {} per failed execve on the spawn call's p50{search}",
            format_ns(call.max(0.0).round() as u64)
        ),
        published: "Kobzol: spawning sleep by name cost 28 µs more than /usr/bin/sleep with a 14-entry PATH (2.50 s against 1.80 s per 25,000 spawns), a few µs per directory searched".into(),
        chart: Some("bench-path.svg"),
    })
}

fn other_cpu(r: &BenchReport) -> Option<Finding> {
    let placement: Vec<&ConfigResult> = r
        .configs
        .iter()
        .filter(|c| c.config.experiment == "placement")
        .collect();
    let free = placement.iter().find(|c| c.config.spawner.cpus.is_none())?;
    let pinned = placement.iter().find(|c| {
        c.config.spawner.cpus.is_some() && c.config.spawner.method == free.config.spawner.method
    })?;
    let (f, p) = (&free.spawner.latency_ns, &pinned.spawner.latency_ns);
    let waits = free
        .placement
        .as_ref()
        .filter(|pl| pl.sched_delay_other_cpu.count > 0)
        .map(|pl| {
            format!(
                "; {} of {} children started on another CPU and waited {} (p50) to run there, against {} on the parent's",
                pl.other_cpu,
                pl.known,
                format_ns(pl.sched_delay_other_cpu.p50_ns),
                format_ns(pl.sched_delay_same_cpu.p50_ns)
            )
        })
        .unwrap_or_default();
    Some(Finding {
        id: "other-cpu",
        title: "the cost of a child starting on another CPU",
        here: format!(
            "{}, exit-only child: mean {} free to start anywhere against {} pinned to one CPU ({:.1}×){waits}",
            free.config.spawner.method,
            format_ns(f.mean as u64),
            format_ns(p.mean as u64),
            f.mean / p.mean.max(1.0)
        ),
        published: "no published figure; docs/BENCHMARKS.md measured 1–4 ms waits for 3–30% of the children of a serial posix_spawn loop on a VM, against ~1 µs on the parent's CPU".into(),
        chart: None,
    })
}

fn tracing_cost(r: &BenchReport) -> Option<Finding> {
    let o = r.overhead.as_ref()?;
    let p50 = match (o.without_probes_p50_ns, o.with_probes_p50_ns, o.p50_cost) {
        (Some(wo), Some(wi), Some(c)) => format!(
            "the spawn call's p50 {} without, {} with the probes ({:+.0}%)",
            format_ns(wo as u64),
            format_ns(wi as u64),
            100.0 * c
        ),
        _ => format!("{:+.0}% of the spawn rate", -100.0 * o.cost),
    };
    let per_spawn = o
        .probe_ns_per_spawn
        .map(|ns| {
            format!(
                "; probes {} and spawnprof {} of CPU per spawn",
                format_ns(ns as u64),
                o.reader_ns_per_spawn
                    .map_or("-".into(), |r| format_ns(r as u64))
            )
        })
        .unwrap_or_default();
    Some(Finding {
        id: "tracing-cost",
        title: "what tracing cost",
        here: format!("{}, {} serial: {p50}{per_spawn}", o.method, o.count),
        published: "bpftrace with seven empty spawn tracepoints added ~8% on this VM (docs/BENCHMARKS.md); strace slows syscall-heavy work up to 442× (Gregg, 2014); bcc's execsnoop calls its cost negligible below 1,000 execs/s".into(),
        chart: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::testing::{bench, config, share};

    /// A node where fork costs 10 µs per MiB over 40 µs, vfork stays at
    /// 50 µs, THP makes fork at 1 GiB 20× faster, each variable costs 100 ns
    /// and each PATH miss 1 µs.
    fn node() -> BenchReport {
        const MIB: u64 = 1 << 20;
        let mut configs = Vec::new();
        for rss in [0, 256 * MIB, 1024 * MIB, 4096 * MIB] {
            let mut fork = config(
                &format!("method-rss/fork-exec-{rss}"),
                Method::ForkExec,
                rss,
                40_000 + rss / MIB * 10_000,
            );
            fork.breakdown = vec![share("dup_mmap", 1)];
            fork.breakdown[0].share_of_call = 0.99;
            configs.push(fork);
            configs.push(config(
                &format!("method-rss/vfork-exec-{rss}"),
                Method::VforkExec,
                rss,
                50_000,
            ));
        }
        for (pages, p50) in [(HugePages::None, 10_280_000), (HugePages::Thp, 514_000)] {
            let name = format!("thp/fork-exec-1gib-{pages}");
            let mut c = config(&name, Method::ForkExec, 1024 * MIB, p50);
            c.config.spawner.huge_pages = pages;
            c.spawner.huge_pages = pages;
            configs.push(c);
        }
        for vars in [0, 1000] {
            let mut c = config(
                &format!("env/posix-spawn-env{vars}"),
                Method::PosixSpawn,
                0,
                50_000 + vars * 100,
            );
            c.config.spawner.env_count = vars;
            configs.push(c);
        }
        for misses in [0u32, 14] {
            let mut c = config(
                &format!("path/posix-spawn-misses{misses}"),
                Method::PosixSpawn,
                0,
                60_000 + u64::from(misses) * 1_000,
            );
            c.failed_execs_per_spawn = Some(8.0 + f64::from(misses));
            configs.push(c);
        }
        bench(configs)
    }

    #[test]
    fn findings_are_computed_from_the_configurations_and_set_against_the_published() {
        let f = findings(&node());
        let ids: Vec<&str> = f.iter().map(|f| f.id).collect();
        assert_eq!(
            ids,
            [
                "fork-per-mib",
                "vfork-flat",
                "thp",
                "per-variable",
                "per-path-miss"
            ]
        );
        assert!(
            f[0].here.starts_with("fork-exec: 10 µs per MiB"),
            "{}",
            f[0].here
        );
        assert!(f[0].here.contains("dup_mmap is 99%"), "{}", f[0].here);
        assert!(
            f[0].published
                .starts_with("21× the ≈0.48 µs per MiB of Kobzol's"),
            "{}",
            f[0].published
        );
        assert!(
            f[1].here.contains("vfork-exec 50 µs → 50 µs")
                && f[1].here.contains("820× less than fork at 4 GiB"),
            "{}",
            f[1].here
        );
        assert!(
            f[2].here.contains("20.0× faster") && f[2].published.starts_with("within the 17–50×"),
            "{f:?}"
        );
        assert!(f[3].here.contains("posix-spawn 100 ns"), "{}", f[3].here);
        assert!(
            f[4].here.contains("1 µs per failed execve"),
            "{}",
            f[4].here
        );
        assert_eq!(f[2].chart, Some("bench-thp.svg"));
    }

    #[test]
    fn bench_html_opens_with_the_findings_and_ends_with_a_sortable_table() {
        let r = node();
        let html = crate::bench::page::render(&r, &crate::bench::charts::charts(&r));
        let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("no {needle}"));
        assert!(at("What this node showed") < at("id=\"fork-per-mib\""));
        assert!(at("id=\"per-path-miss\"") < at("id=\"config-table\""));
        assert!(at("id=\"config-table\" class=\"sortable\"") > 0);
        // A chart shown once, under the first finding that needs it.
        assert_eq!(html.matches("<figure id=\"bench-rss.svg\"").count(), 1);
        assert!(html.contains("bench-thp.svg"));
        assert!(
            !html.contains(">serial<"),
            "no column that says serial on every row"
        );
    }

    #[test]
    fn a_least_squares_fit_recovers_a_line() {
        let pts = [
            (0.0, 43.0),
            (256.0, 2_603.0),
            (1024.0, 10_283.0),
            (4096.0, 41_003.0),
        ];
        let (slope, icept, r2) = fit(&pts).unwrap();
        assert!((slope - 10.0).abs() < 1e-9 && (icept - 43.0).abs() < 1e-6 && r2 > 0.999_999);
        assert!(fit(&[(1.0, 2.0)]).is_none());
        assert!(fit(&[(1.0, 2.0), (1.0, 3.0)]).is_none());
    }
}
