//! dup_mmap from tracepoints alone: inside a fork of a process with its own
//! mm, the first write lock taken on the parent's mm is dup_mmap's, and its
//! release ends the copy. Only threads inside a traced clone are looked at.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use spawnprof_common::kind;

use super::field;
use crate::{
    emit::{current, mark, now},
    maps::{CLONES, CONFIG, config},
};

const IDLE: u64 = 0;
const WAITING: u64 = 1;
const HELD: u64 = 2;
const DONE: u64 = 3;

#[inline(always)]
fn is_write(ctx: &TracePointContext) -> bool {
    field::<u8>(ctx, config(&CONFIG.tp.mmap_lock_write)).unwrap_or(0) != 0
}

#[tracepoint]
pub fn mmap_lock_start_locking(ctx: TracePointContext) -> u32 {
    let ts = now();
    let (tid, tgid) = current();
    let Some(state) = CLONES.get_ptr_mut(tid) else {
        return 0;
    };
    if !is_write(&ctx) || unsafe { (*state).lock_phase } != IDLE {
        return 0;
    }
    let mm = field::<u64>(&ctx, config(&CONFIG.tp.mmap_lock_mm)).unwrap_or(0);
    unsafe {
        (*state).lock_mm = mm;
        (*state).lock_phase = WAITING;
    }
    mark(ts, kind::MM_LOCK_WAIT, tid, tgid, mm, 0, 0);
    0
}

#[tracepoint]
pub fn mmap_lock_acquire_returned(ctx: TracePointContext) -> u32 {
    let ts = now();
    let (tid, tgid) = current();
    let Some(state) = CLONES.get_ptr_mut(tid) else {
        return 0;
    };
    let mm = field::<u64>(&ctx, config(&CONFIG.tp.mmap_lock_mm)).unwrap_or(0);
    if unsafe { (*state).lock_phase != WAITING || (*state).lock_mm != mm } || !is_write(&ctx) {
        return 0;
    }
    let success = field::<u8>(&ctx, config(&CONFIG.tp.mmap_lock_success)).unwrap_or(1);
    unsafe { (*state).lock_phase = if success != 0 { HELD } else { DONE } };
    mark(ts, kind::MM_LOCK_ACQUIRED, tid, tgid, mm, success as u64, 0);
    0
}

#[tracepoint]
pub fn mmap_lock_released(ctx: TracePointContext) -> u32 {
    let ts = now();
    let (tid, tgid) = current();
    let Some(state) = CLONES.get_ptr_mut(tid) else {
        return 0;
    };
    let mm = field::<u64>(&ctx, config(&CONFIG.tp.mmap_lock_mm)).unwrap_or(0);
    if unsafe { (*state).lock_phase != HELD || (*state).lock_mm != mm } || !is_write(&ctx) {
        return 0;
    }
    unsafe { (*state).lock_phase = DONE };
    mark(ts, kind::MM_LOCK_RELEASED, tid, tgid, mm, 0, 0);
    0
}
