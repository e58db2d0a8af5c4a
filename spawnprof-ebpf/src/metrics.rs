//! Always-on metrics (`serve`, `top`): when `CONFIG.metrics` is set, a
//! finished spawn is folded here into per-stage latency histograms and
//! counters instead of being sent, so nothing per spawn reaches the ring
//! buffer. See [`spawnprof_common::metrics`] for the buckets and labels.
//! Everything is updated with atomic adds on shared (not per-CPU) values:
//! a scrape reads one value per key, and memory does not grow with CPUs.
//! A (comm, method) keeps its counters and every stage's histogram in one
//! value, so a finished spawn costs two lookups (its label, its series).
use aya_ebpf::helpers::bpf_get_current_cgroup_id;
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use spawnprof_common::{
    COMM_LEN, SpawnEvent, clone_flags as cf,
    metrics::{
        ERRNO_SLOTS, Hist, MetricsState, OTHER, OTHER_CGROUP, Series, SeriesKey, bucket, method,
        mode, stage,
    },
    spawn as sp, ts,
};

use crate::maps::{BPF_NOEXIST, CONFIG, config};

/// Whether a progress bit ([`sp`]) is set: each is a byte of its own.
#[inline(always)]
fn has(s: *const SpawnEvent, bit: u32) -> bool {
    let i = bit.trailing_zeros() as usize;
    unsafe { (*s).progress.get(i).is_some_and(|b| *b != 0) }
}

/// Labels taken, comm -> 0. The loader sizes it to `--top-k`.
#[map]
static LABELS: HashMap<[u8; COMM_LEN], u32> = HashMap::with_max_entries(32, 0);

/// Cgroups labelled (`serve --cgroup-label`), id -> 0. The loader sizes it
/// to `--cgroup-k`.
#[map]
static CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(1, 0);

/// Counters and histograms per label and method; the loader sizes it to
/// every label and method. Entries are allocated as first used.
#[map]
static SERIES: HashMap<SeriesKey, Series> = HashMap::with_max_entries(1024, BPF_F_NO_PREALLOC);

/// Failed exec attempts by errno.
#[map]
static EXEC_ERRNO: Array<u64> = Array::with_max_entries(ERRNO_SLOTS, 0);

#[map]
static METRICS_STATE: Array<MetricsState> = Array::with_max_entries(1, 0);

/// Never written: the zeroed value new entries are copied from (too large
/// for the BPF stack).
#[map]
static ZERO: PerCpuArray<Series> = PerCpuArray::with_max_entries(1, 0);

const BPF_F_NO_PREALLOC: u32 = 1;

#[inline(always)]
fn add(p: *mut u64, v: u64) {
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            p, v,
        );
    }
}

/// A finished spawn: its stages into the histograms, its counts into the
/// counters.
#[inline(always)]
pub fn spawn_ended(s: *const SpawnEvent) {
    if has(s, sp::ROOT) {
        return;
    }
    let (flags, syscall) = unsafe { ((*s).clone_flags, (*s).syscall) };
    let m = method::of(flags, syscall);
    let key = SeriesKey {
        comm: label(s),
        method: m,
        _pad: 0,
        cgroup: unsafe { (*s).cgroup_slot },
    };
    let Some(series) = series(&key) else {
        return;
    };
    unsafe {
        let c = &raw mut (*series).counters;
        if has(s, sp::CLONE_FAILED) {
            add(&raw mut (*c).clone_failures, 1);
            return;
        }
        add(&raw mut (*c).spawns, 1);
        (*c).parent_tgid = (*s).parent_tgid;
        if has(s, sp::PARENT_COW_KNOWN) {
            add(&raw mut (*c).cow_faults, (*s).parent_cow as u64);
        }
        if has(s, sp::EXECED) && (*s).failed_attempts != 0 {
            add(&raw mut (*c).path_misses, (*s).failed_attempts as u64);
        }
    }
    stages(s, series, flags);
}

/// Each stage the record has both boundaries of.
#[inline(always)]
fn stages(s: *const SpawnEvent, series: *mut Series, flags: u64) {
    let t = |i: usize| unsafe { (*s).ts[i] };
    let or = |a: usize, b: usize| if t(a) != 0 { t(a) } else { t(b) };
    let put = |st: u16, start: u64, end: u64| {
        if start != 0 && end >= start {
            observe(series, st, end - start);
        }
    };
    put(stage::CLONE, t(ts::CLONE_ENTER), t(ts::CLONE_EXIT));
    put(
        stage::COPY_PROCESS,
        or(ts::COPY_PROCESS_ENTER, ts::CLONE_ENTER),
        or(ts::COPY_PROCESS_EXIT, ts::NEWTASK),
    );
    put(
        stage::DUP_MMAP,
        or(ts::DUP_MMAP_ENTER, ts::MM_LOCK_WAIT),
        or(ts::DUP_MMAP_EXIT, ts::MM_COPY_END),
    );
    unsafe {
        if (*s).cpr_calls != 0 {
            observe(series, stage::COPY_PAGE_RANGE, (*s).cpr_ns);
        }
        if (*s).avf_calls != 0 {
            observe(series, stage::ANON_VMA_FORK, (*s).avf_ns);
        }
    }
    put(stage::SCHED_DELAY, t(ts::WAKEUP_NEW), t(ts::FIRST_RUN));
    // Only a search that missed: a first-try exec would fill it with zeros.
    if unsafe { (*s).failed_attempts } != 0 {
        put(
            stage::PATH_SEARCH,
            t(ts::EXEC_FIRST_ENTER),
            t(ts::EXEC_ENTER),
        );
    }
    put(stage::EXEC, t(ts::EXEC_ENTER), t(ts::EXEC_RETURN));
    put(stage::EXEC_LOAD, t(ts::EXEC_ENTER), t(ts::EXEC_PREPARE));
    if flags & cf::CLONE_VFORK != 0 {
        // The parent sleeps until the child's exec passes its point of no
        // return, or the child exits.
        put(
            stage::VFORK_RESUME,
            or(ts::EXEC_PREPARE, ts::EXIT),
            t(ts::CLONE_EXIT),
        );
    }
    put(stage::REAP_DELAY, t(ts::EXIT), t(ts::REAP));
    put(stage::SPAWN_TO_EXEC, t(ts::CLONE_ENTER), t(ts::EXEC_RETURN));
}

/// The spawning process's comm (the child's before its exec where the
/// clone was not seen), or with [`mode::BY_EXEC`] the child's after its
/// exec where it exec'd; [`OTHER`] once every label slot is taken.
#[inline(always)]
fn label(s: *const SpawnEvent) -> [u8; COMM_LEN] {
    let by_exec = config(&CONFIG.metrics) & mode::BY_EXEC != 0;
    let comm = unsafe {
        if by_exec && has(s, sp::EXECED) && (*s).comm_after[0] != 0 {
            (*s).comm_after
        } else if (*s).parent_comm[0] != 0 {
            (*s).parent_comm
        } else {
            (*s).comm_before
        }
    };
    if holds_slot(&LABELS, &comm) {
        return comm;
    }
    if let Some(st) = METRICS_STATE.get_ptr_mut(0) {
        unsafe { (*st).capped = 1 };
    }
    OTHER
}

/// Whether `key` has one of the bounded label slots of `map`, taking one
/// if it is new and the map has room.
#[inline(always)]
fn holds_slot<K>(map: &HashMap<K, u32>, key: &K) -> bool {
    unsafe { map.get(key) }.is_some()
        || map.insert(key, &0, BPF_NOEXIST).is_ok()
        // Taken by another CPU at the same moment (not full after all).
        || unsafe { map.get(key) }.is_some()
}

/// The label of the current task's cgroup with `--cgroup-label` (0
/// without): the low half of its id, which no other live cgroup shares
/// (ids count up), or [`OTHER_CGROUP`] once every slot is taken.
#[inline(always)]
pub fn cgroup_slot() -> u32 {
    if config(&CONFIG.metrics) & mode::BY_CGROUP == 0 {
        return 0;
    }
    let id = unsafe { bpf_get_current_cgroup_id() };
    if holds_slot(&CGROUPS, &id) {
        return id as u32;
    }
    if let Some(st) = METRICS_STATE.get_ptr_mut(0) {
        unsafe { (*st).cgroups_capped = 1 };
    }
    OTHER_CGROUP
}

#[inline(always)]
fn no_room() {
    if let Some(st) = METRICS_STATE.get_ptr_mut(0) {
        add(unsafe { &raw mut (*st).no_room }, 1);
    }
}

/// The series of `key`, made (zeroed) when new.
#[inline(always)]
fn series(key: &SeriesKey) -> Option<*mut Series> {
    if let Some(v) = SERIES.get_ptr_mut(key) {
        return Some(v);
    }
    let zero = ZERO.get_ptr(0)?;
    let _ = SERIES.insert(key, unsafe { &*zero }, BPF_NOEXIST);
    let v = SERIES.get_ptr_mut(key);
    if v.is_none() {
        no_room();
    }
    v
}

/// Adds one duration to the series' histogram of stage `st`.
#[inline(always)]
fn observe(series: *mut Series, st: u16, ns: u64) {
    unsafe {
        let Some(h) = (*series).hists.get_mut(st as usize) else {
            return;
        };
        let h: *mut Hist = h;
        // No count: it is the sum of the buckets, which userspace adds up
        // (one locked add fewer per stage, ten per spawn).
        add(&raw mut (*h).sum_ns, ns);
        if let Some(b) = (*h).buckets.get_mut(bucket(ns)) {
            add(b, 1);
        }
    }
}

/// A failed exec attempt (`ret` < 0).
#[inline(always)]
pub fn exec_failed(ret: i64) {
    if ret >= 0 {
        return;
    }
    let errno = (-ret).min(ERRNO_SLOTS as i64 - 1) as u32;
    if let Some(n) = EXEC_ERRNO.get_ptr_mut(errno) {
        add(n, 1);
    }
}
