//! Spawn syscalls: entry starts a spawn in the parent; the return closes the
//! parent's side (or, with ret 0, is the child's first step in user space).
//!
//! Two tiers: fentry/fexit or kprobe/kretprobe on `kernel_clone`, which all
//! of clone, clone3, fork and vfork go through, and the syscall tracepoints.
//! The kernel-function tier is preferred because attaching any syscall
//! tracepoint sends every syscall of every task through the slow entry path
//! (a glibc posix_spawn child alone makes about 120 before its exec, mostly
//! rt_sigaction). It does not see the child's own return to user space; its
//! first run stands in for it.
use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, bpf_probe_read_user},
    macros::{fentry, fexit, kprobe, kretprobe, tracepoint},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};
use spawnprof_common::{NO_FIELD, SIGNAL_IN_FLAGS, clone_flags as cf, lost, syscall, ts};

use super::field;
use crate::{
    emit::{count_lost, current, now, send_fork_wake},
    maps::{CONFIG, Gate, PARKED, arm, config, fork_began},
    scope::{traced, traces_spawns},
    spawn, task,
};

/// Only a clone that copies the mm runs dup_mmap: a traced one in flight
/// opens the mmap lock probes' gate.
#[inline(always)]
fn copies_mm(flags: u64) -> bool {
    flags & cf::CLONE_VM == 0
}

/// A traced thread entered clone syscall `which`. `args` reads its flags
/// and exit signal, only once the thread is known to be traced: every
/// thread the machine creates passes here.
#[inline(always)]
fn enter(which: u16, args: impl FnOnce() -> (u64, u8)) -> u32 {
    let t = now();
    let (tid, tgid) = current();
    if !traces_spawns(tgid) {
        return 0;
    }
    let (flags, exit_signal) = args();
    if copies_mm(flags) {
        arm(Gate::ForksSeen);
        fork_began();
    }
    let Some(c) = spawn::clones::start(tid) else {
        count_lost(lost::CLONE_NO_ROOM);
        return 0;
    };
    unsafe {
        (*c).clone_flags = flags;
        (*c).syscall = which;
        (*c).exit_signal = exit_signal;
        (*c).comm = task::process_comm(tid, tgid);
        (*c).ts[ts::CLONE_ENTER] = t;
    }
    if copies_mm(flags) {
        let parked = PARKED.get(0).copied().unwrap_or(0);
        if parked != 0 {
            unsafe { (*c).unwatched = parked as u8 };
            send_fork_wake(tgid);
        }
        arm(Gate::ForksInFlight);
    }
    0
}

#[tracepoint]
pub fn sys_enter_clone(ctx: TracePointContext) -> u32 {
    enter(syscall::CLONE, || {
        let flags = field::<u64>(&ctx, config(&CONFIG.tp.sys_enter_clone_flags)).unwrap_or(0);
        (flags, SIGNAL_IN_FLAGS)
    })
}

#[tracepoint]
pub fn sys_enter_clone3(ctx: TracePointContext) -> u32 {
    // clone3 passes a struct clone_args { u64 flags, pidfd, child_tid,
    // parent_tid, exit_signal, ... }, read with one copy. The exit signal
    // stays apart: clone3's flags use the low byte clone() keeps it in
    // (CLONE_NEWTIME).
    enter(syscall::CLONE3, || {
        let Some(uargs) = field::<u64>(&ctx, config(&CONFIG.tp.sys_enter_clone3_uargs)) else {
            return (0, SIGNAL_IN_FLAGS);
        };
        match unsafe { bpf_probe_read_user(uargs as *const [u64; 5]) } {
            Ok(args) => (args[0], args[4] as u8),
            Err(_) => (0, 0),
        }
    })
}

#[tracepoint]
pub fn sys_enter_fork(_ctx: TracePointContext) -> u32 {
    const SIGCHLD: u64 = 17;
    enter(syscall::FORK, || (SIGCHLD, SIGNAL_IN_FLAGS))
}

#[tracepoint]
pub fn sys_enter_vfork(_ctx: TracePointContext) -> u32 {
    const SIGCHLD: u64 = 17;
    enter(syscall::VFORK, || {
        (cf::CLONE_VM | cf::CLONE_VFORK | SIGCHLD, SIGNAL_IN_FLAGS)
    })
}

#[inline(always)]
fn exit(ctx: &TracePointContext) -> u32 {
    match field::<i64>(ctx, config(&CONFIG.tp.sys_exit_ret)) {
        Some(ret) => returned(ret),
        None => 0,
    }
}

/// A clone returned `ret` in the calling thread: the child's pid to the
/// parent, 0 to the child (syscall tracepoints only).
#[inline(always)]
fn returned(ret: i64) -> u32 {
    let t = now();
    let (tid, tgid) = current();
    if ret != 0 {
        spawn::clone_returned(t, tid, ret);
        return 0;
    }
    // The new task's own return to user space.
    if traced(tgid).is_some() {
        spawn::child_returned(t, tid);
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

/// `pid_t kernel_clone(struct kernel_clone_args *args)`: the flags and the
/// exit signal, read through the offsets from the kernel's BTF.
#[inline(always)]
fn kernel_clone_enter(args: *const u8) -> u32 {
    let flags_off = config(&CONFIG.kernel.clone_args_flags);
    let signal_off = config(&CONFIG.kernel.clone_args_exit_signal);
    if flags_off == NO_FIELD || signal_off == NO_FIELD {
        return 0;
    }
    enter(syscall::KERNEL_CLONE, || unsafe {
        (
            bpf_probe_read_kernel(args.add(flags_off as usize) as *const u64).unwrap_or(0),
            bpf_probe_read_kernel(args.add(signal_off as usize) as *const i32).unwrap_or(0) as u8,
        )
    })
}

#[fentry(function = "kernel_clone")]
pub fn fentry_kernel_clone(ctx: FEntryContext) -> u32 {
    kernel_clone_enter(ctx.arg::<u64>(0) as *const u8)
}

/// fexit's context holds the arguments, then the return value.
#[fexit(function = "kernel_clone")]
pub fn fexit_kernel_clone(ctx: FExitContext) -> u32 {
    returned(ctx.arg::<i32>(1) as i64)
}

#[kprobe]
pub fn kprobe_kernel_clone(ctx: ProbeContext) -> u32 {
    match ctx.arg::<u64>(0) {
        Some(args) => kernel_clone_enter(args as *const u8),
        None => 0,
    }
}

#[kretprobe]
pub fn kretprobe_kernel_clone(ctx: RetProbeContext) -> u32 {
    returned(ctx.ret::<i32>() as i64)
}
