//! Charts of a `spawnprof bench` run, like the seeds' figures: spawn time
//! against RSS per method, fork with and without huge pages, against
//! environment size, against PATH misses, the tokio modes, the fork chain
//! along its length, and what the spawn call is made of per method.
//! Every chart plots what the table shows: the spawner's median call, or
//! its mean where stages stack (the stages' means add up, medians do not),
//! split into the stages inside the clone syscall and the rest of the call.
use std::collections::BTreeMap;

use super::results::{BenchReport, ConfigResult};
use crate::{
    report::charts::{self, Axis, Unit},
    units::{format_bytes, format_ns},
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

/// A chart: its file, title, SVG and the sentence that says how to read it.
pub struct Chart {
    pub file: &'static str,
    pub title: &'static str,
    pub svg: String,
    pub caption: String,
}

fn chart(
    file: &'static str,
    title: &'static str,
    svg: String,
    caption: impl Into<String>,
) -> Chart {
    Chart {
        file,
        title,
        svg,
        caption: caption.into(),
    }
}

/// Every chart the bench's configurations allow.
pub fn charts(r: &BenchReport) -> Vec<Chart> {
    let each: [fn(&BenchReport) -> Option<Chart>; 7] = [
        rss_chart,
        thp_chart,
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

/// Spawn time vs RSS, one line per method: the median call, as the
/// table has it, with ticks at the sizes measured.
fn rss_chart(r: &BenchReport) -> Option<Chart> {
    let mut by_method: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for c in in_experiment(r, "method-rss") {
        by_method
            .entry(c.config.spawner.method.to_string())
            .or_default()
            .push((c.spawner.rss_requested as f64, p50_ns(c)));
    }
    if by_method.is_empty() {
        return None;
    }
    let sizes: Vec<f64> = by_method.values().flatten().map(|p| p.0).collect();
    let series: Vec<(String, Vec<(f64, f64)>)> = by_method.into_iter().collect();
    Some(chart(
        "bench-rss.svg",
        "Spawn time vs resident memory",
        charts::line_chart_with(
            "Spawn call (p50) vs resident memory, per method",
            &Axis::new("RSS of the spawning process", Unit::Bytes).at(sizes),
            &median_call(),
            &series,
        ),
        "The median spawn call at each resident size the bench measured: fork-style methods climb with the page tables they copy, vfork-style ones stay flat (log scale).",
    ))
}

/// A configuration's mean spawn call cut into the stages inside the clone
/// syscall (its breakdown) and the rest of the call outside it (user
/// space; for std's fork path, waiting for the child's exec).
fn call_parts(c: &ConfigResult) -> Vec<(String, f64)> {
    let mut parts: Vec<(String, f64)> = c
        .breakdown
        .iter()
        .map(|s| (s.stage.clone(), s.mean_ns as f64))
        .collect();
    let inside: f64 = parts.iter().map(|p| p.1).sum();
    let rest = mean_ns(c) - inside;
    if rest > 0.0 {
        parts.push((OUTSIDE_CLONE.into(), rest));
    }
    parts
}

/// The part of the spawner's call outside the clone syscall.
const OUTSIDE_CLONE: &str = "rest of the call, outside clone()";

/// Stacked bars of `picked` configurations' calls (see [`call_parts`]),
/// each stage in its family's colour; `shares` draws each bar as shares of
/// its call, topped by the call's mean.
fn call_bars(title: &str, picked: &[(String, &ConfigResult)], shares: bool) -> Option<String> {
    let parts: Vec<Vec<(String, f64)>> = picked.iter().map(|(_, c)| call_parts(c)).collect();
    let mut names: Vec<String> = Vec::new();
    for p in parts.iter().flatten() {
        if !names.contains(&p.0) {
            names.push(p.0.clone());
        }
    }
    if names.is_empty() {
        return None;
    }
    let colors: Vec<&str> = names
        .iter()
        .map(|n| {
            let stage = n.trim_end_matches(" (rest)");
            charts::stage_color(stage).unwrap_or("#bdbdbd")
        })
        .collect();
    let values: Vec<Vec<f64>> = parts
        .iter()
        .map(|p| {
            names
                .iter()
                .map(|n| p.iter().find(|x| &x.0 == n).map_or(0.0, |x| x.1))
                .collect()
        })
        .collect();
    let cats: Vec<&str> = picked.iter().map(|(l, _)| l.as_str()).collect();
    Some(if shares {
        charts::share_bars(title, &cats, &names, &colors, &values)
    } else {
        charts::stacked_bars_colored(
            title,
            &Axis::new("mean spawn call", Unit::Nanos),
            &cats,
            &names,
            &colors,
            &values,
        )
    })
}

/// Fork with and without huge pages, on its own: the stages of each call.
fn thp_chart(r: &BenchReport) -> Option<Chart> {
    let picked: Vec<(String, &ConfigResult)> = in_experiment(r, "thp")
        .map(|c| {
            let pages = match c.config.spawner.huge_pages.to_string().as_str() {
                "none" => "4 KiB pages".to_string(),
                other => format!("{} huge pages", other.to_uppercase()),
            };
            (pages, c)
        })
        .collect();
    let size = picked
        .first()
        .map(|(_, c)| format_bytes(c.spawner.rss_requested))?;
    Some(chart(
        "bench-thp.svg",
        "Fork with transparent huge pages",
        call_bars(
            &format!("fork-exec at {size}: 4 KiB pages against huge pages (mean call)"),
            &picked,
            false,
        )?,
        "The same fork at the same size, its memory in 4 KiB pages or in 2 MiB transparent huge pages: a huge page is one page-table entry to copy where 4 KiB pages need 512, so dup_mmap shrinks by about that much.",
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
    let counts: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .collect();
    Some(chart(
        "bench-env.svg",
        "Spawn time vs environment size",
        charts::line_chart_with(
            "Spawn call and exec_load (which copies the environment) vs extra variables",
            &Axis::new("extra variables", Unit::Plain).at(counts),
            &median_call(),
            &series,
        ),
        "The median spawn call and its exec_load stage, where the kernel copies the environment into the new program, as variables are added (serial spawns pinned to one CPU).",
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
    Some(chart(
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
        "The median spawn call and its path_search stage (the failed execve calls themselves) against the failed attempts each spawn made.",
    ))
}

/// The tokio modes: each mean call cut into its stages, and a caption
/// that names what dominates the slowest.
fn tokio_chart(r: &BenchReport) -> Option<Chart> {
    let tokio: Vec<&ConfigResult> = in_experiment(r, "tokio").collect();
    let picked: Vec<(String, &ConfigResult)> = tokio
        .iter()
        .map(|c| {
            (
                c.config.spawner.method.to_string().replace("tokio-", ""),
                *c,
            )
        })
        .collect();
    let svg = call_bars(
        "The tokio modes, batched: what the spawn call is made of (mean)",
        &picked,
        false,
    )?;
    Some(chart(
        "bench-tokio.svg",
        "tokio modes",
        svg,
        tokio_caption(r, &tokio),
    ))
}

/// Why the slowest tokio mode is slow, from its own stages.
fn tokio_caption(r: &BenchReport, tokio: &[&ConfigResult]) -> String {
    let base = "Every spawn of a batch is submitted at once, like the seeds' async harness, so each call also waits for a CPU";
    let Some(slow) = tokio
        .iter()
        .max_by(|a, b| mean_ns(a).total_cmp(&mean_ns(b)))
    else {
        return format!("{base}.");
    };
    let parts = call_parts(slow);
    let call: f64 = parts.iter().map(|p| p.1).sum();
    let top = parts
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|_| call > 0.0)
        .map(|(stage, v)| format!("{stage} is {:.0}% of it", 100.0 * v / call));
    let why = match (slow.config.spawner.method.to_string().as_str(), top) {
        ("tokio-single-blocking", Some(top)) => format!(
            "; tokio-single-blocking is slowest ({} mean): it runs each spawn on its own thread of tokio's blocking pool, many more threads than the {} CPUs, so each thread spends its call waiting its turn for a CPU, mostly in user space around the clone syscall rather than in it: {top}",
            format_ns(mean_ns(slow) as u64),
            r.node.cpus_online
        ),
        (name, Some(top)) => format!(
            "; {name} is slowest ({} mean): {top}",
            format_ns(mean_ns(slow) as u64)
        ),
        _ => String::new(),
    };
    format!("{base}{why}.")
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
    Some(chart(
        "bench-fork-chain.svg",
        "Fork chain",
        charts::line_chart_with(
            "Fork time along a chain of forks whose parents exit (anon_vma case)",
            &Axis::new("tenth of the chain", Unit::Plain),
            &Axis::new("mean fork call", Unit::Nanos),
            &[("fork-chain", points)],
        ),
        "Each child forks the next and its parent exits: on kernels without the anon_vma bound (before 3.19) the fork slowed down along the chain.",
    ))
}

/// Which stages make up the spawn call, every method at the largest RSS
/// of the sweep, as shares of each call: fork is a thousand times the
/// others there, which on one scale would leave them invisible.
fn stages_chart(r: &BenchReport) -> Option<Chart> {
    let max_rss = in_experiment(r, "method-rss")
        .map(|c| c.spawner.rss_requested)
        .max()?;
    let picked: Vec<(String, &ConfigResult)> = in_experiment(r, "method-rss")
        .filter(|c| c.spawner.rss_requested == max_rss)
        .map(|c| (short_label(c), c))
        .collect();
    Some(chart(
        "bench-stages.svg",
        "Where the spawn call goes",
        call_bars(
            &format!(
                "What the spawn call is made of at {}, per method (share of the mean call)",
                format_bytes(max_rss)
            ),
            &picked,
            true,
        )?,
        "Each bar is one method's mean spawn call (its total on top), cut into the stages inside the clone syscall and the rest of the call outside it; std-fork's rest is its wait for the child's exec.",
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
