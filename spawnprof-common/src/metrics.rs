//! Always-on metrics (`spawnprof serve`, `spawnprof top`): the kernel folds
//! each finished spawn into latency histograms and counters kept in maps,
//! and nothing per spawn crosses to userspace. A scrape reads the maps.
//!
//! Histograms are log-linear, as bpftrace's `hist(n, k)` and
//! ebpf_exporter's `exp2` with sub-buckets: every power of two of
//! nanoseconds from 2^[`MIN_EXP`] to 2^[`MAX_EXP`] is cut into [`SUBS`]
//! equal buckets, so a bucket's width is at most 25% of its value.
//! Labels are bounded: a spawn is labelled by its parent's comm, one of at
//! most `top-k` names (the first distinct ones seen); the rest share the
//! [`OTHER`] label and [`MetricsState::capped`] says it happened.
use crate::COMM_LEN;

/// log2 of the sub-buckets per power of two.
pub const SUB_BITS: u32 = 2;
pub const SUBS: u32 = 1 << SUB_BITS;
/// Values below 2^MIN_EXP ns (256 ns) share bucket 0.
pub const MIN_EXP: u32 = 8;
/// Values from 2^MAX_EXP ns (about 68.7 s) share the last bucket (+Inf).
pub const MAX_EXP: u32 = 36;
/// Bucket 0, the log-linear buckets, and the overflow bucket.
pub const BUCKETS: usize = 2 + ((MAX_EXP - MIN_EXP) * SUBS) as usize;

/// The bucket of a duration of `ns` nanoseconds. Written without loops or
/// leading-zero counts so the BPF side can use it as it is.
#[inline(always)]
pub fn bucket(ns: u64) -> usize {
    if ns < 1 << MIN_EXP {
        return 0;
    }
    let msb = floor_log2(ns);
    if msb >= MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = ((ns >> (msb - SUB_BITS)) & (SUBS as u64 - 1)) as u32;
    (1 + (msb - MIN_EXP) * SUBS + sub) as usize
}

/// The exclusive upper bound of bucket `i`, in ns (`None`: +Inf).
pub fn bucket_upper_ns(i: usize) -> Option<u64> {
    if i == 0 {
        return Some(1 << MIN_EXP);
    }
    if i >= BUCKETS - 1 {
        return None;
    }
    let i = (i - 1) as u32;
    let msb = MIN_EXP + i / SUBS;
    let sub = (i % SUBS) as u64;
    Some((1u64 << msb) + (sub + 1) * (1u64 << (msb - SUB_BITS)))
}

#[inline(always)]
fn floor_log2(v: u64) -> u32 {
    let (mut x, mut n) = (v, 0);
    if x >= 1 << 32 {
        x >>= 32;
        n += 32;
    }
    if x >= 1 << 16 {
        x >>= 16;
        n += 16;
    }
    if x >= 1 << 8 {
        x >>= 8;
        n += 8;
    }
    if x >= 1 << 4 {
        x >>= 4;
        n += 4;
    }
    if x >= 1 << 2 {
        x >>= 2;
        n += 2;
    }
    if x >= 1 << 1 {
        n += 1;
    }
    n
}

/// The stages a histogram is kept for ([`Series::hists`] index). Each is the
/// same pair of boundaries as the stage of that name in a recording
/// (`spawnprof::model::STAGES`).
pub mod stage {
    pub const CLONE: u16 = 0;
    pub const COPY_PROCESS: u16 = 1;
    pub const DUP_MMAP: u16 = 2;
    /// Summed inside the clone (fentry/kprobe tiers only).
    pub const COPY_PAGE_RANGE: u16 = 3;
    pub const ANON_VMA_FORK: u16 = 4;
    /// Woken to first on a CPU.
    pub const SCHED_DELAY: u16 = 5;
    pub const PATH_SEARCH: u16 = 6;
    pub const EXEC: u16 = 7;
    pub const EXEC_LOAD: u16 = 8;
    pub const VFORK_RESUME: u16 = 9;
    pub const REAP_DELAY: u16 = 10;
    pub const SPAWN_TO_EXEC: u16 = 11;
    pub const COUNT: usize = 12;
    /// Label values, by index.
    pub const NAMES: [&str; COUNT] = [
        "clone",
        "copy_process",
        "dup_mmap",
        "copy_page_range",
        "anon_vma_fork",
        "sched_delay",
        "path_search",
        "exec",
        "exec_load",
        "vfork_resume",
        "reap_delay",
        "spawn_to_exec",
    ];
}

/// How a spawn was made ([`SeriesKey::method`]).
pub mod method {
    use crate::{clone_flags as cf, syscall};

    pub const FORK: u16 = 0;
    pub const VFORK: u16 = 1;
    /// CLONE_VM|CLONE_VFORK through clone3: glibc's posix_spawn.
    pub const CLONE3_VFORK: u16 = 2;
    /// CLONE_VM without CLONE_VFORK or CLONE_THREAD.
    pub const CLONE_VM: u16 = 3;
    pub const THREAD: u16 = 4;
    /// The clone's entry was not seen.
    pub const UNKNOWN: u16 = 5;
    pub const COUNT: usize = 6;
    pub const NAMES: [&str; COUNT] = [
        "fork",
        "vfork",
        "clone3-vfork",
        "clone-vm",
        "thread",
        "unknown",
    ];

    /// The method of a clone with `flags` made by `syscall_id` (0: not seen).
    #[inline(always)]
    pub fn of(flags: u64, syscall_id: u16) -> u16 {
        if syscall_id == 0 {
            UNKNOWN
        } else if flags & cf::CLONE_THREAD != 0 {
            THREAD
        } else if flags & (cf::CLONE_VM | cf::CLONE_VFORK) == cf::CLONE_VM | cf::CLONE_VFORK {
            if syscall_id == syscall::CLONE3 {
                CLONE3_VFORK
            } else {
                VFORK
            }
        } else if flags & cf::CLONE_VM != 0 {
            CLONE_VM
        } else {
            FORK
        }
    }
}

/// The label of the spawns past the `top-k` names: an empty comm, which no
/// task has.
pub const OTHER: [u8; COMM_LEN] = [0; COMM_LEN];

/// The cgroup label of the spawns past the cgroup limit.
pub const OTHER_CGROUP: u32 = u32::MAX;

/// Bits of `ProbeConfig::metrics`.
pub mod mode {
    /// Finished spawns go into the metrics maps, not to the ring buffer.
    pub const ON: u32 = 1;
    /// Series are also labelled by the spawning parent's cgroup.
    pub const BY_CGROUP: u32 = 2;
    /// The comm label is the child's name after its exec (the program it
    /// exec'd), the spawning process's where it did not exec.
    pub const BY_EXEC: u32 = 4;
}

/// Key of the `SERIES` map: one entry per label and method.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The spawning process's comm (with [`mode::BY_EXEC`], the exec'd
    /// program's where the child exec'd), or [`OTHER`].
    pub comm: [u8; COMM_LEN],
    pub method: u16,
    pub _pad: u16,
    /// With `serve --cgroup-label`, the spawning parent's cgroup: the low
    /// half of its id (in [`MAP_CGROUPS`]), or [`OTHER_CGROUP`] past the
    /// limit; 0 without.
    pub cgroup: u32,
}

/// One latency histogram, updated with atomic adds.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Hist {
    /// The observations: the sum of the buckets. The kernel leaves it 0
    /// and userspace fills it when it reads the map.
    pub count: u64,
    pub sum_ns: u64,
    pub buckets: [u64; BUCKETS],
}

impl Default for Hist {
    fn default() -> Self {
        Self {
            count: 0,
            sum_ns: 0,
            buckets: [0; BUCKETS],
        }
    }
}

/// Counters per (comm, method), updated with atomic adds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Spawns that finished (their record is complete).
    pub spawns: u64,
    /// Clones that failed (no child).
    pub clone_failures: u64,
    /// Failed exec attempts of children whose exec then succeeded: the
    /// PATH directories tried before the one that held the program.
    pub path_misses: u64,
    /// The parent's copy-on-write faults after each fork, until its next
    /// fork, exec or exit.
    pub cow_faults: u64,
    /// The spawning process of the latest spawn (plain store): its RSS is
    /// read at scrape time.
    pub parent_tgid: u32,
    pub _pad: u32,
}

/// Everything kept for one (comm, method): its counters and a histogram
/// per stage, in one map value so a finished spawn costs one lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Series {
    pub counters: Counters,
    pub hists: [Hist; stage::COUNT],
}

impl Default for Series {
    fn default() -> Self {
        Self {
            counters: Counters::default(),
            hists: [Hist::default(); stage::COUNT],
        }
    }
}

/// Slots of the `EXEC_ERRNO` array: failed exec attempts by errno; larger
/// ones share the last.
pub const ERRNO_SLOTS: u32 = 256;

/// The one entry of the `METRICS_STATE` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsState {
    /// Non-zero once a spawn was labelled [`OTHER`] because every label
    /// slot was taken.
    pub capped: u64,
    /// Histogram or counter entries that found no room (not expected:
    /// the maps are sized for every label, stage and method).
    pub no_room: u64,
    /// Non-zero once a spawn was labelled [`OTHER_CGROUP`] because every
    /// cgroup slot was taken.
    pub cgroups_capped: u64,
}

/// Hash [`SeriesKey`] -> [`Series`].
pub const MAP_SERIES: &str = "SERIES";
/// Hash comm -> u32 (unused value): the labels taken, at most top-k.
pub const MAP_LABELS: &str = "LABELS";
/// Hash cgroup id (u64) -> u32 (unused value): the cgroups labelled, at
/// most the cgroup limit.
pub const MAP_CGROUPS: &str = "CGROUPS";
/// Array of u64 by errno ([`ERRNO_SLOTS`]).
pub const MAP_EXEC_ERRNO: &str = "EXEC_ERRNO";
/// Array of one [`MetricsState`].
pub const MAP_METRICS_STATE: &str = "METRICS_STATE";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_log_linear_and_contiguous() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(255), 0);
        assert_eq!(bucket(256), 1);
        assert_eq!(bucket(319), 1);
        assert_eq!(bucket(320), 2);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        // Every value falls below its bucket's upper bound and at or above
        // the previous one's.
        for v in [1u64, 300, 1000, 4096, 5000, 1 << 20, 3 << 29, (1 << 36) - 1] {
            let b = bucket(v);
            assert!(v < bucket_upper_ns(b).unwrap(), "{v} in {b}");
            if b > 0 {
                assert!(v >= bucket_upper_ns(b - 1).unwrap(), "{v} in {b}");
            }
        }
        let mut prev = 0;
        for i in 0..BUCKETS - 1 {
            let up = bucket_upper_ns(i).unwrap();
            assert!(up > prev);
            prev = up;
        }
        assert_eq!(bucket_upper_ns(BUCKETS - 1), None);
    }

    #[test]
    fn methods_follow_the_flags_and_the_syscall() {
        use crate::{clone_flags as cf, syscall};
        let vfork = cf::CLONE_VM | cf::CLONE_VFORK;
        assert_eq!(method::of(17, syscall::FORK), method::FORK);
        assert_eq!(method::of(vfork, syscall::VFORK), method::VFORK);
        assert_eq!(method::of(vfork, syscall::CLONE3), method::CLONE3_VFORK);
        assert_eq!(method::of(cf::CLONE_THREAD | 0xf00, 2), method::THREAD);
        assert_eq!(method::of(cf::CLONE_VM, syscall::CLONE), method::CLONE_VM);
        assert_eq!(method::of(17, 0), method::UNKNOWN);
    }
}
