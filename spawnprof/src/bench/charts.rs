//! Charts of a `spawnprof bench` run, like the seeds' figures: spawn time
//! against RSS per method, against environment size, against PATH misses,
//! the tokio modes, the fork chain along its length, and one stacked bar per
//! configuration showing which stages make up the spawn call. Written as SVG
//! files and gathered in a self-contained `bench.html`.
use std::{collections::BTreeMap, fmt::Write as _, fs, path::Path};

use anyhow::{Context as _, Result};

use super::{
    results::{BenchReport, ConfigResult},
    text::{interrupted_note, placement_findings},
};
use crate::{
    report::charts::{self, Axis, Unit},
    units::format_ns,
};

/// Mean latency of the spawn call, the figure the charts plot.
fn mean_ns(c: &ConfigResult) -> f64 {
    c.spawner.latency_ns.mean
}

/// Median latency of the spawn call: the steadier figure for serial spawns,
/// which a few host stalls would dominate in the mean.
fn p50_ns(c: &ConfigResult) -> f64 {
    c.spawner.latency_ns.p50 as f64
}

/// A stage's median over the configuration's spawns; `None` where no spawn
/// measured it or it took no time (a log axis has no zero).
fn stage_p50_ns(c: &ConfigResult, stage: &str) -> Option<f64> {
    c.stages
        .get(stage)
        .filter(|s| s.count > 0 && s.p50_ns > 0)
        .map(|s| s.p50_ns as f64)
}

fn in_experiment<'a>(
    r: &'a BenchReport,
    experiment: &'a str,
) -> impl Iterator<Item = &'a ConfigResult> {
    r.configs
        .iter()
        .filter(move |c| c.config.experiment == experiment)
}

/// A chart: its file name, title and SVG.
type Chart = (&'static str, &'static str, String);

/// `(file name, title, svg)` of every chart the report supports.
pub fn charts(r: &BenchReport) -> Vec<Chart> {
    let each: [fn(&BenchReport) -> Option<Chart>; 6] = [
        rss_chart,
        env_chart,
        path_chart,
        tokio_chart,
        fork_chain_chart,
        stages_chart,
    ];
    each.iter().filter_map(|chart| chart(r)).collect()
}

/// Serial spawns' median call: steadier than the mean (see [`p50_ns`]).
fn median_call() -> Axis {
    Axis::new("median (p50)", Unit::Nanos).log()
}

/// Spawn time vs RSS, one line per method.
fn rss_chart(r: &BenchReport) -> Option<Chart> {
    let mut by_method: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for c in in_experiment(r, "method-rss") {
        by_method
            .entry(c.config.spawner.method.to_string())
            .or_default()
            .push((c.spawner.rss_requested as f64, mean_ns(c)));
    }
    if by_method.is_empty() {
        return None;
    }
    let series: Vec<(String, Vec<(f64, f64)>)> = by_method.into_iter().collect();
    Some((
        "bench-rss.svg",
        "Spawn time vs resident memory",
        charts::line_chart_with(
            "Spawn time vs resident memory, per method",
            &Axis::new("RSS of the spawning process", Unit::Bytes),
            &Axis::new("mean spawn call", Unit::Nanos).log(),
            &series,
        ),
    ))
}

/// Spawn time vs extra environment variables, and the exec stage that
/// copies them: serial spawns, so the median is the steady figure.
fn env_chart(r: &BenchReport) -> Option<Chart> {
    let mut by_env: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for c in in_experiment(r, "env") {
        let method = c.config.spawner.method.to_string();
        let x = c.config.spawner.env_count as f64;
        by_env
            .entry(format!("{method}: spawn call"))
            .or_default()
            .push((x, p50_ns(c)));
        if let Some(load) = stage_p50_ns(c, "exec_load") {
            by_env
                .entry(format!("{method}: exec_load"))
                .or_default()
                .push((x, load));
        }
    }
    if by_env.is_empty() {
        return None;
    }
    let series: Vec<(String, Vec<(f64, f64)>)> = by_env.into_iter().collect();
    Some((
        "bench-env.svg",
        "Spawn time vs environment size",
        charts::line_chart_with(
            "Spawn call and exec_load (which copies the environment) vs extra variables",
            &Axis::new("extra variables", Unit::Plain),
            &median_call(),
            &series,
        ),
    ))
}

/// Spawn time vs PATH misses, and the failed execs themselves.
fn path_chart(r: &BenchReport) -> Option<Chart> {
    let mut path: Vec<(String, Vec<(f64, f64)>)> = vec![
        ("spawn call".into(), Vec::new()),
        ("path_search (failed execs)".into(), Vec::new()),
    ];
    for c in in_experiment(r, "path") {
        // What the spawns did, not only what was added: the node's own PATH
        // may miss before the real directory too.
        let x = c
            .failed_execs_per_spawn
            .unwrap_or(c.config.spawner.path_misses as f64);
        path[0].1.push((x, p50_ns(c)));
        if let Some(search) = stage_p50_ns(c, "path_search") {
            path[1].1.push((x, search));
        }
    }
    path.retain(|(_, points)| !points.is_empty());
    if path.is_empty() {
        return None;
    }
    Some((
        "bench-path.svg",
        "Spawn time vs PATH misses",
        charts::line_chart_with(
            "posix_spawnp by name vs nonexistent PATH entries before the real one",
            &Axis::new(
                "failed execve attempts per spawn (the node's PATH misses + the added ones)",
                Unit::Plain,
            ),
            &median_call(),
            &path,
        ),
    ))
}

/// The tokio modes, as bars.
fn tokio_chart(r: &BenchReport) -> Option<Chart> {
    let tokio: Vec<&ConfigResult> = in_experiment(r, "tokio").collect();
    if tokio.is_empty() {
        return None;
    }
    let names: Vec<String> = tokio
        .iter()
        .map(|c| c.config.spawner.method.to_string())
        .collect();
    let values: Vec<Vec<f64>> = tokio.iter().map(|c| vec![mean_ns(c)]).collect();
    Some((
        "bench-tokio.svg",
        "tokio modes",
        charts::stacked_bars(
            "Mean spawn time per tokio mode",
            &names,
            &["spawn call"],
            &values,
        ),
    ))
}

/// The fork chain: mean fork time per tenth of its length.
fn fork_chain_chart(r: &BenchReport) -> Option<Chart> {
    let chain = in_experiment(r, "fork-chain").next()?;
    let w = chain.spawner.window_means_ns.as_ref()?;
    let points: Vec<(f64, f64)> = w
        .iter()
        .enumerate()
        .map(|(i, &v)| ((i + 1) as f64, v as f64))
        .collect();
    Some((
        "bench-fork-chain.svg",
        "Fork chain",
        charts::line_chart_with(
            "Fork time along a chain of forks whose parents exit (anon_vma case)",
            &Axis::new("tenth of the chain", Unit::Plain),
            &Axis::new("mean fork call", Unit::Nanos),
            &[("fork-chain", points)],
        ),
    ))
}

/// Which stages make up the spawn call: every method at the largest RSS
/// of the sweep, and fork with and without huge pages (all 49
/// configurations in one chart would be unreadable; bench.json has them).
fn stages_chart(r: &BenchReport) -> Option<Chart> {
    let max_rss = in_experiment(r, "method-rss")
        .map(|c| c.spawner.rss_requested)
        .max();
    let picked: Vec<&ConfigResult> = r
        .configs
        .iter()
        .filter(|c| {
            (c.config.experiment == "method-rss" && Some(c.spawner.rss_requested) == max_rss)
                || c.config.experiment == "thp"
        })
        .collect();
    let mut stage_names: Vec<String> = Vec::new();
    for c in &picked {
        for s in &c.breakdown {
            if !stage_names.contains(&s.stage) {
                stage_names.push(s.stage.clone());
            }
        }
    }
    if stage_names.is_empty() {
        return None;
    }
    let categories: Vec<String> = picked.iter().map(|c| short_label(c)).collect();
    let values: Vec<Vec<f64>> = picked
        .iter()
        .map(|c| {
            stage_names
                .iter()
                .map(|n| {
                    c.breakdown
                        .iter()
                        .find(|s| &s.stage == n)
                        .map_or(0.0, |s| s.mean_ns as f64)
                })
                .collect()
        })
        .collect();
    Some((
        "bench-stages.svg",
        "Where the spawn call goes",
        charts::stacked_bars(
            "Stages of the spawn call at the largest RSS, and fork with THP (mean)",
            &categories,
            &stage_names,
            &values,
        ),
    ))
}

/// A configuration's bar label in [`stages_chart`]. Short labels: ten bars
/// share a 500-pixel axis.
fn short_label(c: &ConfigResult) -> String {
    let m = match c.config.spawner.method.to_string().as_str() {
        "fork-exec" => "fork".to_string(),
        "vfork-exec" => "vfork".into(),
        "posix-spawn" => "spawn".into(),
        "clone3-vfork" => "clone3".into(),
        other => other.into(),
    };
    if c.config.experiment == "thp" {
        format!("{m} {}", c.config.spawner.huge_pages)
    } else {
        m
    }
}

/// Writes every chart as an SVG and `bench.html` gathering them with the node facts.
pub fn write(dir: &Path, r: &BenchReport) -> Result<()> {
    let charts = charts(r);
    let mut html = String::new();
    let n = &r.node;
    let _ = write!(
        html,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>spawnprof bench: {host}</title>\
         <style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}\
         td,th{{padding:2px 8px;text-align:left}}td.n{{text-align:right;white-space:nowrap}}svg{{max-width:100%;height:auto}}</style></head><body>\
         <h1>spawnprof bench: {host}</h1><table>\
         <tr><th>kernel</th><td>{kernel}</td></tr>\
         <tr><th>glibc</th><td>{glibc} (Rust std {std})</td></tr>\
         <tr><th>THP</th><td>{thp}</td></tr><tr><th>CPUs</th><td>{cpus}{wakeup}</td></tr>\
         <tr><th>sweep</th><td>{sweep}</td></tr></table>",
        host = charts::escape(&n.hostname),
        kernel = charts::escape(&n.kernel_release),
        glibc = charts::escape(&n.glibc_version),
        std = n.std_spawn_path(),
        thp = charts::escape(n.thp_enabled.as_deref().unwrap_or("?")),
        cpus = n.cpus_online,
        sweep = charts::escape(&sweep_line(r)),
        wakeup = n
            .cpu_wakeup_summary()
            .map_or(String::new(), |w| format!(" ({})", charts::escape(&w))),
    );
    if let Some(note) = interrupted_note(r) {
        let _ = write!(html, "<p><strong>{}</strong></p>", charts::escape(&note));
    }
    configurations_table(&mut html, r);
    for (file, title, svg) in &charts {
        let path = dir.join(file);
        fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        let _ = write!(html, "<h2>{}</h2>{svg}", charts::escape(title));
    }
    for line in placement_findings(r) {
        let _ = write!(html, "<p>{}</p>", charts::escape(&line));
    }
    if let Some(o) = &r.overhead {
        let _ = write!(html, "<p>{}.</p>", charts::escape(&o.describe()));
    }
    html.push_str("</body></html>\n");
    let path = dir.join("bench.html");
    fs::write(&path, html).with_context(|| format!("writing {}", path.display()))
}

/// The figures the terminal prints, one row per configuration, each linked
/// to its own recording's report.
fn configurations_table(html: &mut String, r: &BenchReport) {
    if r.configs.is_empty() {
        return;
    }
    html.push_str(
        "<h2>Configurations</h2><table><tr><th>configuration</th><th>how it spawns</th>\
         <th>spawns/s</th><th>p50</th><th>p99</th><th>where the spawn call goes</th></tr>",
    );
    for c in &r.configs {
        let cfg = &c.config.spawner;
        let mut how = vec![cfg.mode.to_string()];
        if cfg.threads > 1 {
            how.push(format!("{} threads", cfg.threads));
        }
        if let Some(cpus) = &cfg.cpus {
            how.push(format!("pinned to CPU {cpus}"));
        }
        if let Some(failed) = c.failed_execs_per_spawn.filter(|&f| f > 0.0) {
            how.push(format!("{failed:.1} failed execs per spawn"));
        }
        let lost = if c.lost_spawns > 0 {
            format!(" ({} spawns lost)", c.lost_spawns)
        } else {
            String::new()
        };
        let _ = write!(
            html,
            "<tr><td><a href=\"{link}/report.html\">{name}</a></td><td>{how}</td>\
             <td class=\"n\">{rate:.0}</td><td class=\"n\">{p50}</td><td class=\"n\">{p99}</td>\
             <td>{top}{lost}</td></tr>",
            link = charts::escape(&c.recording),
            name = charts::escape(&c.config.name),
            how = charts::escape(&how.join(", ")),
            rate = c.spawner.spawns_per_sec,
            p50 = format_ns(c.spawner.latency_ns.p50),
            p99 = format_ns(c.spawner.latency_ns.p99),
            top = charts::escape(&c.top_stages(3)),
        );
    }
    html.push_str("</table>");
}

/// `full sweep, 61 configurations, started 2026-12-06 08:55:42 UTC, 3 min 14 s, spawnprof 0.1.0`
fn sweep_line(r: &BenchReport) -> String {
    let mut parts = vec![format!(
        "{} sweep, {} configuration{}",
        if r.quick { "quick" } else { "full" },
        r.configs.len(),
        if r.configs.len() == 1 { "" } else { "s" }
    )];
    if let Some(t) = r.start_unix_s {
        parts.push(format!("started {}", crate::report::html::utc(t)));
    }
    parts.push(format!("took {}", format_ns(r.duration_ns)));
    if let Some(v) = &r.spawnprof_version {
        parts.push(format!("spawnprof {v}"));
    }
    parts.join(", ")
}
