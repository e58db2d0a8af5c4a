//! Which nodes stand out: a figure at least `threshold` times the fleet
//! median (or as far below it), or missing where most nodes have it, each
//! named with the node's unusual facts that can move that figure.
use std::collections::BTreeMap;

use super::{
    facts::{Norms, median},
    file::{Flag, NodeRow},
    metrics::{METRICS, Metric, format},
};

/// Each metric's median over the nodes that measured it; only where at
/// least half the nodes (and two) did, so a lone figure is no norm.
pub fn medians(nodes: &[NodeRow]) -> BTreeMap<String, f64> {
    METRICS
        .iter()
        .filter_map(|m| {
            let values: Vec<f64> = nodes
                .iter()
                .filter_map(|n| n.figures.get(m.id).copied())
                .collect();
            let enough = values.len() >= 2 && 2 * values.len() >= nodes.len();
            let med = median(values).filter(|_| enough)?;
            Some((m.id.to_string(), med))
        })
        .collect()
}

/// Every flag of the fleet, the farthest from the median first, the
/// missing figures after them.
pub fn flags(nodes: &[NodeRow], medians: &BTreeMap<String, f64>, threshold: f64) -> Vec<Flag> {
    let facts: Vec<_> = nodes.iter().map(|n| &n.facts).collect();
    let norms = Norms::of(&facts);
    let mut out: Vec<Flag> = nodes
        .iter()
        .flat_map(|n| {
            let unusual = norms.unusual(&n.facts);
            METRICS
                .iter()
                .filter_map(|m| {
                    let med = *medians.get(m.id)?;
                    flag(n, m, med, &unusual, threshold)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let distance = |f: &Flag| f.ratio.map_or(f64::INFINITY, |r| r.ln().abs());
    out.sort_by(|a, b| {
        let (da, db) = (distance(a), distance(b));
        (da.is_infinite())
            .cmp(&db.is_infinite())
            .then(db.total_cmp(&da))
    });
    out
}

fn flag(
    n: &NodeRow,
    m: &Metric,
    median: f64,
    unusual: &[(super::metrics::Fact, String)],
    threshold: f64,
) -> Option<Flag> {
    let value = n.figures.get(m.id).copied();
    let ratio = value.map(|v| v.max(m.floor) / median.max(m.floor));
    let stands_out = match ratio {
        Some(r) => r >= threshold || r <= 1.0 / threshold,
        None => !n.incomplete,
    };
    if !stands_out {
        return None;
    }
    // The metric lists its facts most likely first; keep that order.
    let reasons: Vec<String> = m
        .explained_by
        .iter()
        .flat_map(|fact| unusual.iter().filter(move |(f, _)| f == fact))
        .map(|(_, words)| words.clone())
        .collect();
    let what = match (value, ratio) {
        (Some(v), Some(r)) => format!(
            "{} {r:.1}× the fleet median ({} against {})",
            m.name,
            format(m, v),
            format(m, median)
        ),
        _ => format!("no {} (the fleet median is {})", m.name, format(m, median)),
    };
    let mut text = format!("{}: {what}", n.name);
    for r in &reasons {
        text.push_str("; ");
        text.push_str(r);
    }
    Some(Flag {
        node: n.name.clone(),
        metric: m.id.to_string(),
        value,
        median,
        ratio,
        reasons,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::node::NodeFacts;

    fn row(name: &str, thp: &str, fork_ns_per_mib: f64, wake: Option<f64>) -> NodeRow {
        let mut facts = NodeFacts::collect();
        facts.thp_enabled = Some(thp.into());
        facts.usable_cpus = Some(facts.cpus_online);
        facts.steal_share = None;
        let mut figures = BTreeMap::from([("fork_ns_per_mib".to_string(), fork_ns_per_mib)]);
        if let Some(w) = wake {
            figures.insert("other_cpu_wait_ns".into(), w);
        }
        NodeRow {
            name: name.into(),
            dir: name.into(),
            facts,
            figures,
            quick: true,
            incomplete: false,
        }
    }

    #[test]
    fn the_outlier_is_flagged_with_the_fact_that_explains_it() {
        let mut nodes: Vec<NodeRow> = (0..9)
            .map(|i| {
                row(
                    &format!("node{i:03}"),
                    "always",
                    10_000.0 + i as f64,
                    Some(50_000.0),
                )
            })
            .collect();
        nodes.push(row("node017", "never", 31_000.0, Some(52_000.0)));
        nodes.push(row("node018", "always", 10_000.0, None));
        let med = medians(&nodes);
        assert_eq!(med["fork_ns_per_mib"], 10_004.0);
        let f = flags(&nodes, &med, 1.5);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!(f[0].node, "node017");
        assert!(
            f[0].text
                .starts_with("node017: fork per MiB of RSS 3.1× the fleet median"),
            "{}",
            f[0].text
        );
        assert!(f[0].text.ends_with("; THP never"), "{}", f[0].text);
        assert_eq!(f[1].node, "node018");
        assert!(
            f[1].text.contains("no wake-up on another CPU"),
            "{}",
            f[1].text
        );
        assert_eq!(f[1].ratio, None);
    }

    #[test]
    fn noise_below_the_floor_is_not_an_outlier() {
        let mut a = row("a", "always", 10.0, None);
        let b = row("b", "always", 150.0, None);
        let c = row("c", "always", 100.0, None);
        a.figures.insert("probe_overhead".into(), 0.01);
        let nodes = vec![a, b, c];
        let med = medians(&nodes);
        assert!(flags(&nodes, &med, 1.5).is_empty());
        assert!(!med.contains_key("probe_overhead"), "one node is no norm");
    }
}
