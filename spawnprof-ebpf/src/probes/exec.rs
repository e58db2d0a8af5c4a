//! execve/execveat attempts. A PATH search shows up as a run of failed
//! attempts (ENOENT) before the one that succeeds.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use spawnprof_common::{kind, syscall};

use super::field;
use crate::{
    emit::{Text, current, mark, now, text_mark, traced},
    maps::{CONFIG, config},
};

#[inline(always)]
fn enter(ctx: &TracePointContext, filename: u32, which: u64) -> u32 {
    let ts = now();
    let (tid, tgid) = current();
    if traced(tgid).is_none() {
        return 0;
    }
    // Argument and environment counts come from the kernel's own count at
    // exec done (linux_binprm), not from walking user arrays here: a walk
    // of thousands of pointers is both slow and too branchy for the verifier.
    let path = field::<u64>(ctx, filename).unwrap_or(0);
    text_mark(
        ts,
        kind::EXEC_ENTER,
        tid,
        tgid,
        0,
        0,
        which,
        Text::User(path as *const u8),
    );
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
    let ts = now();
    let (tid, tgid) = current();
    if traced(tgid).is_none() {
        return 0;
    }
    let ret = field::<i64>(ctx, config(&CONFIG.tp.sys_exit_ret)).unwrap_or(0);
    mark(ts, kind::EXEC_EXIT, tid, tgid, ret as u64, 0, 0);
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
