//! Scheduler and process-lifetime events: the fork completing, the child
//! being woken and first run, the exec landing, the exit and the release.
//!
//! The sched and task events of every spawn come in two forms. The raw
//! tracepoint is preferred: the kernel builds no record before the program
//! runs, and each program has its own recursion guard, where a classic
//! tracepoint program is skipped while any other BPF program runs on that
//! CPU (a lost fork or exit). Task fields come from BTF offsets there.
use aya_ebpf::{
    EbpfContext as _,
    macros::{fentry, kprobe, raw_tracepoint, tracepoint},
    programs::{FEntryContext, ProbeContext, RawTracePointContext, TracePointContext},
};
use spawnprof_common::{
    FAULTS_UNKNOWN, TracedProc, UNKNOWN_U32, capture as capture_bits, rec, traced as tflags, ts,
};

use super::field;
use crate::{
    emit::{cpu, current, now, send_notice, send_text},
    maps::{CONFIG, Gate, armed, config},
    scope::traced,
    spawn::{self, exec::Image},
    task,
};

/// (faults, CoW faults) of the current traced process, for its record.
#[inline(always)]
fn faults_of(p: *mut TracedProc) -> (u32, u32) {
    let faults = if config(&CONFIG.count_every_fault) != 0 {
        Some(unsafe { (*p).faults })
    } else {
        task::process_faults()
    };
    let cap = |v: u64| v.min(FAULTS_UNKNOWN as u64 - 1) as u32;
    (
        faults.map_or(FAULTS_UNKNOWN, cap),
        cap(unsafe { (*p).cow_faults }),
    )
}

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    match field::<i32>(&ctx, config(&CONFIG.tp.fork_child_pid)) {
        Some(child) => fork_done(child as u32),
        None => 0,
    }
}

/// TP_PROTO(struct task_struct *parent, struct task_struct *child)
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn raw_sched_process_fork(ctx: RawTracePointContext) -> u32 {
    match task::pid_of(ctx.arg(1)) {
        Some(child) => fork_done(child),
        None => 0,
    }
}

/// The current (parent) thread's fork of `child` completed.
#[inline(always)]
fn fork_done(child: u32) -> u32 {
    let t = now();
    let (_, tgid) = current();
    let Some(parent) = traced(tgid) else {
        return 0;
    };
    if unsafe { (*parent).flags } & tflags::SPAWNS != 0 {
        spawn::forked(t, child, cpu(), parent);
    }
    0
}

#[tracepoint]
pub fn sched_wakeup_new(ctx: TracePointContext) -> u32 {
    match field::<i32>(&ctx, config(&CONFIG.tp.wakeup_new_pid)) {
        Some(child) => wakeup_new(child as u32),
        None => 0,
    }
}

/// TP_PROTO(struct task_struct *p)
#[raw_tracepoint(tracepoint = "sched_wakeup_new")]
pub fn raw_sched_wakeup_new(ctx: RawTracePointContext) -> u32 {
    match task::pid_of(ctx.arg(0)) {
        Some(child) => wakeup_new(child),
        None => 0,
    }
}

/// Fires once per task the machine creates, right after its fork: a lookup.
#[inline(always)]
fn wakeup_new(child: u32) -> u32 {
    let t = now();
    if let Some(s) = crate::maps::spawn_table().get(child) {
        spawn::stamp(s, ts::WAKEUP_NEW, t);
    }
    0
}

#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    if !armed(Gate::AwaitingFirstRun) {
        return 0;
    }
    match field::<i32>(&ctx, config(&CONFIG.tp.switch_next_pid)) {
        Some(next) if spawn::may_await(next as u32) => first_run(next as u32),
        _ => 0,
    }
}

/// The raw tracepoint is preferred: it has per-program recursion protection,
/// so it is not skipped when another BPF user holds the CPU-wide guard that
/// classic tracepoint programs share (a context switch in the middle of a BPF
/// map syscall, for instance).
/// TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state)
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn raw_sched_switch(ctx: RawTracePointContext) -> u32 {
    if !armed(Gate::AwaitingFirstRun) {
        return 0;
    }
    match task::pid_of(ctx.arg(2)) {
        Some(next) if spawn::may_await(next) => first_run(next),
        _ => 0,
    }
}

/// `void schedule_tail(struct task_struct *prev)`: the first function a new
/// task runs after its first context switch (from ret_from_fork), in the new
/// task itself. It fires once per task created, where the context-switch
/// probes fire on every switch of the machine.
#[fentry(function = "schedule_tail")]
pub fn fentry_schedule_tail(_ctx: FEntryContext) -> u32 {
    first_run_of_current()
}

#[kprobe]
pub fn kprobe_schedule_tail(_ctx: ProbeContext) -> u32 {
    first_run_of_current()
}

#[inline(always)]
fn first_run_of_current() -> u32 {
    if !armed(Gate::AwaitingFirstRun) {
        return 0;
    }
    first_run(current().0)
}

/// Runs on a context switch to a task that may await its first run: one
/// hash lookup.
#[inline(always)]
fn first_run(next: u32) -> u32 {
    spawn::first_run(now(), next, cpu());
    0
}

/// Exec done from the classic tracepoint: no argument or environment counts.
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let old_pid = field::<i32>(&ctx, config(&CONFIG.tp.exec_old_pid)).unwrap_or(0);
    // __data_loc: low 16 bits are the string's offset in the record.
    let loc = field::<u32>(&ctx, config(&CONFIG.tp.exec_filename)).unwrap_or(0);
    let name = unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) };
    exec_done(old_pid as u32, || (UNKNOWN_U32, UNKNOWN_U32, name as u64))
}

/// Exec done from the raw tracepoint, whose arguments include the
/// `linux_binprm`: the kernel's own argc/envc for the new image.
/// TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn raw_sched_process_exec(ctx: RawTracePointContext) -> u32 {
    let old_pid: u64 = ctx.arg(1);
    let bprm = ctx.arg::<u64>(2) as *const u8;
    exec_done(old_pid as u32, || task::binprm(bprm))
}

/// `binprm` gives the image's (argc, envc, filename), read only where a
/// record keeps them.
#[inline(always)]
fn exec_done(old_tid: u32, binprm: impl FnOnce() -> (u32, u32, u64)) -> u32 {
    let t = now();
    let (_, tgid) = current();
    let Some(p) = traced(tgid) else {
        return 0;
    };
    let img = if config(&CONFIG.metrics) != 0 {
        // serve's histograms take only the exec's times: no image reads.
        Image::bare(old_tid)
    } else {
        let (argc, envc, filename) = binprm();
        Image {
            old_tid,
            argc,
            envc,
            env_bytes: task::env_bytes(),
            filename,
            // Read before the window closes: the CoW count covers life before exec.
            faults: faults_of(p),
            read: true,
        }
    };
    if let Some(spawn_id) = spawn::exec_done(t, &img) {
        capture(spawn_id, tgid);
    }
    // A fresh mm shares nothing: this process's own latest fork stops
    // counting its copy-on-write faults, and so does it.
    spawn::resolve_parent_cow(tgid, p);
    spawn::close_cow_window(p);
    send_notice(rec::NOTICE_EXEC, tgid);
    0
}

/// Sends the new image's argument or environment strings (`--capture-*`),
/// read from the range the kernel just laid out on its stack.
#[inline(always)]
fn capture(spawn_id: u64, tgid: u32) {
    let k = &CONFIG.kernel;
    let capture = config(&CONFIG.capture);
    let ranges = [
        (
            capture_bits::ARGS,
            rec::CAPTURE_ARGS,
            &k.mm_arg_start,
            &k.mm_arg_end,
        ),
        (
            capture_bits::ENV,
            rec::CAPTURE_ENV,
            &k.mm_env_start,
            &k.mm_env_end,
        ),
    ];
    for (bit, kind, start, end) in ranges {
        if capture & bit != 0
            && let Some((s, e)) = task::mm_range(config(start), config(end))
            && e > s
        {
            send_text(kind, spawn_id, tgid, s as *const u8, e - s);
        }
    }
}

#[tracepoint]
pub fn sched_prepare_exec(_ctx: TracePointContext) -> u32 {
    prepare_exec()
}

/// TP_PROTO(struct task_struct *task, struct linux_binprm *bprm): in the
/// exec'ing task, so nothing is read from the arguments.
#[raw_tracepoint(tracepoint = "sched_prepare_exec")]
pub fn raw_sched_prepare_exec(_ctx: RawTracePointContext) -> u32 {
    prepare_exec()
}

/// `int begin_new_exec(struct linux_binprm *bprm)` (5.8+): the function
/// whose first lines fire sched_prepare_exec on 6.10+. On older kernels it is
/// the only place that sees the exec commit before the old mm (and with it a
/// vfork parent) is released.
#[fentry(function = "begin_new_exec")]
pub fn fentry_begin_new_exec(_ctx: FEntryContext) -> u32 {
    prepare_exec()
}

#[kprobe]
pub fn kprobe_begin_new_exec(_ctx: ProbeContext) -> u32 {
    prepare_exec()
}

#[inline(always)]
fn prepare_exec() -> u32 {
    spawn::exec_prepared(now());
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let (tid, tgid) = current();
    // Kernels without group_dead fall back to the leader's exit.
    let group_dead = match field::<u8>(&ctx, config(&CONFIG.tp.exit_group_dead)) {
        Some(v) => v != 0,
        None => tid == tgid,
    };
    exited(tid, tgid, group_dead)
}

/// TP_PROTO(struct task_struct *p, bool group_dead): only on kernels whose
/// tracepoint passes group_dead. Where it does not, attaching fails (the
/// program reads a second argument) and the classic tracepoint is used.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn raw_sched_process_exit(ctx: RawTracePointContext) -> u32 {
    let (tid, tgid) = current();
    exited(tid, tgid, ctx.arg::<u64>(1) & 1 != 0)
}

#[inline(always)]
fn exited(tid: u32, tgid: u32, group_dead: bool) -> u32 {
    let t = now();
    let Some(p) = traced(tgid) else {
        return 0;
    };
    if tid != tgid {
        spawn::thread_ended(t, tid, false);
    }
    if !group_dead {
        return 0;
    }
    // serve's histograms keep neither the faults nor the exit code.
    let (faults, code) = if config(&CONFIG.metrics) != 0 {
        ((FAULTS_UNKNOWN, 0), task::NO_EXIT_CODE)
    } else {
        (faults_of(p), task::exit_code())
    };
    spawn::process_exited(t, tgid, faults, code);
    spawn::resolve_parent_cow(tgid, p);
    spawn::close_cow_window(p);
    send_notice(rec::NOTICE_EXIT, tgid);
    crate::maps::traced_table().remove(tgid);
    0
}

/// `sched:sched_process_free`: a task released after its reap (RCU-delayed).
/// Catches the reaps of spawned processes no wait probe saw.
#[tracepoint]
pub fn sched_process_free(ctx: TracePointContext) -> u32 {
    if !armed(Gate::Zombies) {
        return 0;
    }
    if let Some(pid) = field::<i32>(&ctx, config(&CONFIG.tp.free_pid)) {
        spawn::released(pid as u32);
    }
    0
}

/// TP_PROTO(struct task_struct *p)
#[raw_tracepoint(tracepoint = "sched_process_free")]
pub fn raw_sched_process_free(ctx: RawTracePointContext) -> u32 {
    if !armed(Gate::Zombies) {
        return 0;
    }
    if let Some(pid) = task::pid_of(ctx.arg(0)) {
        spawn::released(pid);
    }
    0
}
