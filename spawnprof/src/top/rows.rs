//! The rows of `top`, one per comm (per comm and cgroup with
//! `--cgroup-label`), from two snapshots: spawns per second and p50/p99 of
//! the main stages over the interval between them.
use std::cmp::Ordering;

use spawnprof_common::metrics::stage;

use crate::metrics::{
    Snapshot,
    quantile::{delta, quantile_ns},
    snapshot::Label,
};

/// The stages shown, with their column titles.
pub const STAGES: [(u16, &str); 4] = [
    (stage::CLONE, "clone"),
    (stage::DUP_MMAP, "dup_mmap"),
    (stage::EXEC, "exec"),
    (stage::SCHED_DELAY, "first run"),
];

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The comm, and the spawning parents' cgroup with `--cgroup-label`.
    pub label: Label,
    pub per_second: f64,
    pub total: u64,
    /// (p50, p99) in ns per [`STAGES`] entry, over the interval.
    pub stages: [(Option<f64>, Option<f64>); STAGES.len()],
}

/// The columns one can sort by, in the order `s` steps through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Rate,
    Total,
    Comm,
    /// p99 of the [`STAGES`] entry.
    P99(usize),
}

impl SortBy {
    pub fn next(self) -> Self {
        match self {
            SortBy::Rate => SortBy::Total,
            SortBy::Total => SortBy::P99(0),
            SortBy::P99(i) if i + 1 < STAGES.len() => SortBy::P99(i + 1),
            SortBy::P99(_) => SortBy::Comm,
            SortBy::Comm => SortBy::Rate,
        }
    }

    pub fn name(self) -> String {
        match self {
            SortBy::Rate => "spawns/s".into(),
            SortBy::Total => "total".into(),
            SortBy::Comm => "comm".into(),
            SortBy::P99(i) => format!("{} p99", STAGES[i].1),
        }
    }
}

/// One row per label seen so far; rates and quantiles over `seconds`.
pub fn rows(now: &Snapshot, before: &Snapshot, seconds: f64) -> Vec<Row> {
    let earlier = before.spawns_by_label();
    now.spawns_by_label()
        .into_iter()
        .map(|(label, total)| {
            let new = total.saturating_sub(earlier.get(label).copied().unwrap_or(0));
            let stages = STAGES.map(|(st, _)| {
                let Some(h) = now.stage_of_label(label, st as usize) else {
                    return (None, None);
                };
                let d = delta(&h, before.stage_of_label(label, st as usize).as_ref());
                (quantile_ns(&d, 0.5), quantile_ns(&d, 0.99))
            });
            Row {
                label: label.clone(),
                per_second: new as f64 / seconds.max(1e-3),
                total,
                stages,
            }
        })
        .collect()
}

/// Sorts rows, largest first (names A to Z); `reverse` flips it.
pub fn sort(rows: &mut [Row], by: SortBy, reverse: bool) {
    let key = |r: &Row| match by {
        SortBy::Rate => r.per_second,
        SortBy::Total => r.total as f64,
        SortBy::P99(i) => r.stages[i].1.unwrap_or(-1.0),
        SortBy::Comm => 0.0,
    };
    rows.sort_by(|a, b| {
        // Labels order by comm, then cgroup.
        let o = match by {
            SortBy::Comm => a.label.cmp(&b.label),
            _ => key(b).partial_cmp(&key(a)).unwrap_or(Ordering::Equal),
        };
        let o = o.then_with(|| a.label.cmp(&b.label));
        if reverse { o.reverse() } else { o }
    });
}

#[cfg(test)]
mod tests {
    use spawnprof_common::metrics::{Hist, bucket};

    use super::*;
    use crate::metrics::SpawnCounts;

    fn snap(comm: &str, spawns: u64, clone_ns: &[u64]) -> Snapshot {
        let mut s = Snapshot::default();
        s.counts.insert(
            (crate::metrics::snapshot::Label::comm(comm), 0),
            SpawnCounts {
                spawns,
                ..SpawnCounts::default()
            },
        );
        let mut h = Hist::default();
        for &v in clone_ns {
            h.count += 1;
            h.buckets[bucket(v)] += 1;
        }
        s.hists.insert(
            (
                crate::metrics::snapshot::Label::comm(comm),
                stage::CLONE as usize,
                0,
            ),
            h,
        );
        s
    }

    #[test]
    fn rates_and_quantiles_cover_the_interval_only() {
        let before = snap("redis", 10, &[1_000_000; 10]);
        let now = snap(
            "redis",
            30,
            &[&[1_000_000u64; 10][..], &[10_000; 20]].concat(),
        );
        let r = &rows(&now, &before, 2.0)[0];
        assert_eq!((r.label.comm.as_str(), r.total), ("redis", 30));
        assert!((r.per_second - 10.0).abs() < 1e-9);
        let p99 = r.stages[0].1.unwrap();
        assert!(
            p99 < 20_000.0,
            "the slow clones were before the interval: {p99}"
        );
        assert_eq!(r.stages[1], (None, None));
    }

    #[test]
    fn sorting_cycles_and_reverses() {
        let mut rows = vec![
            rows(&snap("a", 1, &[]), &Snapshot::default(), 1.0).remove(0),
            rows(&snap("b", 5, &[]), &Snapshot::default(), 1.0).remove(0),
        ];
        sort(&mut rows, SortBy::Rate, false);
        assert_eq!(rows[0].label.comm, "b");
        sort(&mut rows, SortBy::Comm, false);
        assert_eq!(rows[0].label.comm, "a");
        sort(&mut rows, SortBy::Comm, true);
        assert_eq!(rows[0].label.comm, "b");
        let mut by = SortBy::Rate;
        for _ in 0..7 {
            by = by.next();
        }
        assert_eq!(by, SortBy::Rate);
    }
}
