//! `spawnprof compare`: the benches of many nodes (a fleet) in one
//! report. Each node's `bench.json` becomes a row of figures (fork per MiB,
//! posix_spawn p50, the THP factor, the cost per variable and per PATH
//! miss, the wake-up on another CPU, the probes' cost); the figures far
//! from the fleet median are flagged with the node's facts that explain
//! them, and the flagged nodes are diffed against a median node with the
//! bench `diff`.
//!
//! ```text
//! DIRs ─read: discover, bench.json → NodeRow (+ per-config samples)─▶ outliers: medians, flags
//!        ─▶ reference: median node ─ bench::diff::render ─▶ diffs/NODE.txt
//!        ─▶ file: fleet.json ─▶ page: fleet.html, fleet-*.svg
//! ```
mod facts;
pub mod file;
pub mod metrics;
mod outliers;
pub mod page;
mod read;
mod reference;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

pub use file::{FLEET_HTML, FLEET_JSON, Flag, FleetReport, NodeRow, load};

use crate::bench::{diff as bench_diff, load_report};

/// What `spawnprof compare` was asked for.
pub struct CompareOptions {
    /// Bench directories, or directories holding them.
    pub dirs: Vec<PathBuf>,
    pub out_dir: PathBuf,
    /// A figure this many times the median (or 1/threshold of it) is flagged.
    pub threshold: f64,
    /// Nodes to diff against the median besides the flagged ones.
    pub diff_nodes: Vec<String>,
}

/// At most this many flagged nodes get a diff of their own (the farthest
/// first); more can be asked for by name.
const MAX_AUTO_DIFFS: usize = 20;

/// Reads the fleet, flags its outliers, writes fleet.json, fleet.html,
/// the charts and the diffs, and returns what it wrote.
pub fn run(opts: &CompareOptions) -> Result<FleetReport> {
    let dirs = read::discover(&opts.dirs)?;
    let read = read::read_all(&dirs);
    if read.nodes.is_empty() {
        let why: Vec<String> = read.skipped.iter().map(|s| s.reason.clone()).collect();
        bail!("no bench could be read: {}", why.join("; "));
    }
    if let Some(unknown) = opts
        .diff_nodes
        .iter()
        .find(|d| !read.nodes.iter().any(|n| &n.name == *d))
    {
        bail!("--diff {unknown}: no node of that name in the fleet");
    }
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let medians = outliers::medians(&read.nodes);
    let flags = outliers::flags(&read.nodes, &medians, opts.threshold);
    let mut report = FleetReport {
        schema_version: file::FLEET_SCHEMA_VERSION,
        threshold: opts.threshold,
        nodes: read.nodes,
        medians,
        flags,
        skipped: read.skipped,
        diffs: BTreeMap::new(),
    };
    if let Some(median) = read.samples.median_node() {
        report.diffs = write_diffs(&report, &median, &opts.out_dir, &opts.diff_nodes)?;
    }
    file::write(&opts.out_dir, &report)?;
    page::write(&opts.out_dir, &report)?;
    Ok(report)
}

/// The nodes to diff: those asked for, then the flagged, farthest first.
fn nodes_to_diff<'a>(r: &'a FleetReport, asked: &'a [String]) -> Vec<&'a str> {
    let mut names: Vec<&str> = asked.iter().map(String::as_str).collect();
    let mut auto = 0;
    for f in &r.flags {
        if auto < MAX_AUTO_DIFFS && !names.contains(&f.node.as_str()) {
            names.push(&f.node);
            auto += 1;
        }
    }
    names
}

/// Each node's bench against the median node, as `diff` prints two
/// benches, in `diffs/NODE.txt`.
fn write_diffs(
    r: &FleetReport,
    median: &crate::bench::BenchReport,
    out: &Path,
    asked: &[String],
) -> Result<BTreeMap<String, String>> {
    let mut written = BTreeMap::new();
    let names = nodes_to_diff(r, asked);
    if names.is_empty() {
        return Ok(written);
    }
    let dir = out.join("diffs");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for name in names {
        let Some(node) = r.nodes.iter().find(|n| n.name == name) else {
            continue;
        };
        let bench = load_report(&node.dir)?;
        let text = bench_diff::render(median, &bench, Path::new("fleet median"), &node.dir);
        let file = format!("diffs/{}.txt", file_name(name));
        let path = out.join(&file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.insert(name.to_string(), file);
    }
    Ok(written)
}

/// A node name as a file name: anything but letters, digits, `-`, `_`
/// and `.` becomes `_`.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The terminal's summary: how many nodes, the flags (at most `max`).
pub fn render(r: &FleetReport, max: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let flagged: std::collections::BTreeSet<&str> =
        r.flags.iter().map(|f| f.node.as_str()).collect();
    let _ = writeln!(
        out,
        "{} nodes compared, {} flagged ({} flags)",
        r.nodes.len(),
        flagged.len(),
        r.flags.len()
    );
    for f in r.flags.iter().take(max) {
        let _ = writeln!(out, "  {}", f.text);
    }
    if r.flags.len() > max {
        let _ = writeln!(out, "  … {} more in fleet.html", r.flags.len() - max);
    }
    for s in &r.skipped {
        let _ = writeln!(out, "left out {}: {}", s.dir.display(), s.reason);
    }
    out
}
