//! Reaps: a parent's wait returning a child that exited, which ends the
//! child's record (its zombie is gone).
//!
//! wait4/waitpid return the reaped pid. waitid (systemd, pidfd users)
//! returns 0 and writes the pid into the caller's siginfo, and reports
//! without reaping under WNOWAIT, so its probes need the syscall's
//! arguments at return: the fentry tier reads them from the saved registers
//! the syscall function (`__x64_sys_waitid`, `__arm64_sys_waitid`) gets; the kprobe and tracepoint tiers keep them from
//! the entry in `WAITIDS`. Both waits also report stopped and continued
//! children; waitid's are filtered here by si_code, wait4's in userspace
//! (a "reap" before the child's exit).
use super::{field, syscall_arg};
use crate::{
    emit::{current, now},
    maps::{CONFIG, Gate, armed, config},
    scope::traced,
    spawn,
};
use aya_ebpf::{
    helpers::bpf_probe_read_user,
    macros::{fexit, kprobe, kretprobe, map, tracepoint},
    maps::HashMap,
    programs::{FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};

/// `waitid` option: report, but leave the child waitable (not a reap).
const WNOWAIT: u64 = 0x0100_0000;
/// siginfo `si_code`s of a child that is gone: exited, killed, dumped core.
const CLD_EXITED: i32 = 1;
const CLD_DUMPED: i32 = 3;
/// Offsets in the user's `siginfo_t` for SIGCHLD (the same on every 64-bit
/// Linux ABI): si_code after si_signo and si_errno, si_pid after padding.
const SI_CODE: usize = 8;
const SI_PID: usize = 16;

/// A waitid in progress, by tid: (siginfo pointer, options).
#[map]
static WAITIDS: HashMap<u32, [u64; 2]> = HashMap::with_max_entries(4096, 0);

/// wait4 returned `ret`: the pid of the child it reaped (or that stopped or
/// continued), when positive. Any process's wait counts: an orphan is
/// reaped by its namespace's init or a subreaper, which need not be traced.
#[inline(always)]
fn wait4_returned(ret: i64) -> u32 {
    if ret > 0 && armed(Gate::Zombies) {
        spawn::reaped(now(), ret as u32);
    }
    0
}

#[tracepoint]
pub fn sys_exit_wait4(ctx: TracePointContext) -> u32 {
    match field::<i64>(&ctx, config(&CONFIG.tp.sys_exit_ret)) {
        Some(ret) => wait4_returned(ret),
        None => 0,
    }
}

/// `long kernel_wait4(pid_t, int __user *, int, struct rusage *)`, behind
/// wait4 and waitpid: no syscall tracepoint needed. fexit's context holds
/// the four arguments, then the return value.
#[fexit(function = "kernel_wait4")]
pub fn fexit_kernel_wait4(ctx: FExitContext) -> u32 {
    wait4_returned(ctx.arg::<i64>(4))
}

#[kretprobe]
pub fn kretprobe_kernel_wait4(ctx: RetProbeContext) -> u32 {
    wait4_returned(ctx.ret::<i64>())
}

/// waitid returned `ret` having been given `infop` and `options`.
#[inline(always)]
fn waitid_returned(t: u64, ret: i64, infop: u64, options: u64) {
    if ret != 0 || infop == 0 || options & WNOWAIT != 0 {
        return;
    }
    let info = infop as *const u8;
    let (code, pid) = unsafe {
        (
            bpf_probe_read_user(info.add(SI_CODE) as *const i32).unwrap_or(0),
            bpf_probe_read_user(info.add(SI_PID) as *const i32).unwrap_or(0),
        )
    };
    // si_pid 0: WNOHANG and nothing to report.
    if pid > 0 && (CLD_EXITED..=CLD_DUMPED).contains(&code) {
        spawn::reaped(t, pid as u32);
    }
}

/// Entry of the kprobe and tracepoint tiers: keep the arguments for the
/// return, while some spawned process waits to be reaped or when a traced
/// process waits (a blocking wait starts before its child exits).
#[inline(always)]
fn waitid_enter(infop: u64, options: u64) -> u32 {
    let (tid, tgid) = current();
    if armed(Gate::Zombies) || traced(tgid).is_some() {
        let _ = WAITIDS.insert(tid, [infop, options], 0);
    }
    0
}

#[inline(always)]
fn waitid_exit(ret: i64) -> u32 {
    let t = now();
    let tid = current().0;
    let Some(&[infop, options]) = (unsafe { WAITIDS.get(tid) }) else {
        return 0;
    };
    let _ = WAITIDS.remove(tid);
    waitid_returned(t, ret, infop, options);
    0
}

#[tracepoint]
pub fn sys_enter_waitid(ctx: TracePointContext) -> u32 {
    let tp = &CONFIG.tp;
    match (
        field::<u64>(&ctx, config(&tp.sys_enter_waitid_infop)),
        field::<u64>(&ctx, config(&tp.sys_enter_waitid_options)),
    ) {
        (Some(infop), Some(options)) => waitid_enter(infop, options),
        _ => 0,
    }
}

#[tracepoint]
pub fn sys_exit_waitid(ctx: TracePointContext) -> u32 {
    match field::<i64>(&ctx, config(&CONFIG.tp.sys_exit_ret)) {
        Some(ret) => waitid_exit(ret),
        None => 0,
    }
}

/// (infop, options) from the saved registers the syscall function is handed
/// (`__x64_sys_waitid(const struct pt_regs *)`): waitid(which, pid, infop,
/// options, ru), so its third and fourth arguments (x86-64: dx and r10).
/// They are still there at return.
#[inline(always)]
fn waitid_args(regs: u64) -> Option<(u64, u64)> {
    let k = &CONFIG.kernel;
    Some((
        syscall_arg(regs, config(&k.regs_arg2))?,
        syscall_arg(regs, config(&k.regs_arg3))?,
    ))
}

#[cfg_attr(bpf_target_arch = "aarch64", fexit(function = "__arm64_sys_waitid"))]
#[cfg_attr(not(bpf_target_arch = "aarch64"), fexit(function = "__x64_sys_waitid"))]
pub fn fexit_waitid(ctx: FExitContext) -> u32 {
    if !armed(Gate::Zombies) {
        return 0;
    }
    if let Some((infop, options)) = waitid_args(ctx.arg(0)) {
        waitid_returned(now(), ctx.arg::<i64>(1), infop, options);
    }
    0
}

#[kprobe]
pub fn kprobe_waitid(ctx: ProbeContext) -> u32 {
    match waitid_args(ctx.arg::<u64>(0).unwrap_or(0)) {
        Some((infop, options)) => waitid_enter(infop, options),
        None => 0,
    }
}

#[kretprobe]
pub fn kretprobe_waitid(ctx: RetProbeContext) -> u32 {
    waitid_exit(ctx.ret::<i64>())
}
