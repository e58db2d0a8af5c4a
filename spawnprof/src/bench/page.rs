//! `bench.html`: the node's story first — each finding with its number,
//! what the published measurements say, and the chart behind it — then
//! the other charts, then every configuration in a sortable table linked
//! to its own recording's report. Self-contained, like report.html.
use std::{fmt::Write as _, fs, path::Path};

use anyhow::{Context as _, Result};

use super::{
    charts::{Chart, charts},
    findings::{Finding, findings},
    results::{BenchReport, ConfigResult},
    text::interrupted_note,
};
use crate::{
    report::{
        charts::escape,
        sortable::{self, Column},
    },
    units::format_ns,
};

const CSS: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1180px; margin: 2em auto; color: #1d232a; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; }
p.node { color: #59636e; margin-top: 0; }
section.finding { border: 1px solid #e1e4e8; border-left: 5px solid #e8743b; border-radius: 8px; padding: 10px 16px; margin: 14px 0; }
section.finding h3 { margin: 0 0 4px; font-size: 15px; }
section.finding p.here { margin: 0; font-weight: 600; }
section.finding p.published { margin: 4px 0 0; color: #59636e; font-size: 13px; }
details.chart summary { cursor: pointer; color: #1b4f8a; font-size: 13px; margin-top: 6px; }
figure { margin: 8px 0; }
figcaption { color: #59636e; font-size: 12.5px; max-width: 760px; }
svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { padding: 3px 8px; text-align: left; border-bottom: 1px solid #eceef1; vertical-align: top; }
th { background: #f0f2f5; white-space: nowrap; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
"#;

/// Writes every chart as an SVG and `bench.html` around them.
pub fn write(dir: &Path, r: &BenchReport) -> Result<()> {
    let charts = charts(r);
    for c in &charts {
        let path = dir.join(c.file);
        fs::write(&path, &c.svg).with_context(|| format!("writing {}", path.display()))?;
    }
    let path = dir.join("bench.html");
    fs::write(&path, render(r, &charts)).with_context(|| format!("writing {}", path.display()))
}

/// The whole page.
pub fn render(r: &BenchReport, charts: &[Chart]) -> String {
    let n = &r.node;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"/><title>spawnprof bench: {host}</title><style>{CSS}{sort_css}</style></head><body>\
         <h1>spawnprof bench: {host}</h1><p class=\"node\">{facts}</p>",
        host = escape(n.name()),
        sort_css = sortable::CSS,
        facts = escape(&node_line(r)),
    );
    if let Some(note) = interrupted_note(r) {
        let _ = write!(html, "<p><strong>{}</strong></p>", escape(&note));
    }
    let found = findings(r);
    html.push_str("<h2 id=\"findings\">What this node showed</h2>");
    if found.is_empty() {
        html.push_str("<p>This bench ran no configuration a finding needs.</p>");
    }
    let mut drawn: Vec<&str> = Vec::new();
    for f in &found {
        finding(&mut html, f, charts, &mut drawn);
    }
    let shown: Vec<&str> = found.iter().filter_map(|f| f.chart).collect();
    let rest: Vec<&Chart> = charts.iter().filter(|c| !shown.contains(&c.file)).collect();
    if !rest.is_empty() {
        html.push_str("<h2 id=\"charts\">More charts</h2>");
        for c in rest {
            figure(&mut html, c);
        }
    }
    configurations_table(&mut html, r);
    html.push_str(sortable::SCRIPT);
    html.push_str("</body></html>\n");
    html
}

/// `kernel 6.18, glibc 2.36 (Rust std posix_spawn), THP madvise, 2 CPUs;
/// full sweep, 61 configurations, …`
fn node_line(r: &BenchReport) -> String {
    let n = &r.node;
    let mut parts = vec![
        format!("kernel {}", n.kernel_release),
        format!(
            "glibc {} (Rust std {})",
            n.glibc_version,
            n.std_spawn_path()
        ),
        format!("THP {}", n.thp_enabled.as_deref().unwrap_or("?")),
        format!("{} CPUs", n.cpus_online),
    ];
    if let Some(w) = n.cpu_wakeup_summary() {
        parts.push(w);
    }
    if let Some(ids) = &n.slurm {
        parts.push(ids.summary());
    }
    parts.push(sweep_line(r));
    parts.join("; ")
}

/// One finding, with its chart folded under it (or, when an earlier
/// finding showed that chart, a link to it).
fn finding(html: &mut String, f: &Finding, charts: &[Chart], drawn: &mut Vec<&'static str>) {
    let _ = write!(
        html,
        "<section class=\"finding\" id=\"{id}\"><h3>{title}</h3><p class=\"here\">{here}</p><p class=\"published\">Published: {published}</p>",
        id = f.id,
        title = escape(f.title),
        here = escape(&f.here),
        published = escape(&f.published),
    );
    let chart = f
        .chart
        .and_then(|file| charts.iter().find(|c| c.file == file));
    if let Some(c) = chart.filter(|c| drawn.contains(&c.file)) {
        let _ = write!(
            html,
            "<p class=\"published\"><a href=\"#{file}\">{} (above)</a></p>",
            escape(c.title),
            file = c.file
        );
    } else if let Some(c) = chart {
        drawn.push(c.file);
        let _ = write!(
            html,
            "<details class=\"chart\" open=\"open\"><summary>{}</summary>",
            escape(c.title)
        );
        figure(html, c);
        html.push_str("</details>");
    }
    html.push_str("</section>");
}

fn figure(html: &mut String, c: &Chart) {
    let _ = write!(
        html,
        "<figure id=\"{file}\">{svg}<figcaption>{caption} (<a href=\"{file}\">{file}</a>)</figcaption></figure>",
        file = escape(c.file),
        svg = c.svg,
        caption = escape(&c.caption),
    );
}

const COLUMNS: &[Column<'static>] = &[
    Column {
        name: "configuration",
        key: "configuration",
        num: false,
    },
    Column {
        name: "spawns/s",
        key: "rate",
        num: true,
    },
    Column {
        name: "p50",
        key: "p50",
        num: true,
    },
    Column {
        name: "p99",
        key: "p99",
        num: true,
    },
    Column {
        name: "mean",
        key: "mean",
        num: true,
    },
    Column {
        name: "where the spawn call goes",
        key: "stages",
        num: false,
    },
    Column {
        name: "notes",
        key: "notes",
        num: false,
    },
];

/// The figures the terminal prints, one row per configuration, each linked
/// to its own recording's report; sortable.
fn configurations_table(html: &mut String, r: &BenchReport) {
    if r.configs.is_empty() {
        return;
    }
    html.push_str(
        "<h2 id=\"configurations\">Every configuration</h2><p class=\"node\">The spawner's own figures for its spawn call, and the largest stages inside the clone syscall; click a column to sort, a name for its recording's report. Spawns are serial unless a note says otherwise.</p><table id=\"config-table\" class=\"sortable\">",
    );
    sortable::header(html, COLUMNS);
    html.push_str("<tbody>");
    for c in &r.configs {
        let l = &c.spawner.latency_ns;
        let _ = write!(
            html,
            "<tr><td><a href=\"{}/report.html\">{}</a></td>",
            escape(&c.recording),
            escape(&c.config.name)
        );
        let rate = c.spawner.spawns_per_sec;
        sortable::num(html, &format!("{rate:.0}"), Some(rate));
        for v in [l.p50, l.p99, l.mean as u64] {
            sortable::num(html, &format_ns(v), Some(v as f64));
        }
        let _ = write!(
            html,
            "<td>{}</td><td>{}</td></tr>",
            escape(&c.top_stages(3)),
            escape(&notes(c))
        );
    }
    html.push_str("</tbody></table>");
}

/// What sets a configuration apart from a plain serial spawn loop.
pub fn notes(c: &ConfigResult) -> String {
    let cfg = &c.config.spawner;
    let mut notes = Vec::new();
    if cfg.mode != crate::workload::Mode::Serial {
        notes.push(cfg.mode.to_string());
    }
    if cfg.threads > 1 {
        notes.push(format!("{} threads", cfg.threads));
    }
    if let Some(cpus) = &cfg.cpus {
        notes.push(format!("pinned to CPU {cpus}"));
    }
    if let Some(failed) = c.failed_execs_per_spawn.filter(|&f| f > 0.0) {
        notes.push(format!("{failed:.1} failed execs per spawn"));
    }
    if c.lost_spawns > 0 {
        notes.push(format!("{} spawns lost", c.lost_spawns));
    }
    notes.join(", ")
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
