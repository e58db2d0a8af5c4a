//! execve/execveat attempts. A PATH search shows up as a run of failed
//! attempts (ENOENT) before the one that succeeds.
//!
//! Two tiers, as for clone: fentry/fexit or kprobe/kretprobe on the syscall
//! functions `__x64_sys_execve(const struct pt_regs *)` and
//! `__x64_sys_execveat` (`__arm64_sys_*` on arm64: no syscall-tracepoint
//! tax; the path is the first, resp. second, syscall argument in the saved
//! registers), and the syscall tracepoints. The inner functions (do_execveat_common, bprm_execve) are
//! inlined or miss early failures on recent kernels.
use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe, tracepoint},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};
use spawnprof_common::syscall;

use super::{field, syscall_arg};
use crate::{
    emit::now,
    maps::{CONFIG, config},
    spawn,
};

#[inline(always)]
fn enter(ctx: &TracePointContext, filename: u32, which: u16) -> u32 {
    enter_path(field::<u64>(ctx, filename).unwrap_or(0), which)
}

/// An exec attempt of the user-space path at `path`. The path is read at
/// the return, once the kernel has copied it (and so faulted its page in),
/// and only for attempts the record does not hold. Argument and environment
/// counts come from the kernel's own count at exec done (linux_binprm), not
/// from walking user arrays here.
#[inline(always)]
fn enter_path(path: u64, which: u16) -> u32 {
    spawn::exec_entered(now(), path, which);
    0
}

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    enter(
        &ctx,
        config(&CONFIG.tp.sys_enter_execve_filename),
        syscall::EXECVE,
    )
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    enter(
        &ctx,
        config(&CONFIG.tp.sys_enter_execveat_filename),
        syscall::EXECVEAT,
    )
}

#[inline(always)]
fn exit(ctx: &TracePointContext) -> u32 {
    returned(field::<i64>(ctx, config(&CONFIG.tp.sys_exit_ret)).unwrap_or(0))
}

#[inline(always)]
fn returned(ret: i64) -> u32 {
    spawn::exec_returned(now(), ret);
    0
}

#[tracepoint]
pub fn sys_exit_execve(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_execveat(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}

#[inline(always)]
fn regs_enter(regs: u64, which: u16) -> u32 {
    // execve(path, argv, envp); execveat(dirfd, path, argv, envp, flags).
    let reg = if which == syscall::EXECVEAT {
        config(&CONFIG.kernel.regs_arg1)
    } else {
        config(&CONFIG.kernel.regs_arg0)
    };
    match syscall_arg(regs, reg) {
        Some(path) => enter_path(path, which),
        None => 0,
    }
}

#[cfg_attr(bpf_target_arch = "aarch64", fentry(function = "__arm64_sys_execve"))]
#[cfg_attr(
    not(bpf_target_arch = "aarch64"),
    fentry(function = "__x64_sys_execve")
)]
pub fn fentry_execve(ctx: FEntryContext) -> u32 {
    regs_enter(ctx.arg(0), syscall::EXECVE)
}

#[cfg_attr(bpf_target_arch = "aarch64", fexit(function = "__arm64_sys_execve"))]
#[cfg_attr(not(bpf_target_arch = "aarch64"), fexit(function = "__x64_sys_execve"))]
pub fn fexit_execve(ctx: FExitContext) -> u32 {
    returned(ctx.arg::<i64>(1))
}

#[cfg_attr(bpf_target_arch = "aarch64", fentry(function = "__arm64_sys_execveat"))]
#[cfg_attr(
    not(bpf_target_arch = "aarch64"),
    fentry(function = "__x64_sys_execveat")
)]
pub fn fentry_execveat(ctx: FEntryContext) -> u32 {
    regs_enter(ctx.arg(0), syscall::EXECVEAT)
}

#[cfg_attr(bpf_target_arch = "aarch64", fexit(function = "__arm64_sys_execveat"))]
#[cfg_attr(
    not(bpf_target_arch = "aarch64"),
    fexit(function = "__x64_sys_execveat")
)]
pub fn fexit_execveat(ctx: FExitContext) -> u32 {
    returned(ctx.arg::<i64>(1))
}

#[kprobe]
pub fn kprobe_execve(ctx: ProbeContext) -> u32 {
    regs_enter(ctx.arg(0).unwrap_or(0), syscall::EXECVE)
}

#[kretprobe]
pub fn kretprobe_execve(ctx: RetProbeContext) -> u32 {
    returned(ctx.ret::<i64>())
}

#[kprobe]
pub fn kprobe_execveat(ctx: ProbeContext) -> u32 {
    regs_enter(ctx.arg(0).unwrap_or(0), syscall::EXECVEAT)
}

#[kretprobe]
pub fn kretprobe_execveat(ctx: RetProbeContext) -> u32 {
    returned(ctx.ret::<i64>())
}
