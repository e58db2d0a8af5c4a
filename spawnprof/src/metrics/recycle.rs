//! Giving idle label slots back, so the labels go to the busy names.
//!
//! The kernel hands out the `--top-k` comm slots (and `--cgroup-k` cgroup
//! slots) to the first names that spawn; later ones share `other`. A name
//! that stopped spawning would keep its slot for ever, and a cgroup's slot
//! would outlive the cgroup. So at each reading, a label whose spawn count
//! has not moved for `--label-idle`, while spawns are landing in `other`,
//! is freed: its series go, and the next name to spawn takes the slot.
//! The busiest name in `other` spawns most often, so it is the likeliest
//! to take it.
//!
//! ```text
//! reading ──▶ totals per label ──▶ moved? since = now
//!                  │
//!                  └─ `other` grew and now - since ≥ idle ──▶ free it
//! ```
use std::{
    collections::HashMap,
    hash::Hash,
    time::{Duration, Instant},
};

use spawnprof_common::{
    COMM_LEN,
    metrics::{OTHER, OTHER_CGROUP, Series, SeriesKey},
};

/// The labels to free after one reading.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Idle {
    pub comms: Vec<[u8; COMM_LEN]>,
    /// Low halves of cgroup ids, as series keys hold them.
    pub cgroups: Vec<u32>,
}

impl Idle {
    pub fn is_empty(&self) -> bool {
        self.comms.is_empty() && self.cgroups.is_empty()
    }
}

/// Per label value: its spawn total when last seen and since when.
struct Watch<K> {
    seen: HashMap<K, (u64, Instant)>,
    other: u64,
}

impl<K: Copy + Eq + Hash> Watch<K> {
    fn new() -> Self {
        Self {
            seen: HashMap::new(),
            other: 0,
        }
    }

    /// Takes this reading's totals (with `other`'s), and returns the
    /// labels idle for `idle` while `other` grew.
    fn idle(
        &mut self,
        totals: HashMap<K, u64>,
        other: u64,
        now: Instant,
        idle: Duration,
    ) -> Vec<K> {
        self.seen.retain(|k, _| totals.contains_key(k));
        for (k, n) in totals {
            match self.seen.get_mut(&k) {
                Some(s) if s.0 == n => {}
                Some(s) => *s = (n, now),
                None => {
                    self.seen.insert(k, (n, now));
                }
            }
        }
        let waiting = other > self.other;
        self.other = other;
        if !waiting {
            return Vec::new();
        }
        let gone: Vec<K> = self
            .seen
            .iter()
            .filter(|(_, (_, since))| now.duration_since(*since) >= idle)
            .map(|(k, _)| *k)
            .collect();
        for k in &gone {
            self.seen.remove(k);
        }
        gone
    }
}

/// Watches the labels across readings.
pub struct Recycler {
    idle: Duration,
    comms: Watch<[u8; COMM_LEN]>,
    cgroups: Watch<u32>,
}

impl Recycler {
    /// Frees labels idle for `idle`.
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            comms: Watch::new(),
            cgroups: Watch::new(),
        }
    }

    /// The labels to free, given every series read at `now`. A freed
    /// label's series, read again later, count from zero.
    pub fn idle(&mut self, series: &[(SeriesKey, Series)], now: Instant) -> Idle {
        let (mut comms, mut cgroups) = (HashMap::new(), HashMap::new());
        let (mut other_comm, mut other_cgroup) = (0, 0);
        for (k, v) in series {
            let n = v.counters.spawns + v.counters.clone_failures;
            match k.comm {
                OTHER => other_comm += n,
                c => *comms.entry(c).or_insert(0) += n,
            }
            match k.cgroup {
                // Not labelled by cgroup.
                0 => {}
                OTHER_CGROUP => other_cgroup += n,
                c => *cgroups.entry(c).or_insert(0) += n,
            }
        }
        Idle {
            comms: self.comms.idle(comms, other_comm, now, self.idle),
            cgroups: self.cgroups.idle(cgroups, other_cgroup, now, self.idle),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comm(name: &str) -> [u8; COMM_LEN] {
        let mut c = [0; COMM_LEN];
        c[..name.len()].copy_from_slice(name.as_bytes());
        c
    }

    fn series(comm: [u8; COMM_LEN], cgroup: u32, spawns: u64) -> (SeriesKey, Series) {
        let mut s: Series = unsafe { std::mem::zeroed() };
        s.counters.spawns = spawns;
        let key = SeriesKey {
            comm,
            method: 0,
            _pad: 0,
            cgroup,
        };
        (key, s)
    }

    #[test]
    fn an_idle_label_is_freed_only_while_other_grows() {
        let idle = Duration::from_secs(10);
        let mut r = Recycler::new(idle);
        let t0 = Instant::now();
        let (a, b) = (comm("a"), comm("b"));
        let read = |a_n, b_n, other| {
            vec![
                series(a, 0, a_n),
                series(b, 0, b_n),
                series(OTHER, 0, other),
            ]
        };
        assert!(r.idle(&read(5, 5, 0), t0).is_empty());
        // b keeps spawning, a stops; nothing waits in other yet.
        assert!(r.idle(&read(5, 9, 0), t0 + idle * 2).is_empty());
        // Something lands in other: a has been idle long enough, b has not.
        let freed = r.idle(&read(5, 9, 3), t0 + idle * 2 + Duration::from_secs(1));
        assert_eq!(freed.comms, [a]);
        assert!(freed.cgroups.is_empty());
        // other grows again; b moved 1 s ago, so it stays.
        let freed = r.idle(&read(0, 9, 4), t0 + idle * 2 + Duration::from_secs(2));
        assert!(freed.is_empty(), "{freed:?}");
    }

    #[test]
    fn cgroup_labels_are_watched_apart_from_comms() {
        let idle = Duration::from_secs(1);
        let mut r = Recycler::new(idle);
        let t0 = Instant::now();
        let c = comm("sh");
        assert!(r.idle(&[series(c, 7, 2), series(c, 8, 2)], t0).is_empty());
        let later = t0 + Duration::from_secs(5);
        let freed = r.idle(
            &[series(c, 7, 2), series(c, 8, 6), series(c, OTHER_CGROUP, 1)],
            later,
        );
        // The comm moved (cgroup 8 spawned), cgroup 7 did not.
        assert_eq!(freed.cgroups, [7]);
        assert!(freed.comms.is_empty());
    }
}
