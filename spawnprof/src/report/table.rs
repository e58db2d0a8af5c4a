//! Terminal tables: one row per process created, and the stage breakdown.
use std::fmt::Write as _;

use super::breakdown::{Breakdown, Row as BreakdownRow};
use crate::{
    analysis::{Placement, StageStats},
    model::SpawnRecord,
    recording::ProbeCost,
    units::format_ns,
};

/// Fixed-width columns, left-aligned text and right-aligned numbers.
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    pub(crate) rows: Vec<Vec<String>>,
    /// Columns to fit in (`None`: as wide as the widest row).
    width: Option<usize>,
}

/// A text column is never cut below this many characters.
const MIN_CUT_COLUMN: usize = 12;

impl Table {
    pub fn new(columns: &[(&'static str, bool)]) -> Self {
        Self {
            header: columns.iter().map(|c| c.0).collect(),
            right: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
            width: None,
        }
    }

    /// Fits the table into `width` columns (a terminal's) by cutting its
    /// widest text columns.
    pub fn fit(mut self, width: Option<usize>) -> Self {
        self.width = width;
        self
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        self.narrow(&mut widths);
        let mut out = String::new();
        let line = |cells: Vec<&str>, out: &mut String| {
            let parts: Vec<String> = cells
                .iter()
                .zip(&widths)
                .zip(&self.right)
                .map(|((c, w), right)| {
                    let c = cut(c, *w);
                    if *right {
                        format!("{c:>w$}")
                    } else {
                        format!("{c:<w$}")
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", parts.join("  ").trim_end());
        };
        line(self.header.clone(), &mut out);
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect(), &mut out);
        }
        out
    }

    /// Takes characters from the widest text column, one at a time, until
    /// the rows fit (or every text column is down to [`MIN_CUT_COLUMN`]).
    fn narrow(&self, widths: &mut [usize]) {
        let Some(max) = self.width else { return };
        let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
        while total(widths) > max {
            let widest = (0..widths.len())
                .filter(|&i| !self.right[i] && widths[i] > MIN_CUT_COLUMN)
                .max_by_key(|&i| widths[i]);
            match widest {
                Some(i) => widths[i] -= 1,
                None => return,
            }
        }
    }
}

/// A cell cut to `width` characters: its end is kept (a path's file name
/// says more than its first directories), behind a `…`.
fn cut(cell: &str, width: usize) -> std::borrow::Cow<'_, str> {
    let n = cell.chars().count();
    if n <= width || width == 0 {
        return cell.into();
    }
    let tail: String = cell.chars().skip(n - (width - 1)).collect();
    format!("…{tail}").into()
}

/// One row per process created (threads are left out), at most `limit`,
/// fitted into `width` columns; `total`: the processes the recording holds
/// (the records passed in may be only its first ones), and `where_rest`
/// says where the others are.
pub fn processes(
    records: &[SpawnRecord],
    limit: usize,
    total: u64,
    where_rest: &str,
    width: Option<usize>,
) -> String {
    let mut t = Table::new(&[
        ("pid", true),
        ("ppid", true),
        ("method", false),
        ("comm", false),
        ("exec'd path", false),
        ("fork→exec", true),
        ("exec→exit", true),
        ("status", false),
    ])
    .fit(width);
    let procs: Vec<&SpawnRecord> = records.iter().filter(|r| !r.thread).collect();
    for r in procs.iter().take(limit) {
        let row = super::processes::ProcessRow::of(r);
        let cell = |name: &str| row.cell(name).to_string();
        t.rows.push(
            [
                "pid",
                "ppid",
                "method",
                "comm",
                "exec'd path",
                "fork→exec",
                "exec→exit",
                "status",
            ]
            .map(cell)
            .to_vec(),
        );
    }
    let mut out = t.render();
    let shown = procs.len().min(limit) as u64;
    let total = total.max(procs.len() as u64);
    if total > shown {
        let _ = writeln!(out, "… and {} more ({where_rest})", total - shown);
    }
    out
}

/// The stage breakdown: the spawn-time tree (per stage: count, mean, p50,
/// p99, max, its time in the tree and share of the whole, adding up), then
/// the intervals that overlap it. Stages never measured say why instead of
/// showing zeros; a recording with no spawn gets one line, not a table of
/// them.
pub fn breakdown(b: &Breakdown, width: Option<usize>) -> String {
    if b.is_empty() {
        return "no spawn was recorded, so there is no stage breakdown\n".into();
    }
    let mut t = Table::new(&[
        ("stage", false),
        ("count", true),
        ("mean", true),
        ("p50", true),
        ("p99", true),
        ("max", true),
        ("time", true),
        ("share", true),
        ("note", false),
    ])
    .fit(width);
    for r in &b.tree {
        t.rows.push(breakdown_cells(r));
    }
    let mut out = String::new();
    if !b.tree.is_empty() {
        out.push_str(
            "spawn time, each nanosecond once (clone entry to the child's exec, or to its first run \
             without one); share: of all of it\n",
        );
        out.push_str(&t.render());
        out.push('\n');
        t.rows.clear();
    }
    out.push_str("overlapping the spawn time: the parent's call, and after the exec\n");
    for r in &b.overlapping {
        t.rows.push(breakdown_cells(r));
    }
    out.push_str(&t.render());
    if let Some(note) = &b.vfork_note {
        let _ = writeln!(out, "{note}");
    }
    out
}

fn breakdown_cells(r: &BreakdownRow) -> Vec<String> {
    let mut row = vec![format!("{}{}", "  ".repeat(r.depth), r.label)];
    match &r.stats {
        Some(s) => {
            row.push(s.count.to_string());
            for v in [s.mean_ns, s.p50_ns, s.p99_ns, s.max_ns] {
                row.push(format_ns(v));
            }
        }
        None if r.time.is_some() => row.extend(std::iter::repeat_n(String::new(), 5)),
        None => {
            row.push("0".into());
            row.extend(std::iter::repeat_n("-".to_string(), 4));
        }
    }
    match r.time {
        Some((ns, share)) => {
            row.push(format_ns(ns));
            row.push(format!("{:.1}%", 100.0 * share));
        }
        None => row.extend([String::new(), String::new()]),
    }
    row.push(r.note.clone());
    row
}

/// Waits below this are scheduling noise, not a woken CPU.
const NOTABLE_EXTRA_WAIT_NS: i64 = 10_000;

/// Where the children first ran, and what starting on another CPU cost:
/// one line, plus a second when that cost is large enough to act on.
pub fn placement(p: &Placement) -> String {
    let mut out = format!(
        "placement: {} of {} children first ran on another CPU than their parent's",
        p.other_cpu, p.known
    );
    let (same, other) = (&p.sched_delay_same_cpu, &p.sched_delay_other_cpu);
    let mut waits = Vec::new();
    if other.count > 0 {
        waits.push(format!("{} on another CPU", format_ns(other.p50_ns)));
    }
    if same.count > 0 {
        waits.push(format!("{} on the parent's", format_ns(same.p50_ns)));
    }
    if !waits.is_empty() {
        let _ = write!(
            out,
            "; wait from wake-up to first run (p50): {}",
            waits.join(", ")
        );
    }
    out.push('\n');
    let (same, other) = (&p.vfork_resume_same_cpu, &p.vfork_resume_other_cpu);
    if same.count + other.count > 0 {
        let both = |s: &StageStats| format!("{} / {}", format_ns(s.p50_ns), format_ns(s.mean_ns));
        let mut parts = Vec::new();
        if other.count > 0 {
            parts.push(format!("{} after a child on another CPU", both(other)));
        }
        if same.count > 0 {
            parts.push(format!("{} after one on theirs", both(same)));
        }
        let _ = writeln!(
            out,
            "  vfork parents' wake-up once the exec released them (p50 / mean): {}",
            parts.join(", ")
        );
    }
    if let Some(line) = other_cpu_cost(p) {
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// What starting on another CPU cost, when it cost enough to act on: the
/// typical child waited longer there (a CPU woken from idle), or only a few
/// did, but long enough to show in the mean. Only what the figures say:
/// no cost at the median is never called one.
fn other_cpu_cost(p: &Placement) -> Option<String> {
    let extra = p.other_cpu_extra_wait_ns()?;
    let (same, other) = (&p.sched_delay_same_cpu, &p.sched_delay_other_cpu);
    let advice = "A serial spawn loop pinned to one CPU (taskset -c N) keeps its children on the \
                  parent's CPU.";
    let woken = "that CPU had to be woken (deep idle states; on a VM, a halted vCPU the host must \
                 schedule)";
    // What the children on another CPU waited beyond what they would have
    // on their parent's, in all; said only when it is positive.
    let beyond = other
        .total_ns
        .saturating_sub(other.count.saturating_mul(same.mean_ns));
    let lost = if beyond > 0 {
        format!(
            "; {} in all over {} children",
            format_ns(beyond),
            other.count
        )
    } else {
        String::new()
    };
    if extra.median_ns >= NOTABLE_EXTRA_WAIT_NS {
        return Some(format!(
            "a child that first ran on another CPU waited {} (p50) to start, against {} on its \
             parent's CPU: {woken}{lost}. {advice}",
            format_ns(other.p50_ns),
            format_ns(same.p50_ns),
        ));
    }
    (extra.mean_ns >= NOTABLE_EXTRA_WAIT_NS).then(|| {
        format!(
            "most children that first ran on another CPU started as soon as on their parent's \
             (p50 {} against {}), but some waited long (p99 {}), raising the mean to {} against \
             {}: each time, {woken}{lost}. {advice}",
            format_ns(other.p50_ns),
            format_ns(same.p50_ns),
            format_ns(other.p99_ns),
            format_ns(other.mean_ns),
            format_ns(same.mean_ns),
        )
    })
}

/// What tracing cost: in-kernel probe time per program, per spawn, and the
/// reader's CPU time (from `--probe-cost`).
pub fn probe_cost(cost: &ProbeCost) -> String {
    let per = |ns: u64| {
        ns.checked_div(cost.spawns)
            .map_or_else(|| "-".into(), format_ns)
    };
    let mut t = Table::new(&[
        ("probe program", false),
        ("runs", true),
        ("runs/spawn", true),
        ("mean", true),
        ("per spawn", true),
    ]);
    for p in &cost.programs {
        t.rows.push(vec![
            p.name.clone(),
            p.runs.to_string(),
            if cost.spawns == 0 {
                "-".into()
            } else {
                format!("{:.1}", p.runs as f64 / cost.spawns as f64)
            },
            format_ns(p.run_ns / p.runs.max(1)),
            per(p.run_ns),
        ]);
    }
    let mut out = t.render();
    let _ = writeln!(
        out,
        "in the kernel: {} per spawn ({} probe runs); spawnprof's own CPU: {} per spawn ({} spawns)",
        per(cost.bpf_ns),
        cost.bpf_runs,
        per(cost.reader_cpu_ns),
        cost.spawns
    );
    // The statistics time each run with two clock reads of their own,
    // which on a VM can be most of a short program's reported time.
    let _ = writeln!(
        out,
        "(run times as the kernel's BPF statistics report them: each run includes their own \
         clock reads, some 20-50 ns)"
    );
    if cost.parking_cpu_ns > 0 {
        let _ = writeln!(
            out,
            "of spawnprof's CPU, {} per spawn went to parking or bringing back the fork-only probes \
             ({} in all, paid each time, not per spawn)",
            per(cost.parking_cpu_ns),
            format_ns(cost.parking_cpu_ns)
        );
    }
    if let Some(g) = &cost.gates_at_end {
        let _ = writeln!(
            out,
            "probe gates at the end: forks in flight {}, copy-on-write windows {}, children awaiting their first run {}",
            g.forks_in_flight as i64, g.cow_windows as i64, g.awaiting_first_run as i64
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(other_p50: u64, same_p50: u64) -> Placement {
        let st = |count, p50_ns| StageStats {
            count,
            p50_ns,
            mean_ns: p50_ns * 2,
            p99_ns: p50_ns * 5,
            total_ns: count * p50_ns * 2,
            ..Default::default()
        };
        Placement {
            known: 100,
            other_cpu: 60,
            sched_delay_other_cpu: st(60, other_p50),
            sched_delay_same_cpu: st(40, same_p50),
            vfork_resume_other_cpu: st(60, 2 * other_p50),
            vfork_resume_same_cpu: st(40, 3_000),
        }
    }

    #[test]
    fn placement_explains_an_expensive_start_on_another_cpu() {
        let text = super::placement(&placement(34_000, 1_300));
        assert!(text.starts_with("placement: 60 of 100 children"), "{text}");
        assert!(
            text.contains("34 µs on another CPU, 1.3 µs on the parent's"),
            "{text}"
        );
        assert!(
            text.contains("waited 34 µs (p50) to start, against 1.3 µs on its parent's CPU"),
            "{text}"
        );
        // 60 × 68 µs, less the 2.6 µs each would have waited on theirs.
        assert!(text.contains("3.92 ms in all over 60 children"), "{text}");
        assert!(text.contains("taskset"), "{text}");
        assert!(
            text.contains("released them (p50 / mean): 68 µs / 136 µs after a child on another CPU, 3 µs / 6 µs after one on theirs"),
            "{text}"
        );
        // A cheap start on another CPU gets the facts, not advice.
        let mut cheap = placement(3_000, 1_300);
        cheap.vfork_resume_other_cpu = StageStats::default();
        cheap.vfork_resume_same_cpu = StageStats::default();
        let text = super::placement(&cheap);
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn placement_never_calls_nothing_a_cost() {
        // The median says no cost, a few long waits raise the mean: no
        // "added 0 ns at the median", but the few long waits, said so.
        let mut few = placement(3_000, 3_000);
        few.sched_delay_other_cpu.mean_ns = 900_000;
        few.sched_delay_other_cpu.total_ns = 60 * 900_000;
        let text = super::placement(&few);
        assert!(!text.contains("0 ns"), "{text}");
        assert!(
            text.contains("most children that first ran on another CPU started as soon as"),
            "{text}"
        );
        assert!(text.contains("mean to 900 µs against 6 µs"), "{text}");
        // A longer median but no longer in all: no total of 0 ns.
        let mut median_only = placement(16_100, 1_000);
        median_only.sched_delay_other_cpu.count = 2;
        median_only.sched_delay_other_cpu.total_ns = 2_000;
        median_only.sched_delay_other_cpu.mean_ns = 1_000;
        let text = super::placement(&median_only);
        assert!(text.contains("waited 16.1 µs (p50)"), "{text}");
        assert!(!text.contains("in all") && !text.contains("0 ns"), "{text}");
    }
}
