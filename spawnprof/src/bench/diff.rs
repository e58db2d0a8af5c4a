//! `spawnprof diff A B` of two bench directories: one node against another
//! (the laptop-vs-cluster question). Prints the node facts side by side and,
//! for every configuration both benches ran, the spawn rate, the median
//! spawn call and the stage of the call that moved most; writes the same
//! differential flamegraphs as a recording diff, with one root frame per
//! configuration, so a glance shows which configuration and which stage
//! got slower.
use std::{collections::BTreeMap, fmt::Write as _, fs, path::Path};

use anyhow::{Context as _, Result, bail};

use super::{
    file::{BENCH_FILE, load_report},
    results::{BenchReport, ConfigResult},
};
use crate::{
    recording::SPAWNS_FILE,
    report::{
        diff::{DIFF_A_SVG, DIFF_FOLDED, DIFF_SVG, combine, draw, per_spawn_folded, signed_ns},
        flamegraph::Labels,
        folded::ROOT_FRAME,
        stream::aggregate_file,
        table::Table,
    },
    sys::node::NodeFacts,
    units::{format_bytes, format_ns},
};

/// Whether `dir` holds a bench (`bench.json`) rather than a recording.
pub fn is_bench(dir: &Path) -> bool {
    dir.join(BENCH_FILE).is_file()
}

/// The node facts that explain spawn costs, one row per fact.
fn node_rows(a: &NodeFacts, b: &NodeFacts) -> Vec<[String; 3]> {
    type Fact = (&'static str, fn(&NodeFacts) -> String);
    let facts: [Fact; 9] = [
        ("node", |n| {
            if n.name() == n.hostname {
                n.hostname.clone()
            } else {
                format!("{} (host {})", n.name(), n.hostname)
            }
        }),
        ("kernel", |n| n.kernel_release.clone()),
        ("glibc", |n| {
            format!("{} (Rust std {})", n.glibc_version, n.std_spawn_path())
        }),
        ("THP", |n| {
            n.thp_enabled.clone().unwrap_or_else(|| "?".into())
        }),
        ("CPUs", |n| match n.cpu_wakeup_summary() {
            Some(w) => format!("{} ({w})", n.cpus_online),
            None => n.cpus_online.to_string(),
        }),
        ("memory", |n| n.mem_total.map_or("?".into(), format_bytes)),
        ("CPU model", |n| {
            n.cpu_model.clone().unwrap_or_else(|| "?".into())
        }),
        ("environment", |n| {
            format!("{} vars / {}", n.env_count, format_bytes(n.env_bytes))
        }),
        ("PATH", |n| match n.path_missing {
            Some(m) if m > 0 => format!("{} entries, {m} missing", n.path_entries),
            _ => format!("{} entries", n.path_entries),
        }),
    ];
    facts
        .iter()
        .map(|(name, f)| [name.to_string(), f(a), f(b)])
        .collect()
}

/// The stage inside the spawn call whose mean moved most from A to B.
fn biggest_change(a: &ConfigResult, b: &ConfigResult) -> Option<(String, i128)> {
    let means_a: BTreeMap<&str, u64> = a
        .breakdown
        .iter()
        .map(|s| (s.stage.as_str(), s.mean_ns))
        .collect();
    b.breakdown
        .iter()
        .filter_map(|s| {
            let before = *means_a.get(s.stage.as_str())?;
            Some((s.stage.clone(), i128::from(s.mean_ns) - i128::from(before)))
        })
        .max_by_key(|(_, d)| d.abs())
}

/// The printed comparison (node facts, then configurations).
pub fn render(a: &BenchReport, b: &BenchReport, a_dir: &Path, b_dir: &Path) -> String {
    let mut out = String::new();
    for (side, r, dir) in [("A", a, a_dir), ("B", b, b_dir)] {
        let _ = writeln!(
            out,
            "{side}: {} (bench of {}, {} configurations{})",
            dir.display(),
            r.node.name(),
            r.configs.len(),
            if r.quick { ", --quick" } else { "" }
        );
    }
    let mut nodes = Table::new(&[("node", false), ("A", false), ("B", false)]);
    nodes.rows = node_rows(&a.node, &b.node)
        .into_iter()
        .map(Vec::from)
        .collect();
    out.push('\n');
    out.push_str(&nodes.render());

    let mut configs = Table::new(&[
        ("configuration", false),
        ("A spawns/s", true),
        ("B spawns/s", true),
        ("B/A", true),
        ("A p50", true),
        ("B p50", true),
        ("stage that moved most (mean, in the call)", false),
    ]);
    let in_b: BTreeMap<&str, &ConfigResult> = b
        .configs
        .iter()
        .map(|c| (c.config.name.as_str(), c))
        .collect();
    let mut only_a = Vec::new();
    for ca in &a.configs {
        let Some(cb) = in_b.get(ca.config.name.as_str()) else {
            only_a.push(ca.config.name.as_str());
            continue;
        };
        let (ra, rb) = (ca.spawner.spawns_per_sec, cb.spawner.spawns_per_sec);
        configs.rows.push(vec![
            ca.config.name.clone(),
            format!("{ra:.0}"),
            format!("{rb:.0}"),
            if ra > 0.0 {
                format!("{:.2}×", rb / ra)
            } else {
                "-".into()
            },
            format_ns(ca.spawner.latency_ns.p50),
            format_ns(cb.spawner.latency_ns.p50),
            biggest_change(ca, cb)
                .map_or("-".into(), |(stage, d)| format!("{stage} {}", signed_ns(d))),
        ]);
    }
    let names_a: Vec<&str> = a.configs.iter().map(|c| c.config.name.as_str()).collect();
    let only_b: Vec<&str> = b
        .configs
        .iter()
        .map(|c| c.config.name.as_str())
        .filter(|n| !names_a.contains(n))
        .collect();
    out.push('\n');
    if configs.rows.is_empty() {
        out.push_str("no configuration ran in both benches\n");
    } else {
        out.push_str(&configs.render());
    }
    for (side, names) in [("A", only_a), ("B", only_b)] {
        if !names.is_empty() {
            let _ = writeln!(out, "only in {side}: {}", names.join(", "));
        }
    }
    out.push_str(&crate::probe::plan::differences_note(&a.plan, &b.plan));
    out
}

/// Every configuration's stage stacks, per spawn, under a root frame named
/// after the configuration. A configuration whose recording is missing
/// (a bench copied without its subdirectories) is left out and named.
fn folded(bench: &BenchReport, dir: &Path, missing: &mut Vec<String>) -> Result<String> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut text = String::new();
    for c in &bench.configs {
        let spawns = dir.join(&c.recording).join(SPAWNS_FILE);
        if !spawns.is_file() {
            missing.push(format!("{} ({})", c.config.name, spawns.display()));
            continue;
        }
        let agg = aggregate_file(&spawns, workers)?;
        for line in per_spawn_folded(&agg.folder).lines() {
            let rest = line.strip_prefix(ROOT_FRAME).unwrap_or(line);
            let _ = writeln!(text, "{}{rest}", c.config.name);
        }
    }
    Ok(text)
}

/// Loads benches `a` and `b`, writes the differential flamegraphs into
/// `out` and returns the comparison.
pub fn run(a_dir: &Path, b_dir: &Path, out: &Path) -> Result<String> {
    let a = load_report(a_dir).with_context(|| format!("loading bench A ({})", a_dir.display()))?;
    let b = load_report(b_dir).with_context(|| format!("loading bench B ({})", b_dir.display()))?;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut text = render(&a, &b, a_dir, b_dir);
    let mut missing = Vec::new();
    let fa = folded(&a, a_dir, &mut missing)?;
    let fb = folded(&b, b_dir, &mut missing)?;
    if fa.is_empty() || fb.is_empty() {
        bail!(
            "no stage data to compare: the configurations' recordings are missing ({}); \
             copy each bench directory whole, with its subdirectories",
            missing.join(", ")
        );
    }
    let lines = combine(&fa, &fb)?;
    let folded_path = out.join(DIFF_FOLDED);
    fs::write(&folded_path, lines.join("\n") + "\n")
        .with_context(|| format!("writing {}", folded_path.display()))?;
    let labels = |side: &str, other: &str| Labels {
        title: "spawnprof diff: stage time per spawn of each configuration, node A → node B",
        subtitle: format!(
            "widths: {side}'s ns per spawn, summed over configurations; red: more time per spawn on B than on A, blue: less (the other side: {other})"
        ),
        count_name: "ns per spawn",
        name_type: "Stage:",
    };
    draw(&lines, &out.join(DIFF_SVG), &labels("B", "A"), false)?;
    draw(
        &combine(&fb, &fa)?,
        &out.join(DIFF_A_SVG),
        &labels("A", "B"),
        true,
    )?;
    if !missing.is_empty() {
        let _ = writeln!(
            text,
            "left out of the flamegraphs (recording missing): {}",
            missing.join(", ")
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bench::results::testing, workload::Method};

    fn config(name: &str, rate: f64, p50: u64, dup_mmap: u64) -> ConfigResult {
        let mut c = testing::config(name, Method::ForkExec, 0, p50);
        c.spawner.spawns_per_sec = rate;
        c.breakdown = vec![
            testing::share("dup_mmap", dup_mmap),
            testing::share("fork_wakeup", 5_000),
        ];
        c
    }

    fn bench(host: &str, configs: Vec<ConfigResult>) -> BenchReport {
        let mut b = testing::bench(configs);
        b.node.hostname = host.into();
        b
    }

    #[test]
    fn the_comparison_names_the_slower_configuration_and_its_stage() {
        let a = bench(
            "laptop",
            vec![
                config("method-rss/fork-exec-rss1gib", 100.0, 9_000_000, 8_000_000),
                config("path/posix-spawn-misses0", 1000.0, 60_000, 1_000),
            ],
        );
        let b = bench(
            "cluster",
            vec![
                config("method-rss/fork-exec-rss1gib", 50.0, 18_000_000, 17_000_000),
                config("tokio/tokio-multi-2", 900.0, 70_000, 0),
            ],
        );
        let text = render(&a, &b, Path::new("a"), Path::new("b"));
        assert!(text.contains("bench of laptop"), "{text}");
        let row = text
            .lines()
            .find(|l| l.starts_with("method-rss/fork-exec-rss1gib"))
            .expect("the shared configuration");
        assert!(row.contains("0.50×"), "{row}");
        assert!(row.contains("dup_mmap +9 ms"), "{row}");
        assert!(
            text.contains("only in A: path/posix-spawn-misses0"),
            "{text}"
        );
        assert!(text.contains("only in B: tokio/tokio-multi-2"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("node") && l.contains("cluster"))
        );
    }

    #[test]
    fn a_bench_without_its_recordings_is_refused_with_the_remedy() {
        let base =
            std::env::temp_dir().join(format!("spawnprof-bench-diff-{}", std::process::id()));
        let (a, out) = (base.join("a"), base.join("out"));
        fs::create_dir_all(&a).unwrap();
        let report = bench("n", vec![config("thp/fork-exec-1gib-none", 1.0, 1, 1)]);
        fs::write(a.join(BENCH_FILE), serde_json::to_string(&report).unwrap()).unwrap();
        assert!(is_bench(&a));
        let err = run(&a, &a, &out).unwrap_err().to_string();
        assert!(err.contains("copy each bench directory whole"), "{err}");
        let _ = fs::remove_dir_all(base);
    }
}
