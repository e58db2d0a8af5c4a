//! The Prometheus text exposition format (0.0.4) of a [`Snapshot`]:
//! `# HELP`/`# TYPE` before each family, histograms as cumulative
//! `_bucket{le}` series with `_sum` and `_count`, durations in seconds.
//!
//! The kernel keeps four buckets per power of two; the exposition gives
//! two of their bounds per power of two (2^k and 1.5·2^k ns, both exact
//! bucket edges), which halves the series a scrape carries and keeps
//! `histogram_quantile` within 50% of the value.
use std::fmt::Write as _;

use spawnprof_common::metrics::{BUCKETS, Hist, SUBS, bucket_upper_ns, method, stage};

use super::{Snapshot, snapshot::Label};
use crate::probe::metrics::Labels;

/// The media type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether bucket `i`'s upper bound is one the exposition gives.
fn exposed(i: usize) -> bool {
    i == 0 || (i < BUCKETS - 1 && ((i - 1) % SUBS as usize) % 2 == 1)
}

/// A label value, escaped (backslash, double quote, newline).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The whole page for one scrape. `limits`: the label limits in force.
pub fn render(snap: &Snapshot, limits: Labels) -> String {
    let mut out = String::with_capacity(64 * 1024);
    histograms(&mut out, snap);
    counters(&mut out, snap);
    gauges(&mut out, snap, limits);
    out
}

/// `comm="…"` and, when labelled by cgroup, `,cgroup="…"`.
fn label_pairs(label: &Label) -> String {
    let comm = format!("comm=\"{}\"", escape(&label.comm));
    match &label.cgroup {
        Some(cgroup) => format!("{comm},cgroup=\"{}\"", escape(cgroup)),
        None => comm,
    }
}

fn histograms(out: &mut String, snap: &Snapshot) {
    const NAME: &str = "spawnprof_stage_duration_seconds";
    family(
        out,
        NAME,
        "histogram",
        "Duration of each spawn stage, by comm (the spawning process's; with --label-by exec, \
         the exec'd program's; top-k, the rest as other), cgroup (with --cgroup-label) and method.",
    );
    for ((label, st, m), h) in &snap.hists {
        let labels = format!(
            "{},method=\"{}\",stage=\"{}\"",
            label_pairs(label),
            method::NAMES[*m],
            stage::NAMES[*st]
        );
        histogram(out, NAME, &labels, h);
    }
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Hist) {
    let mut cumulative = 0u64;
    for (i, n) in h.buckets.iter().enumerate() {
        cumulative += n;
        if !exposed(i) {
            continue;
        }
        if let Some(upper) = bucket_upper_ns(i) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{}\"}} {cumulative}",
                seconds(upper)
            );
        }
    }
    // The bucket counts and the count are separate atomic adds: a scrape
    // in the middle of an update must still see +Inf equal to _count.
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", seconds(h.sum_ns));
    let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
}

/// The counters by comm and method, then the others.
fn counters(out: &mut String, snap: &Snapshot) {
    type Field = fn(&super::SpawnCounts) -> u64;
    let per_comm: [(&str, &str, Field); 4] = [
        (
            "spawnprof_spawns_total",
            "Spawns (processes and threads) that ended, by comm and method.",
            |c| c.spawns,
        ),
        (
            "spawnprof_clone_failures_total",
            "Clones that failed, by comm (the spawning process's) and method.",
            |c| c.clone_failures,
        ),
        (
            "spawnprof_path_misses_total",
            "Failed exec attempts before a child's exec succeeded (PATH directories tried).",
            |c| c.path_misses,
        ),
        (
            "spawnprof_cow_faults_total",
            "Copy-on-write faults of the parent after each fork, until its next fork, exec or exit (or 5 s with none in any open window).",
            |c| c.cow_faults,
        ),
    ];
    for (name, help, field) in per_comm {
        family(out, name, "counter", help);
        for ((label, m), c) in &snap.counts {
            let _ = writeln!(
                out,
                "{name}{{{},method=\"{}\"}} {}",
                label_pairs(label),
                method::NAMES[*m],
                field(c)
            );
        }
    }
    keyed_counters(out, snap);
    scalar_counters(out, snap);
}

/// The counters by errno and by reason of loss.
fn keyed_counters(out: &mut String, snap: &Snapshot) {
    family(
        out,
        "spawnprof_exec_failures_total",
        "counter",
        "Failed exec attempts of traced processes, by errno.",
    );
    for (errno, n) in &snap.exec_errno {
        let _ = writeln!(
            out,
            "spawnprof_exec_failures_total{{errno=\"{}\"}} {n}",
            errno_name(*errno)
        );
    }
    family(
        out,
        "spawnprof_lost_events_total",
        "counter",
        "What the kernel side could not keep, by reason.",
    );
    for (reason, n) in &snap.lost {
        let _ = writeln!(
            out,
            "spawnprof_lost_events_total{{reason=\"{}\"}} {n}",
            escape(reason)
        );
    }
}

/// The counters with no labels: full maps, parking, recycled labels.
fn scalar_counters(out: &mut String, snap: &Snapshot) {
    family(
        out,
        "spawnprof_map_full_total",
        "counter",
        "Histogram or counter updates that found their map full (expected 0).",
    );
    let _ = writeln!(out, "spawnprof_map_full_total {}", snap.no_room);
    for (name, help, n) in [
        (
            "spawnprof_fork_probes_parked_total",
            "Times probes only forks need were detached after 32 spawns without a fork (doubled \
             at each return): the mmap-lock ones, and the page-fault one once no copy-on-write \
             window is open either, or none has had a fault for 5 s (the fork that brings them \
             back has no dup_mmap).",
            u64::from(snap.fork_probes.parked),
        ),
        (
            "spawnprof_fork_probes_resumed_total",
            "Times a fork brought the parked mmap-lock and page-fault probes back.",
            u64::from(snap.fork_probes.resumed),
        ),
        (
            "spawnprof_labels_recycled_total",
            "Comm and cgroup label slots given back after their name spawned nothing for \
             --label-idle while others were counted as other; a name that returns counts from 0.",
            snap.labels_recycled,
        ),
    ] {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {n}");
    }
}

fn gauges(out: &mut String, snap: &Snapshot, limits: Labels) {
    family(
        out,
        "spawnprof_parent_rss_bytes",
        "gauge",
        "Resident memory of the latest spawning parent of each comm label, while it runs.",
    );
    for (comm, bytes) in &snap.parent_rss {
        let _ = writeln!(
            out,
            "spawnprof_parent_rss_bytes{{comm=\"{}\"}} {bytes}",
            escape(comm)
        );
    }
    family(
        out,
        "spawnprof_comm_labels_capped",
        "gauge",
        "1 once every comm label slot was taken and later comms were counted as other.",
    );
    let _ = writeln!(out, "spawnprof_comm_labels_capped {}", snap.capped as u8);
    family(
        out,
        "spawnprof_comm_labels_limit",
        "gauge",
        "The most distinct comm labels kept (--top-k).",
    );
    let _ = writeln!(out, "spawnprof_comm_labels_limit {}", limits.top_k);
    let Some(cgroup_k) = limits.cgroup_k else {
        return;
    };
    family(
        out,
        "spawnprof_cgroup_labels_capped",
        "gauge",
        "1 once every cgroup label slot was taken and later cgroups were counted as other.",
    );
    let capped = snap.cgroups_capped as u8;
    let _ = writeln!(out, "spawnprof_cgroup_labels_capped {capped}");
    family(
        out,
        "spawnprof_cgroup_labels_limit",
        "gauge",
        "The most distinct cgroup labels kept (--cgroup-k).",
    );
    let _ = writeln!(out, "spawnprof_cgroup_labels_limit {cgroup_k}");
}

/// The symbolic name of an exec errno (the common ones), else its number.
pub fn errno_name(errno: u32) -> String {
    let name = match errno as i32 {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ELOOP => "ELOOP",
        libc::ELIBBAD => "ELIBBAD",
        libc::EINTR => "EINTR",
        _ => return errno.to_string(),
    };
    name.into()
}

#[cfg(test)]
mod tests {
    use spawnprof_common::metrics::bucket;

    use super::*;
    use crate::metrics::SpawnCounts;

    #[test]
    fn a_histogram_is_cumulative_and_ends_at_its_count() {
        let mut h = Hist::default();
        for v in [300u64, 10_000, 10_000, 2_000_000_000] {
            h.count += 1;
            h.sum_ns += v;
            h.buckets[bucket(v)] += 1;
        }
        let mut snap = Snapshot::default();
        snap.hists
            .insert((Label::comm("sh\"x"), stage::CLONE as usize, 0), h);
        snap.counts.insert(
            (Label::comm("sh\"x"), 0),
            SpawnCounts {
                spawns: 4,
                ..SpawnCounts::default()
            },
        );
        snap.exec_errno.push((2, 7));
        let page = render(
            &snap,
            Labels {
                top_k: 32,
                cgroup_k: None,
                by_exec: false,
            },
        );
        let buckets: Vec<u64> = page
            .lines()
            .filter(|l| l.starts_with("spawnprof_stage_duration_seconds_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{page}");
        assert_eq!(*buckets.last().unwrap(), 4);
        assert!(page.contains("le=\"+Inf\"} 4\n"), "{page}");
        assert!(page.contains("_count{comm=\"sh\\\"x\",method=\"fork\",stage=\"clone\"} 4"));
        assert!(page.contains("spawnprof_spawns_total{comm=\"sh\\\"x\",method=\"fork\"} 4"));
        assert!(page.contains("spawnprof_exec_failures_total{errno=\"ENOENT\"} 7"));
        // Two bounds per power of two, from 256 ns to 2^35·1.5 ns, and +Inf.
        assert_eq!(buckets.len(), 1 + 2 * 28 + 1);
    }

    #[test]
    fn a_cgroup_label_follows_the_comm() {
        let mut snap = Snapshot::default();
        let label = Label {
            comm: "make".into(),
            cgroup: Some("/system.slice/ci.service".into()),
        };
        snap.counts.insert((label, 1), SpawnCounts::default());
        let limits = Labels {
            top_k: 32,
            cgroup_k: Some(8),
            by_exec: false,
        };
        let page = render(&snap, limits);
        assert!(page.contains(
            "spawnprof_spawns_total{comm=\"make\",cgroup=\"/system.slice/ci.service\",method=\"vfork\"} 0"
        ));
        assert!(page.contains("spawnprof_cgroup_labels_limit 8\n"), "{page}");
    }
}
