//! The bench in words: the terminal summary, and the sentences
//! `bench.html` repeats (the overhead, the placement findings, a bench cut
//! short).
use std::fmt::Write as _;

use super::results::{BenchReport, ConfigResult, Overhead};
use crate::units::{format_bytes, format_ns};

impl ConfigResult {
    /// The `n` largest stages of the spawn call with their shares, e.g.
    /// `dup_mmap 98%, copy_process (rest) 1%`.
    pub fn top_stages(&self, n: usize) -> String {
        let top: Vec<String> = self
            .breakdown
            .iter()
            .take(n)
            .map(|s| format!("{} {:.0}%", s.stage, 100.0 * s.share_of_call))
            .collect();
        top.join(", ")
    }
}

impl Overhead {
    /// One line: the p50 of the spawn call with and without probes (where
    /// known), then the rates.
    pub fn describe(&self) -> String {
        let setup = match self.cpu {
            Some(cpu) => format!("{} serial pinned to CPU {cpu}", self.method),
            None => format!("{} serial", self.method),
        };
        let rounds = if self.rounds > 1 {
            format!(", median of {} rounds", self.rounds)
        } else {
            String::new()
        };
        let rates = format!(
            "{:.0}/s without, {:.0}/s with probes ({:+.1}% of the spawn rate)",
            self.without_probes_spawns_per_sec,
            self.with_probes_spawns_per_sec,
            -100.0 * self.cost
        );
        match (
            self.without_probes_p50_ns,
            self.with_probes_p50_ns,
            self.p50_cost,
        ) {
            (Some(wo), Some(wi), Some(c)) => format!(
                "probe overhead ({setup}, {} spawns{rounds}): the spawn call's p50 {} without, {} with probes ({:+.1}%); {rates}",
                self.count,
                format_ns(wo as u64),
                format_ns(wi as u64),
                100.0 * c
            ),
            _ => format!(
                "probe overhead ({setup}, {} spawns{rounds}): {rates}",
                self.count
            ),
        }
    }
}

/// Says that a bench was cut short, and how much of it ran.
pub fn interrupted_note(report: &BenchReport) -> Option<String> {
    if report.unfinished {
        return Some(format!(
            "UNFINISHED (spawnprof was killed mid-sweep: SIGKILL, the OOM killer, or the machine went down): {} configuration{} finished, no overhead figure; run the bench again for the whole sweep",
            report.configs.len(),
            if report.configs.len() == 1 { "" } else { "s" },
        ));
    }
    report.interrupted.then(|| {
        format!(
            "INTERRUPTED (Ctrl-C, SIGTERM or SIGHUP): {} configuration{} finished{}; run the bench again for the whole sweep",
            report.configs.len(),
            if report.configs.len() == 1 { "" } else { "s" },
            if report.overhead.is_none() {
                ", no overhead figure"
            } else {
                ""
            }
        )
    })
}

/// The terminal summary: node facts, what this node showed (each finding
/// with the published figures), then one row per configuration, then the
/// rest of what the experiments found.
pub fn render(report: &BenchReport) -> String {
    let mut out = String::new();
    node_lines(&mut out, report);
    story(&mut out, report);
    configuration_rows(&mut out, report);
    finding_lines(&mut out, report);
    out
}

/// The findings, one line each and the published figures under it.
fn story(out: &mut String, report: &BenchReport) {
    let found = super::findings::findings(report);
    if found.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nwhat this node showed:");
    for f in found {
        let chart = f.chart.map_or_else(String::new, |c| format!(" [{c}]"));
        let _ = writeln!(out, "- {}: {}{chart}", f.title, f.here);
        let _ = writeln!(out, "    published: {}", f.published);
    }
    out.push('\n');
}

/// The node's facts, and whether the bench was cut short.
fn node_lines(out: &mut String, report: &BenchReport) {
    let n = &report.node;
    let _ = writeln!(
        out,
        "node {}: kernel {}, glibc {} (Rust std {}), THP {}, {} CPUs{}, {} RAM, env {} vars / {}, PATH {} entries{}",
        n.name(),
        n.kernel_release,
        n.glibc_version,
        n.std_spawn_path(),
        n.thp_enabled.as_deref().unwrap_or("?"),
        n.cpus_online,
        match n.usable_cpus {
            Some(u) if u < n.cpus_online => format!(" ({u} usable)"),
            _ => String::new(),
        },
        n.mem_total.map_or("?".into(), format_bytes),
        n.env_count,
        format_bytes(n.env_bytes),
        n.path_entries,
        match n.path_missing {
            Some(m) if m > 0 => format!(" ({m} missing)"),
            _ => String::new(),
        }
    );
    if let Some(ids) = &n.slurm {
        let _ = writeln!(out, "{}", ids.summary());
    }
    if let Some(cpus) = n.cpu_wakeup_summary() {
        let _ = writeln!(out, "CPUs: {cpus}");
    }
    if let Some(note) = interrupted_note(report) {
        let _ = writeln!(out, "{note}");
    }
}

/// One row per configuration: its rate, p50, p99 and largest stages.
fn configuration_rows(out: &mut String, report: &BenchReport) {
    let _ = writeln!(
        out,
        "{:<34} {:>10} {:>10} {:>10} {:>10}  where the spawn call goes",
        "configuration", "spawns/s", "p50", "p99", "mean"
    );
    for r in &report.configs {
        let _ = writeln!(
            out,
            "{:<34} {:>10.0} {:>10} {:>10} {:>10}  {}",
            r.config.name,
            r.spawner.spawns_per_sec,
            format_ns(r.spawner.latency_ns.p50),
            format_ns(r.spawner.latency_ns.p99),
            format_ns(r.spawner.latency_ns.mean as u64),
            r.top_stages(2)
        );
    }
}

/// What the experiments found beyond the rows: the fork chain along its
/// length, the failed execs of the PATH experiment, placement, overhead.
fn finding_lines(out: &mut String, report: &BenchReport) {
    for r in &report.configs {
        if let Some(w) = &r.spawner.window_means_ns {
            let w: Vec<String> = w.iter().map(|&v| format_ns(v)).collect();
            let _ = writeln!(
                out,
                "{}: mean fork time per tenth of the chain: {}",
                r.config.name,
                w.join(", ")
            );
        }
    }
    for r in &report.configs {
        if r.config.experiment == "path"
            && let Some(failed) = r.failed_execs_per_spawn
        {
            let _ = writeln!(
                out,
                "{}: {failed:.1} failed execve attempts per spawn (the node's PATH misses + {} added)",
                r.config.name, r.config.spawner.path_misses
            );
        }
    }
    for line in placement_findings(report) {
        let _ = writeln!(out, "{line}");
    }
    if let Some(o) = &report.overhead {
        let _ = writeln!(out, "{}", o.describe());
        if let Some(ns) = o.probe_ns_per_spawn {
            let _ = writeln!(
                out,
                "probe run time in the kernel: {} per spawn (BPF statistics); spawnprof's own CPU: {} per spawn",
                format_ns(ns as u64),
                o.reader_ns_per_spawn
                    .map_or("-".into(), |r| format_ns(r as u64))
            );
        }
    }
}

/// One sentence per method of the placement experiment: the spawn call
/// with the child free to start anywhere against pinned to one CPU, and how
/// often and how long the free children waited on another CPU.
pub fn placement_findings(report: &BenchReport) -> Vec<String> {
    let placement: Vec<&ConfigResult> = report
        .configs
        .iter()
        .filter(|c| c.config.experiment == "placement")
        .collect();
    let mut out = Vec::new();
    for free in placement.iter().filter(|c| c.config.spawner.cpus.is_none()) {
        let method = free.config.spawner.method;
        let Some(pinned) = placement
            .iter()
            .find(|c| c.config.spawner.method == method && c.config.spawner.cpus.is_some())
        else {
            continue;
        };
        let (f, p) = (&free.spawner.latency_ns, &pinned.spawner.latency_ns);
        let mut line = format!(
            "placement ({method}, exit-only child, serial): the spawn call took {} p50 / {} mean with the child free to start on any CPU, {} / {} pinned to CPU {}",
            format_ns(f.p50),
            format_ns(f.mean as u64),
            format_ns(p.p50),
            format_ns(p.mean as u64),
            pinned
                .config
                .spawner
                .cpus
                .as_ref()
                .map_or("?".into(), |c| c.to_string()),
        );
        if p.mean > 0.0 {
            let _ = write!(line, " (mean {:.1}× when free)", f.mean / p.mean);
        }
        if let Some(pl) = &free.placement
            && pl.sched_delay_other_cpu.count > 0
        {
            let _ = write!(
                line,
                "; free, {} of {} children started on another CPU and waited {} (p50) to run there",
                pl.other_cpu,
                pl.known,
                format_ns(pl.sched_delay_other_cpu.p50_ns)
            );
            let resume = &pl.vfork_resume_other_cpu;
            if resume.count > 0 {
                let _ = write!(
                    line,
                    ", and their parents {} on average to resume after the exec",
                    format_ns(resume.mean_ns)
                );
            }
        }
        out.push(line);
    }
    out
}
