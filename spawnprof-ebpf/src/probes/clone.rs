//! Spawn syscalls: entry starts a spawn in the parent; the return closes the
//! parent's side (or, with ret 0, is the child's first step in user space).
use aya_ebpf::{helpers::bpf_probe_read_user, macros::tracepoint, programs::TracePointContext};
use spawnprof_common::{CloneState, clone_flags as cf, kind, syscall};

use super::field;
use crate::{
    emit::{current, mark, now, traced, traces_spawns},
    maps::{CLONES, CONFIG, Gate, arm, config, disarm},
};

#[inline(always)]
fn enter(flags: u64, which: u64) -> u32 {
    let ts = now();
    let (tid, tgid) = current();
    if !traces_spawns(tgid) {
        return 0;
    }
    // Only a clone that copies the mm runs dup_mmap: it alone arms the
    // mmap lock probes.
    let copies_mm = flags & cf::CLONE_VM == 0;
    let state = CloneState {
        clone_flags: flags,
        armed: copies_mm as u32,
        ..CloneState::default()
    };
    if CLONES.insert(tid, state, 0).is_ok() {
        if copies_mm {
            arm(Gate::ForksInFlight);
        }
        mark(ts, kind::CLONE_ENTER, tid, tgid, flags, which, 0);
    }
    0
}

#[tracepoint]
pub fn sys_enter_clone(ctx: TracePointContext) -> u32 {
    let flags = field::<u64>(&ctx, config(&CONFIG.tp.sys_enter_clone_flags)).unwrap_or(0);
    enter(flags, syscall::CLONE)
}

#[tracepoint]
pub fn sys_enter_clone3(ctx: TracePointContext) -> u32 {
    // clone3 passes a struct clone_args { u64 flags, pidfd, child_tid,
    // parent_tid, exit_signal, ... }. The exit signal is folded into the low
    // byte, where clone() carries it, so both syscalls read alike.
    let Some(uargs) = field::<u64>(&ctx, config(&CONFIG.tp.sys_enter_clone3_uargs)) else {
        return enter(0, syscall::CLONE3);
    };
    let args = uargs as *const u64;
    let flags = unsafe { bpf_probe_read_user(args) }.unwrap_or(0);
    let signal = unsafe { bpf_probe_read_user(args.wrapping_add(4)) }.unwrap_or(0);
    enter(flags | (signal & cf::CSIGNAL), syscall::CLONE3)
}

#[tracepoint]
pub fn sys_enter_fork(_ctx: TracePointContext) -> u32 {
    const SIGCHLD: u64 = 17;
    enter(SIGCHLD, syscall::FORK)
}

#[tracepoint]
pub fn sys_enter_vfork(_ctx: TracePointContext) -> u32 {
    const SIGCHLD: u64 = 17;
    enter(cf::CLONE_VM | cf::CLONE_VFORK | SIGCHLD, syscall::VFORK)
}

#[inline(always)]
fn exit(ctx: &TracePointContext) -> u32 {
    let ts = now();
    let (tid, tgid) = current();
    let Some(ret) = field::<i64>(ctx, config(&CONFIG.tp.sys_exit_ret)) else {
        return 0;
    };
    if ret == 0 {
        // The new task's own return to user space.
        if traced(tgid).is_some() {
            mark(ts, kind::CHILD_RETURN, tid, tgid, 0, 0, 0);
        }
        return 0;
    }
    if let Some(armed) = unsafe { CLONES.get(tid) }.map(|s| s.armed) {
        if CLONES.remove(tid).is_ok() && armed != 0 {
            disarm(Gate::ForksInFlight);
        }
        mark(ts, kind::CLONE_EXIT, tid, tgid, ret as u64, 0, 0);
    }
    0
}

#[tracepoint]
pub fn sys_exit_clone(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_clone3(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_fork(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_vfork(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
