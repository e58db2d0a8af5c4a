//! dup_mmap from tracepoints alone: inside a fork of a process with its own
//! mm, the first write lock taken on the parent's mm is dup_mmap's, the
//! next one (on the new mm) starts the copy, and the parent's release ends
//! it. Only threads inside a traced clone are looked at.
//!
//! These events fire on every mmap lock operation of the machine. While no
//! traced clone that copies an mm is in flight (`FORKS_IN_FLIGHT`), each
//! returns after one load; the raw-tracepoint variants are preferred because
//! they skip building the classic record (which looks up the mm's memory
//! cgroup) that the kernel makes before any classic program can return.
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use spawnprof_common::ts;

use super::field;
use crate::{
    emit::{current, now},
    maps::{CONFIG, Gate, armed, config},
    spawn::clones,
};

const IDLE: u8 = 0;
const WAITING: u8 = 1;
const HELD: u8 = 2;
const DONE: u8 = 3;

/// The first write lock a traced clone takes is dup_mmap's, on the
/// parent's mm: its wait starts. dup_mmap write-locks the new mm next, as
/// soon as it holds the parent's, so that second lock marks the copy's
/// start. Two tracepoints instead of three (no acquire_returned): one
/// program fewer per mmap lock of the machine, and one fewer to re-patch
/// on each park and return.
#[inline(always)]
fn start_locking(mm: u64, write: bool) -> u32 {
    if !armed(Gate::ForksInFlight) {
        return 0;
    }
    let t = now();
    let Some(state) = clones::get(current().0) else {
        return 0;
    };
    if !write {
        return 0;
    }
    unsafe {
        match (*state).lock_phase {
            IDLE => {
                (*state).lock_mm = mm;
                (*state).lock_phase = WAITING;
                (*state).ts[ts::MM_LOCK_WAIT] = t;
            }
            WAITING if (*state).lock_mm != mm => {
                (*state).lock_phase = HELD;
                (*state).ts[ts::MM_COPY_START] = t;
            }
            _ => {}
        }
    }
    0
}

/// The parent's mm unlocked: the copy ends (also from WAITING, on a kernel
/// whose dup_mmap took no second lock: the copy is timed, its wait not).
#[inline(always)]
fn released(mm: u64, write: bool) -> u32 {
    if !armed(Gate::ForksInFlight) {
        return 0;
    }
    let t = now();
    let Some(state) = clones::get(current().0) else {
        return 0;
    };
    let phase = unsafe { (*state).lock_phase };
    if (phase != WAITING && phase != HELD) || unsafe { (*state).lock_mm } != mm || !write {
        return 0;
    }
    unsafe {
        (*state).lock_phase = DONE;
        (*state).ts[ts::MM_COPY_END] = t;
    }
    0
}

// Raw tracepoints: TP_PROTO(struct mm_struct *mm, bool write), and before
// about 6.14 with a `const char *memcg_path` before `write` (the `_memcg`
// programs). The loader attaches the pair whose prototype the kernel's BTF
// declares: a raw program reads by position.

#[inline(always)]
fn flag(ctx: &RawTracePointContext, n: usize) -> bool {
    ctx.arg::<u64>(n) & 1 != 0
}

#[raw_tracepoint(tracepoint = "mmap_lock_start_locking")]
pub fn raw_mmap_lock_start_locking(ctx: RawTracePointContext) -> u32 {
    start_locking(ctx.arg(0), flag(&ctx, 1))
}

#[raw_tracepoint(tracepoint = "mmap_lock_released")]
pub fn raw_mmap_lock_released(ctx: RawTracePointContext) -> u32 {
    released(ctx.arg(0), flag(&ctx, 1))
}

#[raw_tracepoint(tracepoint = "mmap_lock_start_locking")]
pub fn raw_mmap_lock_start_locking_memcg(ctx: RawTracePointContext) -> u32 {
    start_locking(ctx.arg(0), flag(&ctx, 2))
}

#[raw_tracepoint(tracepoint = "mmap_lock_released")]
pub fn raw_mmap_lock_released_memcg(ctx: RawTracePointContext) -> u32 {
    released(ctx.arg(0), flag(&ctx, 2))
}

// Classic tracepoints, where raw ones are unavailable.

#[inline(always)]
fn classic(ctx: &TracePointContext) -> (u64, bool) {
    let mm = field::<u64>(ctx, config(&CONFIG.tp.mmap_lock_mm)).unwrap_or(0);
    let write = field::<u8>(ctx, config(&CONFIG.tp.mmap_lock_write)).unwrap_or(0) != 0;
    (mm, write)
}

#[tracepoint]
pub fn mmap_lock_start_locking(ctx: TracePointContext) -> u32 {
    let (mm, write) = classic(&ctx);
    start_locking(mm, write)
}

#[tracepoint]
pub fn mmap_lock_released(ctx: TracePointContext) -> u32 {
    let (mm, write) = classic(&ctx);
    released(mm, write)
}
