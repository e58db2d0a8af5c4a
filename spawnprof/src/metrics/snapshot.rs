//! One reading of the kernel's metrics maps, with labels as text.
use crate::probe::park::ParkCounts;
use std::collections::BTreeMap;

use spawnprof_common::metrics::{Hist, OTHER, OTHER_CGROUP, method};

use crate::probe::{Lost, RawMetrics};

/// The spawn counters of one (comm, method).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpawnCounts {
    pub spawns: u64,
    pub clone_failures: u64,
    pub path_misses: u64,
    pub cow_faults: u64,
}

/// What a series is labelled by, beside its method (and stage).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Label {
    /// The spawning comm, or `other`.
    pub comm: String,
    /// With `--cgroup-label`: the spawning parent's cgroup path below the
    /// cgroup2 mount, or `other`.
    pub cgroup: Option<String>,
}

impl Label {
    pub fn comm(comm: &str) -> Self {
        Self {
            comm: comm.into(),
            cgroup: None,
        }
    }
}

/// The metrics at one moment. Keys: (label, stage or method index).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// (label, stage, method) -> histogram.
    pub hists: BTreeMap<(Label, usize, usize), Hist>,
    /// (label, method) -> counters.
    pub counts: BTreeMap<(Label, usize), SpawnCounts>,
    /// (errno, failed exec attempts).
    pub exec_errno: Vec<(u32, u64)>,
    /// By reason, what the kernel side could not keep.
    pub lost: BTreeMap<String, u64>,
    /// Every label slot was taken: later names were counted as `other`.
    pub capped: bool,
    /// The same for cgroup labels.
    pub cgroups_capped: bool,
    /// Updates that found no room in a map.
    pub no_room: u64,
    /// Label slots given back after their name stopped spawning (set by
    /// whoever holds the session).
    pub labels_recycled: u64,
    /// comm -> resident bytes of its latest spawning parent, if alive.
    pub parent_rss: BTreeMap<String, u64>,
    /// How often the fork-only probes were parked and brought back (set
    /// by whoever holds the session).
    pub fork_probes: ParkCounts,
}

/// The label of a comm: its text, or `other`.
pub fn comm_label(comm: &[u8; 16]) -> String {
    if *comm == OTHER {
        return "other".into();
    }
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// How a reading's label numbers become text.
pub struct Namers<'a> {
    /// A live process's resident bytes when its comm is still the label
    /// (the pid may have been reused).
    pub rss: &'a dyn Fn(u32, &str) -> Option<u64>,
    /// The name of a cgroup id, when series are labelled by cgroup.
    pub cgroup: Option<&'a dyn Fn(u64) -> String>,
}

/// The text of a cgroup label (the low half of an id), given the ids
/// labelled.
fn cgroup_label(low: u32, ids: &[u64], name: &dyn Fn(u64) -> String) -> String {
    if low == OTHER_CGROUP {
        return "other".into();
    }
    ids.iter()
        .find(|id| **id as u32 == low)
        .map_or_else(|| "unknown".into(), |id| name(*id))
}

impl Snapshot {
    /// Decodes a reading, naming its labels with `names`.
    pub fn new(raw: RawMetrics, lost: &Lost, names: &Namers<'_>) -> Self {
        let mut hists = BTreeMap::new();
        let mut counts = BTreeMap::new();
        let mut parent_rss = BTreeMap::new();
        for (k, v) in raw.series {
            let comm = comm_label(&k.comm);
            let c = v.counters;
            if c.parent_tgid != 0
                && !parent_rss.contains_key(&comm)
                && let Some(bytes) = (names.rss)(c.parent_tgid, &comm)
            {
                parent_rss.insert(comm.clone(), bytes);
            }
            let label = Label {
                comm,
                cgroup: names
                    .cgroup
                    .map(|name| cgroup_label(k.cgroup, &raw.cgroups, name)),
            };
            let m = (k.method as usize).min(method::COUNT - 1);
            for (st, h) in v.hists.iter().enumerate() {
                let h = Hist {
                    count: h.buckets.iter().sum(),
                    ..*h
                };
                if h.count > 0 {
                    hists.insert((label.clone(), st, m), h);
                }
            }
            counts.insert(
                (label, m),
                SpawnCounts {
                    spawns: c.spawns,
                    clone_failures: c.clone_failures,
                    path_misses: c.path_misses,
                    cow_faults: c.cow_faults,
                },
            );
        }
        Self {
            hists,
            counts,
            exec_errno: raw.exec_errno,
            lost: lost.by_reason.clone(),
            capped: raw.state.capped != 0,
            cgroups_capped: raw.state.cgroups_capped != 0,
            no_room: raw.state.no_room,
            labels_recycled: 0,
            parent_rss,
            fork_probes: ParkCounts::default(),
        }
    }

    /// Spawns per label (comm, and cgroup where labelled), all methods.
    pub fn spawns_by_label(&self) -> BTreeMap<&Label, u64> {
        let mut out = BTreeMap::new();
        for ((label, _), c) in &self.counts {
            *out.entry(label).or_default() += c.spawns;
        }
        out
    }

    /// The histogram of `label`'s `stage`, all methods added up.
    pub fn stage_of_label(&self, label: &Label, stage: usize) -> Option<Hist> {
        let mut sum: Option<Hist> = None;
        for ((l, s, _), h) in &self.hists {
            if *s == stage && l == label {
                let acc = sum.get_or_insert_with(Hist::default);
                acc.count += h.count;
                acc.sum_ns += h.sum_ns;
                for (a, b) in acc.buckets.iter_mut().zip(h.buckets.iter()) {
                    *a += b;
                }
            }
        }
        sum
    }
}

/// The resident bytes of `pid` if its comm is still `comm`
/// (/proc/PID/statm, in pages).
pub fn proc_rss(pid: u32, comm: &str) -> Option<u64> {
    let now = crate::sys::procfs::read_trim(&format!("/proc/{pid}/comm"))?;
    if now != comm {
        return None;
    }
    let statm = crate::sys::procfs::read(&format!("/proc/{pid}/statm"))?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(4096) as u64)
}

#[cfg(test)]
mod tests {
    use spawnprof_common::metrics::{Counters, MetricsState, Series, SeriesKey, stage};

    use super::*;

    fn comm(s: &str) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[..s.len()].copy_from_slice(s.as_bytes());
        c
    }

    #[test]
    fn labels_are_decoded_and_methods_added_up() {
        let mut series = Series::default();
        let h = &mut series.hists[stage::DUP_MMAP as usize];
        h.count = 2;
        h.buckets[3] = 2;
        let key = |comm, method| SeriesKey {
            comm,
            method,
            _pad: 0,
            cgroup: 0,
        };
        let other = Series {
            counters: Counters {
                spawns: 5,
                parent_tgid: 7,
                ..Counters::default()
            },
            ..Series::default()
        };
        let raw = RawMetrics {
            series: vec![
                (key(comm("redis-server"), method::FORK), series),
                (key(comm("redis-server"), method::VFORK), series),
                (key(OTHER, method::FORK), other),
            ],
            cgroups: Vec::new(),
            exec_errno: vec![(2, 3)],
            state: MetricsState {
                capped: 1,
                ..MetricsState::default()
            },
        };
        let rss = |pid, c: &str| (pid == 7 && c == "other").then_some(4096);
        let names = Namers {
            rss: &rss,
            cgroup: None,
        };
        let snap = Snapshot::new(raw, &Lost::default(), &names);
        assert!(snap.capped);
        assert_eq!(snap.spawns_by_label()[&Label::comm("other")], 5);
        assert_eq!(snap.parent_rss["other"], 4096);
        // Only the histograms with observations become series.
        assert_eq!(snap.hists.len(), 2);
        let both = snap
            .stage_of_label(&Label::comm("redis-server"), stage::DUP_MMAP as usize)
            .unwrap();
        assert_eq!((both.count, both.buckets[3]), (4, 4));
    }

    #[test]
    fn cgroup_slots_are_named() {
        let key = |cgroup| SeriesKey {
            comm: comm("make"),
            method: method::VFORK,
            _pad: 0,
            cgroup,
        };
        let raw = RawMetrics {
            series: vec![
                (key(4242), Series::default()),
                (key(77), Series::default()),
                (key(OTHER_CGROUP), Series::default()),
            ],
            cgroups: vec![(1 << 32) + 4242, 77],
            ..RawMetrics::default()
        };
        let name = |id: u64| format!("/id{id}");
        let names = Namers {
            rss: &|_, _| None,
            cgroup: Some(&name),
        };
        let snap = Snapshot::new(raw, &Lost::default(), &names);
        let cgroups: Vec<_> = snap
            .counts
            .keys()
            .map(|(l, _)| l.cgroup.clone().unwrap())
            .collect();
        assert_eq!(cgroups, ["/id4294971538", "/id77", "other"]);
    }
}
