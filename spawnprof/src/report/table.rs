//! Terminal tables: one row per process created, and the stage breakdown.
use std::{collections::BTreeMap, fmt::Write as _};

use crate::{
    analysis::{Placement, StageStats},
    model::{KERNEL_FN_STAGES, STAGES, SpawnRecord},
    recording::ProbeCost,
    units::format_ns,
};

fn opt_ns(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), format_ns)
}

/// Fixed-width columns, left-aligned text and right-aligned numbers.
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    pub(crate) rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, bool)]) -> Self {
        Self {
            header: columns.iter().map(|c| c.0).collect(),
            right: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<&str>, out: &mut String| {
            let parts: Vec<String> = cells
                .iter()
                .zip(&widths)
                .zip(&self.right)
                .map(|((c, w), right)| {
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
}

/// One row per process created (threads are left out), at most `limit`,
/// of the recording's `total` process spawns (the root command's row
/// aside); `where_rest` says where the others are.
pub fn processes(records: &[SpawnRecord], limit: usize, total: u64, where_rest: &str) -> String {
    let mut t = Table::new(&[
        ("pid", true),
        ("ppid", true),
        ("method", false),
        ("comm", false),
        ("exec'd path", false),
        ("fork→exec", true),
        ("exec→exit", true),
        ("status", false),
    ]);
    let procs: Vec<&SpawnRecord> = records.iter().filter(|r| !r.thread).collect();
    for r in procs.iter().take(limit) {
        let comm = match (&r.comm_before, &r.comm_after) {
            (Some(a), Some(b)) if a != b => format!("{a}→{b}"),
            (Some(a), _) | (None, Some(a)) => a.clone(),
            _ => "-".into(),
        };
        let status = if let Some(s) = r.exit_signal {
            format!("signal {s}")
        } else if let Some(s) = r.exit_status {
            format!("exit {s}")
        } else {
            "-".into()
        };
        let path = match (&r.exec_path, r.exec_attempts.last()) {
            (Some(p), _) => p.clone(),
            (None, Some(a)) => format!("{} (failed {})", a.path, a.ret.unwrap_or(0)),
            (None, None) => "-".into(),
        };
        let fork_exec =
            r.ts.exec_return
                .zip(r.ts.clone_enter.or(r.ts.fork_done))
                .and_then(|(e, s)| e.checked_sub(s));
        t.rows.push(vec![
            r.child_pid.map_or("-".into(), |p| p.to_string()),
            r.parent_pid.map_or("-".into(), |p| p.to_string()),
            if r.root {
                "root".into()
            } else {
                r.method.clone().unwrap_or_else(|| "-".into())
            },
            comm,
            path,
            opt_ns(fork_exec),
            opt_ns(r.duration("run")),
            status,
        ]);
    }
    let mut out = t.render();
    let shown = procs.len().min(limit) as u64;
    let total = total + u64::from(procs.iter().any(|r| r.root));
    if total > shown {
        let _ = writeln!(out, "… and {} more ({where_rest})", total - shown);
    }
    out
}

/// Per stage: count, mean, p50, p99, total and share of the spawn time.
/// Stages never measured say why instead of showing zeros.
pub fn breakdown(
    stats: &BTreeMap<String, StageStats>,
    unavailable: &[super::Unmeasured],
) -> String {
    let spawn_total = stats.get("spawn_to_exec").map_or(0, |s| s.total_ns);
    let mut t = Table::new(&[
        ("stage", false),
        ("count", true),
        ("mean", true),
        ("p50", true),
        ("p99", true),
        ("max", true),
        ("total", true),
        ("share", true),
        ("note", false),
    ]);
    let names = STAGES
        .iter()
        .map(|s| (s.name, s.parent))
        .chain(KERNEL_FN_STAGES.iter().map(|(n, p)| (*n, Some(*p))));
    for (name, parent) in names {
        let depth =
            std::iter::successors(parent, |p| crate::model::stage(p).and_then(|s| s.parent))
                .count();
        let label = format!("{}{name}", "  ".repeat(depth));
        let Some(s) = stats.get(name).filter(|s| s.count > 0) else {
            let why = super::why_no_data(unavailable, name);
            let mut row = vec![label, "0".into()];
            row.extend(std::iter::repeat_n("-".to_string(), 6));
            row.push(why.into());
            t.rows.push(row);
            continue;
        };
        let share = if spawn_total > 0 && name != "run" && name != "reap_delay" {
            format!("{:.1}%", 100.0 * s.total_ns as f64 / spawn_total as f64)
        } else {
            String::new()
        };
        t.rows.push(vec![
            label,
            s.count.to_string(),
            format_ns(s.mean_ns),
            format_ns(s.p50_ns),
            format_ns(s.p99_ns),
            format_ns(s.max_ns),
            format_ns(s.total_ns),
            share,
            String::new(),
        ]);
    }
    let mut out = t.render();
    out.push_str(
        "share: of all spawn_to_exec time; a vfork parent's clone overlaps its child's exec, \
         so shares can add up past 100%\n",
    );
    out
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
    if let Some(extra) = p.other_cpu_extra_wait_ns()
        && extra.median_ns.max(extra.mean_ns) >= NOTABLE_EXTRA_WAIT_NS
    {
        let ns = |v: i64| format_ns(v.max(0) as u64);
        let _ = writeln!(
            out,
            "  starting on another CPU added {} at the median and {} on average to a child's start \
             ({} over {} children): that CPU had to be woken (deep idle states; on a VM, a halted \
             vCPU the host must schedule). A serial spawn loop pinned to one CPU (taskset -c N) \
             keeps its children on the parent's CPU.",
            ns(extra.median_ns),
            ns(extra.mean_ns),
            ns(extra
                .mean_ns
                .saturating_mul(p.sched_delay_other_cpu.count as i64)),
            p.sched_delay_other_cpu.count
        );
    }
    out
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
            text.contains("added 32.7 µs at the median and 65.4 µs on average"),
            "{text}"
        );
        assert!(text.contains("(3.92 ms over 60 children)"), "{text}");
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
}
