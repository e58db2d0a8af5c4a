//! The stage breakdown both the terminal and report.html print: the
//! spawn-time tree, whose rows add up (children to their parent, the
//! top level to the whole spawn time), then the intervals that overlap it
//! (the parent's side of the spawn, and what comes after it).
use std::collections::BTreeMap;

use super::{Unmeasured, why_no_data};
use crate::{
    analysis::{SpawnTime, StageStats},
    model::{SPAWN_TIME, stage},
};

/// One row of the breakdown.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// A stage name, or a part of one: `(rest of exec)`, `(not split by a
    /// probe)`.
    pub label: String,
    pub depth: usize,
    /// The stage's own statistics over the spawns that measured it.
    pub stats: Option<StageStats>,
    /// Its place in the spawn-time tree: summed ns and share of the whole.
    pub time: Option<(u64, f64)>,
    /// Why there is no data, when there is none.
    pub note: String,
    /// What the row measures, for hover text.
    pub what: String,
}

/// The two parts of the breakdown, and the sentence on vfork.
#[derive(Clone, Debug, Default)]
pub struct Breakdown {
    /// The spawn time, each nanosecond once (empty for a recording made
    /// before spawnprof kept the tree).
    pub tree: Vec<Row>,
    /// Intervals overlapping the tree: the parent's call, and after the spawn.
    pub overlapping: Vec<Row>,
    /// Says what a vfork parent waits for, when there were vfork spawns.
    pub vfork_note: Option<String>,
}

/// The stages outside the tree, with their depth: the parent's call and
/// what it is made of, then the latency to exec and the time after it.
const OVERLAPPING: &[(&str, usize)] = &[
    ("clone", 0),
    ("parent_return", 1),
    ("vfork_resume", 2),
    ("spawn_to_exec", 0),
    ("run", 0),
    ("reap_delay", 0),
];

impl Breakdown {
    /// No stage had data: the table would be rows of "not seen".
    pub fn is_empty(&self) -> bool {
        self.tree
            .iter()
            .chain(&self.overlapping)
            .all(|r| r.stats.as_ref().is_none_or(|s| s.count == 0))
    }
}

/// The breakdown of a recording.
pub fn of_summary(s: &crate::recording::Summary) -> Breakdown {
    let vfork = s.counts.by_method.contains_key("vfork");
    breakdown(
        &s.stages,
        s.spawn_time.as_ref(),
        &super::unavailable_stages(s),
        vfork,
    )
}

/// The breakdown of a recording's statistics (`vfork`: it has vfork
/// spawns, whose parents wait for their child's exec).
pub fn breakdown(
    stages: &BTreeMap<String, StageStats>,
    spawn_time: Option<&SpawnTime>,
    unavailable: &[Unmeasured],
    vfork: bool,
) -> Breakdown {
    let measured = |name: &str| stages.get(name).filter(|s| s.count > 0).cloned();
    let row = |name: &str, depth: usize, time: Option<(u64, f64)>| {
        let stats = measured(name);
        // A stage never measured has no place in the tree to show.
        let time = time.filter(|_| stats.is_some());
        Row {
            label: name.to_string(),
            depth,
            note: match stats {
                Some(_) => String::new(),
                None => why_no_data(unavailable, name).to_string(),
            },
            stats,
            time,
            what: stage(name).map_or_else(
                || "summed inside the kernel over the clone".to_string(),
                |s| s.what.to_string(),
            ),
        }
    };
    let tree = spawn_time.map(|t| tree_rows(t, &row)).unwrap_or_default();
    let overlapping = OVERLAPPING
        .iter()
        .map(|&(name, depth)| row(name, depth, None))
        .collect();
    Breakdown {
        tree,
        overlapping,
        vfork_note: vfork.then(|| vfork_note(measured("vfork_resume").as_ref())),
    }
}

/// A stage's row from its name, depth and place in the tree.
type MakeRow<'a> = dyn Fn(&str, usize, Option<(u64, f64)>) -> Row + 'a;
/// ns → (ns, share of the whole spawn time).
type Share<'a> = dyn Fn(u64) -> Option<(u64, f64)> + 'a;

/// The tree: the whole spawn time, each node under its parent, a `(rest of
/// NODE)` row where a node has measured children and time of its own, and
/// what no stage accounts for.
fn tree_rows(t: &SpawnTime, row: &MakeRow<'_>) -> Vec<Row> {
    let total = t.total.total_ns.max(1);
    let share = |ns: u64| Some((ns, ns as f64 / total as f64));
    let mut rows = vec![Row {
        label: "spawn time".into(),
        depth: 0,
        stats: Some(t.total.clone()),
        time: share(t.total.total_ns),
        note: String::new(),
        what: "clone entry in the parent to the child's successful exec return, or to its first run when it never execs: every stage below, each nanosecond once".into(),
    }];
    for n in SPAWN_TIME.iter().filter(|n| n.parent.is_none()) {
        subtree(n.name, 1, t, &share, row, &mut rows);
    }
    if t.unsplit() > 0 {
        rows.push(Row {
            label: "(not split by a probe)".into(),
            depth: 1,
            stats: None,
            time: share(t.unsplit()),
            note: String::new(),
            what: "spawn time between stages, or in a stage whose probe is missing".into(),
        });
    }
    rows
}

/// A node's row, its children's subtrees, then its own time when it has
/// measured children, so the rows under it add up to it.
fn subtree(
    name: &str,
    depth: usize,
    t: &SpawnTime,
    share: &Share<'_>,
    row: &MakeRow<'_>,
    rows: &mut Vec<Row>,
) {
    rows.push(row(name, depth, share(t.node(name))));
    let children: Vec<&str> = SPAWN_TIME
        .iter()
        .filter(|n| n.parent == Some(name))
        .map(|n| n.name)
        .collect();
    for child in &children {
        subtree(child, depth + 1, t, share, row, rows);
    }
    let measured: u64 = children.iter().map(|c| t.node(c)).sum();
    if measured > 0 && t.own(name) > 0 {
        rows.push(Row {
            label: format!("(rest of {name})"),
            depth: depth + 1,
            stats: None,
            time: share(t.own(name)),
            note: String::new(),
            what: format!("{name} less the stages listed inside it"),
        });
    }
}

/// What a vfork parent waits for, with its own wake-up's mean when known.
fn vfork_note(resume: Option<&StageStats>) -> String {
    let wake_up = match resume {
        Some(r) => format!(
            "; vfork_resume (mean {}) is the parent's own wake-up after that",
            crate::units::format_ns(r.mean_ns)
        ),
        None => String::new(),
    };
    format!(
        "vfork: the parent is suspended from its child's wake-up until the child's exec reaches \
         its point of no return, so its clone (and parent_return) includes the child's \
         sched_delay, pre_exec, path_search and exec_load, counted once above as the child's\
         {wake_up}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{analysis::Accumulator, recording::synthetic::synthesize};

    #[test]
    fn the_tree_adds_up_and_the_parents_side_stands_apart() {
        let mut acc = Accumulator::default();
        synthesize(3_000, 5).for_each(|r| acc.add(&r));
        let stages = acc.stage_stats();
        let t = acc
            .spawn_time()
            .expect("synthetic spawns have a spawn time");
        let b = breakdown(&stages, Some(&t), &[], true);
        assert_eq!(b.tree[0].label, "spawn time");
        assert_eq!(b.tree[0].time.unwrap().1, 1.0);
        // Every row's children (the rows one level deeper until the next
        // row at its level) add up to it.
        for (i, r) in b.tree.iter().enumerate() {
            let Some((ns, _)) = r.time else { continue };
            let children: Vec<&Row> = b.tree[i + 1..]
                .iter()
                .take_while(|c| c.depth > r.depth)
                .filter(|c| c.depth == r.depth + 1)
                .collect();
            if children.is_empty() {
                continue;
            }
            let sum: u64 = children.iter().map(|c| c.time.map_or(0, |t| t.0)).sum();
            assert_eq!(sum, ns, "children of {}", r.label);
        }
        assert!(b.tree.iter().all(|r| r.label != "clone"));
        assert_eq!(b.overlapping[0].label, "clone");
        assert!(b.vfork_note.as_ref().unwrap().contains("suspended"));
        assert!(!b.is_empty());
        assert!(breakdown(&BTreeMap::new(), None, &[], false).is_empty());
    }
}
