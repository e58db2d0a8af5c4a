//! execve/execveat attempts. A PATH search shows up as a run of failed
//! attempts (ENOENT) before the one that succeeds.
use aya_ebpf::{helpers::bpf_probe_read_user, macros::tracepoint, programs::TracePointContext};
use spawnprof_common::{kind, syscall};

use super::field;
use crate::{
    emit::{Text, current, mark, now, text_mark, traced},
    maps::{CONFIG, config},
};

/// Hard ceiling the verifier sees; `CONFIG.max_exec_ptrs` lowers it.
const MAX_PTRS: u32 = 4096;

/// Counts the entries of a NULL-terminated user array of pointers
/// (argv/envp) without reading the strings: values are never recorded.
#[inline(always)]
fn count_ptrs(array: u64) -> u64 {
    if array == 0 {
        return 0;
    }
    let limit = config(&CONFIG.max_exec_ptrs);
    let base = array as *const u64;
    let mut n: u32 = 0;
    while n < MAX_PTRS && n < limit {
        match unsafe { bpf_probe_read_user(base.wrapping_add(n as usize)) } {
            Ok(0) | Err(_) => break,
            Ok(_) => n += 1,
        }
    }
    n as u64
}

#[inline(always)]
fn enter(ctx: &TracePointContext, filename: u32, argv: u32, envp: u32, which: u64) -> u32 {
    let ts = now();
    let (tid, tgid) = current();
    if traced(tgid).is_none() {
        return 0;
    }
    let path = field::<u64>(ctx, filename).unwrap_or(0);
    let envc = count_ptrs(field::<u64>(ctx, envp).unwrap_or(0));
    let argc = count_ptrs(field::<u64>(ctx, argv).unwrap_or(0));
    text_mark(
        ts,
        kind::EXEC_ENTER,
        tid,
        tgid,
        envc,
        argc,
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
        config(&CONFIG.tp.sys_enter_execve_argv),
        config(&CONFIG.tp.sys_enter_execve_envp),
        syscall::EXECVE,
    )
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    enter(
        &ctx,
        config(&CONFIG.tp.sys_enter_execveat_filename),
        config(&CONFIG.tp.sys_enter_execveat_argv),
        config(&CONFIG.tp.sys_enter_execveat_envp),
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
