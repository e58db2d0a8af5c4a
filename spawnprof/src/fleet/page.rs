//! `fleet.html`: the flags first ("node017: fork per MiB of RSS 3.1× the
//! fleet median …; THP never"), then a chart per figure with the nodes
//! sorted by it, then one sortable row per node with its figures and the
//! facts that tell nodes apart. Rendered from `fleet.json` alone.
use std::{fmt::Write as _, fs, path::Path};

use anyhow::{Context as _, Result};

use super::{
    file::{FLEET_HTML, FleetReport, NodeRow},
    metrics::{METRICS, Metric, format},
};
use crate::report::{
    charts::{Axis, Unit, escape, line_chart_with},
    sortable::{self, Column},
};

const CSS: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1280px; margin: 2em auto; color: #1d232a; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; }
p.sub { color: #59636e; margin-top: 0; }
ul.flags li { margin: 3px 0; }
figure { margin: 8px 0; display: inline-block; width: 49%; vertical-align: top; }
svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 12.5px; width: 100%; }
th, td { padding: 3px 6px; text-align: left; border-bottom: 1px solid #eceef1; vertical-align: top; }
th { background: #f0f2f5; white-space: nowrap; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.flagged td:first-child { border-left: 4px solid #e15759; }
div.wide { overflow-x: auto; }
"#;

/// A chart's file name for a metric.
pub fn chart_file(m: &Metric) -> String {
    format!("fleet-{}.svg", m.id.replace('_', "-"))
}

/// The nodes' values of `m`, sorted, against their rank; with the median.
fn chart(r: &FleetReport, m: &Metric) -> Option<String> {
    let mut values: Vec<f64> = r
        .nodes
        .iter()
        .filter_map(|n| n.figures.get(m.id).copied())
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let points: Vec<(f64, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| ((i + 1) as f64, *v))
        .collect();
    let mut series = vec![("nodes, sorted".to_string(), points)];
    if let Some(med) = r.medians.get(m.id) {
        let last = values.len().max(2) as f64;
        series.push(("fleet median".into(), vec![(1.0, *med), (last, *med)]));
    }
    let unit = match m.unit {
        Unit::Nanos => Unit::Nanos,
        _ => Unit::Plain,
    };
    let mut x_axis = Axis::new("node (sorted by this figure)", Unit::Plain);
    if values.len() <= 12 {
        // A rank is a whole number: no tick at node 1.5.
        x_axis = x_axis.at((1..=values.len()).map(|i| i as f64).collect());
    }
    Some(line_chart_with(
        &format!("{} across {} nodes", m.name, values.len()),
        &x_axis,
        &Axis::new(m.name, unit),
        &series,
    ))
}

/// Writes a chart per figure and `fleet.html`.
pub fn write(dir: &Path, r: &FleetReport) -> Result<()> {
    let mut charts = Vec::new();
    for m in &METRICS {
        if let Some(svg) = chart(r, m) {
            let file = chart_file(m);
            let path = dir.join(&file);
            fs::write(&path, &svg).with_context(|| format!("writing {}", path.display()))?;
            charts.push((file, svg));
        }
    }
    let path = dir.join(FLEET_HTML);
    fs::write(&path, render(r, &charts)).with_context(|| format!("writing {}", path.display()))
}

/// The whole page.
pub fn render(r: &FleetReport, charts: &[(String, String)]) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"/><title>spawnprof fleet: {n} nodes</title><style>{CSS}{sort_css}</style></head><body>\
         <h1>spawnprof fleet: {n} nodes</h1><p class=\"sub\">{flagged} flagged: a figure {t:.1}× the fleet median or more (or as far below), or missing where most nodes have it; each named with the node's facts, unlike the fleet's, that can move it.</p>",
        n = r.nodes.len(),
        sort_css = sortable::CSS,
        flagged = flagged_nodes(r),
        t = r.threshold,
    );
    flags(&mut html, r);
    html.push_str("<h2 id=\"charts\">Each figure across the fleet</h2>");
    for (file, svg) in charts {
        let _ = write!(
            html,
            "<figure id=\"{f}\">{svg}<figcaption><a href=\"{f}\">{f}</a></figcaption></figure>",
            f = escape(file)
        );
    }
    table(&mut html, r);
    if !r.skipped.is_empty() {
        html.push_str("<h2 id=\"skipped\">Left out</h2><ul>");
        for s in &r.skipped {
            let _ = write!(
                html,
                "<li>{}: {}</li>",
                escape(&s.dir.display().to_string()),
                escape(&s.reason)
            );
        }
        html.push_str("</ul>");
    }
    html.push_str(sortable::SCRIPT);
    html.push_str("</body></html>\n");
    html
}

fn flagged_nodes(r: &FleetReport) -> usize {
    let mut names: Vec<&str> = r.flags.iter().map(|f| f.node.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names.len()
}

/// The flags, each linked to its node's diff against the median.
fn flags(html: &mut String, r: &FleetReport) {
    html.push_str("<h2 id=\"flags\">Outliers</h2>");
    if r.flags.is_empty() {
        html.push_str("<p>No node stands out.</p>");
        return;
    }
    html.push_str("<ul class=\"flags\">");
    for f in &r.flags {
        let diff = r.diffs.get(&f.node).map_or(String::new(), |file| {
            format!(
                " (<a href=\"{}\">diff against the median</a>)",
                escape(file)
            )
        });
        let _ = write!(html, "<li>{}{diff}</li>", escape(&f.text));
    }
    html.push_str("</ul>");
}

/// The facts that tell nodes apart, as the table shows them.
fn fact_cells(n: &NodeRow) -> [String; 6] {
    let f = &n.facts;
    [
        f.thp_enabled.clone().unwrap_or_else(|| "?".into()),
        f.glibc_version.clone(),
        f.kernel_release.clone(),
        format!("{} vars", f.env_count),
        format!(
            "{} entries, {} missing",
            f.path_entries,
            f.path_missing.unwrap_or(0)
        ),
        match f.usable_cpus {
            Some(u) if u < f.cpus_online => format!("{u} of {}", f.cpus_online),
            _ => f.cpus_online.to_string(),
        },
    ]
}

const FACT_COLUMNS: [&str; 6] = ["THP", "glibc", "kernel", "environment", "PATH", "CPUs"];

fn table(html: &mut String, r: &FleetReport) {
    html.push_str(
        "<h2 id=\"nodes\">Nodes</h2><div class=\"wide\"><table id=\"node-table\" class=\"sortable\">",
    );
    let mut columns = vec![Column {
        name: "node",
        key: "node",
        num: false,
    }];
    columns.extend(METRICS.iter().map(|m| Column {
        name: m.name,
        key: m.id,
        num: true,
    }));
    columns.extend(FACT_COLUMNS.iter().map(|c| Column {
        name: c,
        key: c,
        num: false,
    }));
    columns.push(Column {
        name: "Slurm",
        key: "slurm",
        num: false,
    });
    sortable::header(html, &columns);
    html.push_str("<tbody>");
    for n in &r.nodes {
        let flagged = r.flags.iter().any(|f| f.node == n.name);
        let _ = write!(
            html,
            "<tr{}><td>{}</td>",
            if flagged { " class=\"flagged\"" } else { "" },
            escape(&n.name)
        );
        for m in &METRICS {
            let v = n.figures.get(m.id).copied();
            sortable::num(html, &v.map_or("-".into(), |v| format(m, v)), v);
        }
        for cell in fact_cells(n) {
            let _ = write!(html, "<td>{}</td>", escape(&cell));
        }
        let slurm = n
            .facts
            .slurm
            .as_ref()
            .map_or(String::new(), |s| s.summary());
        let _ = write!(html, "<td>{}</td></tr>", escape(&slurm));
    }
    html.push_str("</tbody></table></div>");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        fleet::file::{FLEET_SCHEMA_VERSION, Flag},
        sys::node::NodeFacts,
    };

    fn node(name: &str, fork: f64) -> NodeRow {
        NodeRow {
            name: name.into(),
            dir: name.into(),
            facts: NodeFacts::collect(),
            figures: BTreeMap::from([("fork_ns_per_mib".to_string(), fork)]),
            quick: true,
            incomplete: false,
        }
    }

    #[test]
    fn the_page_is_well_formed_and_leads_with_the_flags() {
        let r = FleetReport {
            schema_version: FLEET_SCHEMA_VERSION,
            threshold: 1.5,
            nodes: vec![
                node("a<1>", 8_000.0),
                node("b", 8_100.0),
                node("c", 30_000.0),
            ],
            medians: BTreeMap::from([("fork_ns_per_mib".to_string(), 8_100.0)]),
            flags: vec![Flag {
                node: "c".into(),
                metric: "fork_ns_per_mib".into(),
                value: Some(30_000.0),
                median: 8_100.0,
                ratio: Some(3.7),
                reasons: vec!["THP never".into()],
                text: "c: fork per MiB of RSS 3.7× the fleet median; THP never".into(),
            }],
            skipped: Vec::new(),
            diffs: BTreeMap::from([("c".to_string(), "diffs/c.txt".to_string())]),
        };
        let m = METRICS.iter().find(|m| m.id == "fork_ns_per_mib").unwrap();
        let charts = vec![(chart_file(m), chart(&r, m).unwrap())];
        let html = render(&r, &charts);
        roxmltree::Document::parse(html.trim_start_matches("<!DOCTYPE html>"))
            .expect("well-formed");
        let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("no {needle}"));
        assert!(at("3.7× the fleet median; THP never") < at("id=\"charts\""));
        assert!(at("href=\"diffs/c.txt\"") < at("id=\"node-table\""));
        assert!(html.contains("a&lt;1&gt;"));
        assert_eq!(html.matches("<tr class=\"flagged\">").count(), 1);
        assert!(html.contains("fleet-fork-ns-per-mib.svg"));
        assert!(chart(&r, &METRICS[1]).is_none(), "no chart without figures");
        assert!(!charts[0].1.contains(">1.5<"), "whole ranks only");
        let per_miss = METRICS.iter().find(|m| m.id == "ns_per_path_miss").unwrap();
        assert_eq!(format(per_miss, -8045.5), "-8.05 µs");
    }
}
