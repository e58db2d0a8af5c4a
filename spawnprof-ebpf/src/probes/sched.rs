//! Scheduler and process-lifetime tracepoints: the fork completing, the child
//! being woken and first run, the exec landing and the exit (reaps: `reap`).
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_current_task, bpf_get_smp_processor_id, bpf_probe_read_kernel},
    macros::{fentry, kprobe, raw_tracepoint, tracepoint},
    programs::{FEntryContext, ProbeContext, RawTracePointContext, TracePointContext},
};
use spawnprof_common::{
    CloneState, TracedProc, UNKNOWN, UNKNOWN_U32, await_child, capture as capture_bits,
    clone_flags as cf, kind, pack_faults, pack_u32s, traced as tflags,
};

use super::field;
use crate::{
    emit::{Text, current, mark, now, text_mark, traced, traces_spawns},
    maps::{
        AWAIT_FIRST_RUN, CLONES, CONFIG, Gate, TRACED, arm, armed, awaited_stages, config, disarm,
    },
};

/// The current process's user page faults from the kernel's own counters:
/// this thread's, plus those of its threads that already exited (exec and
/// the last exit find the other threads gone and folded into `signal`).
#[inline(always)]
fn process_faults() -> Option<u64> {
    let k = &CONFIG.kernel;
    let (t_min, t_maj, t_sig) = (
        config(&k.task_min_flt),
        config(&k.task_maj_flt),
        config(&k.task_signal),
    );
    let (s_min, s_maj) = (config(&k.signal_min_flt), config(&k.signal_maj_flt));
    if t_min == 0 || t_maj == 0 || t_sig == 0 || s_min == 0 || s_maj == 0 {
        return None;
    }
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let read = |base: *const u8, off: u32| {
            bpf_probe_read_kernel(base.add(off as usize) as *const u64).ok()
        };
        let sig = read(task, t_sig)? as *const u8;
        Some(read(task, t_min)? + read(task, t_maj)? + read(sig, s_min)? + read(sig, s_maj)?)
    }
}

/// (faults, CoW faults) of the current traced process, packed for a mark.
/// `totals`: include the fault total (exec, exit); a fork only needs the
/// parent's CoW count.
#[inline(always)]
fn faults_of(proc_: *mut TracedProc, totals: bool) -> u64 {
    unsafe {
        let faults = if !totals {
            0
        } else if config(&CONFIG.count_every_fault) != 0 {
            (*proc_).faults
        } else {
            process_faults().unwrap_or(UNKNOWN_U32)
        };
        pack_faults(faults, (*proc_).cow_faults)
    }
}

/// Opens the copy-on-write window of a traced process (it forked, or it is
/// a forked child): from now on its CoW faults are counted.
#[inline(always)]
fn open_cow_window(proc_: *mut TracedProc) {
    unsafe {
        if (*proc_).flags & tflags::COW_WINDOW == 0 {
            (*proc_).flags |= tflags::COW_WINDOW;
            arm(Gate::CowWindows);
        }
    }
}

/// Closes it: the process exec'd (a fresh mm shares nothing) or exited.
#[inline(always)]
fn close_cow_window(proc_: *mut TracedProc) {
    unsafe {
        if (*proc_).flags & tflags::COW_WINDOW != 0 {
            (*proc_).flags &= !tflags::COW_WINDOW;
            disarm(Gate::CowWindows);
        }
    }
}

/// The pid (thread id) of the task at `task`, through the BTF offset.
#[inline(always)]
fn pid_of(task: u64) -> Option<u32> {
    let off = config(&CONFIG.kernel.task_pid);
    if off == 0 || task == 0 {
        return None;
    }
    unsafe { bpf_probe_read_kernel((task as *const u8).add(off as usize) as *const i32) }
        .ok()
        .map(|pid| pid as u32)
}

// The sched and task events of every spawn come in two forms. The raw
// tracepoint is preferred: the kernel builds no record before the program
// runs, and each program has its own recursion guard, where a classic
// tracepoint program is skipped while any other BPF program runs on that
// CPU (a lost fork or exit). Task fields come from BTF offsets there.

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
    match pid_of(ctx.arg(1)) {
        Some(child) => fork_done(child),
        None => 0,
    }
}

/// The current (parent) thread's fork of `child` completed.
#[inline(always)]
fn fork_done(child: u32) -> u32 {
    let ts = now();
    let (tid, tgid) = current();
    let Some(parent) = traced(tgid) else {
        return 0;
    };
    if unsafe { (*parent).flags } & tflags::SPAWNS == 0 {
        return 0;
    }
    let state: Option<*const CloneState> = CLONES.get_ptr(tid);
    // Unknown flags (the clone's entry was not seen) count as neither.
    let flags = state.map(|s| unsafe { (*s).clone_flags });
    let is_thread = flags.is_some_and(|f| f & cf::CLONE_THREAD != 0);
    // Parent and child now share their memory copy-on-write.
    let copies_mm = flags.is_some_and(|f| f & cf::CLONE_VM == 0);
    let child_tgid = if is_thread { tgid } else { child };
    if !is_thread {
        let mut flags = if config(&CONFIG.follow) != 0 {
            tflags::SPAWNS
        } else {
            tflags::LIFE_ONLY
        };
        if copies_mm {
            flags |= tflags::COW_WINDOW;
        }
        let entry = TracedProc {
            flags,
            ..TracedProc::default()
        };
        if TRACED.insert(child, entry, 0).is_ok() && copies_mm {
            arm(Gate::CowWindows);
        }
    }
    if copies_mm {
        open_cow_window(parent);
    }
    if awaited_stages() != 0 && AWAIT_FIRST_RUN.insert(child, child_tgid, 0).is_ok() {
        arm(Gate::AwaitingFirstRun);
    }
    // Only the fentry/kprobe tiers fill these; the loader's plan tells
    // userspace whether an absent mark means "0 calls" or "not measured".
    if let Some(s) = state.map(|s| unsafe { *s })
        && s.cpr_calls + s.avf_calls > 0
    {
        mark(
            ts,
            kind::KERNEL_FN_TOTALS,
            tid,
            tgid,
            s.cpr_total_ns,
            s.avf_total_ns,
            ((s.cpr_calls as u64) << 32) | s.avf_calls as u64,
        );
    }
    mark(
        ts,
        kind::FORK_DONE,
        tid,
        tgid,
        child as u64,
        faults_of(parent, false),
        0,
    );
    0
}

/// `task:task_newtask`, fired at the end of copy_process: the tracepoint-only
/// end of the copy_process stage.
#[tracepoint]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    let pid = field::<i32>(&ctx, config(&CONFIG.tp.newtask_pid)).unwrap_or(0);
    let flags = field::<u64>(&ctx, config(&CONFIG.tp.newtask_clone_flags)).unwrap_or(0);
    newtask(pid as u32, flags)
}

/// TP_PROTO(struct task_struct *task, u64 clone_flags)
#[raw_tracepoint(tracepoint = "task_newtask")]
pub fn raw_task_newtask(ctx: RawTracePointContext) -> u32 {
    newtask(pid_of(ctx.arg(0)).unwrap_or(0), ctx.arg(1))
}

#[inline(always)]
fn newtask(pid: u32, flags: u64) -> u32 {
    let ts = now();
    let (tid, tgid) = current();
    if traces_spawns(tgid) {
        mark(ts, kind::NEWTASK, tid, tgid, pid as u64, flags, 0);
    }
    0
}

#[tracepoint]
pub fn sched_wakeup_new(ctx: TracePointContext) -> u32 {
    if !armed(Gate::AwaitingFirstRun) {
        return 0;
    }
    match field::<i32>(&ctx, config(&CONFIG.tp.wakeup_new_pid)) {
        Some(child) => {
            let cpu = field::<i32>(&ctx, config(&CONFIG.tp.wakeup_new_target_cpu)).unwrap_or(-1);
            wakeup_new(child as u32, cpu as u64)
        }
        None => 0,
    }
}

/// TP_PROTO(struct task_struct *p). The target CPU (unused by the
/// reports) is not read here.
#[raw_tracepoint(tracepoint = "sched_wakeup_new")]
pub fn raw_sched_wakeup_new(ctx: RawTracePointContext) -> u32 {
    if !armed(Gate::AwaitingFirstRun) {
        return 0;
    }
    match pid_of(ctx.arg(0)) {
        Some(child) => wakeup_new(child, UNKNOWN),
        None => 0,
    }
}

#[inline(always)]
fn wakeup_new(child: u32, cpu: u64) -> u32 {
    let ts = now();
    if unsafe { AWAIT_FIRST_RUN.get(child) }.is_none() {
        return 0;
    }
    let (tid, tgid) = current();
    mark(ts, kind::WAKEUP_NEW, tid, tgid, child as u64, cpu, 0);
    // Without the first-run probes nobody else forgets the child.
    if awaited_stages() & await_child::FIRST_RUN == 0 && AWAIT_FIRST_RUN.remove(child).is_ok() {
        disarm(Gate::AwaitingFirstRun);
    }
    0
}

#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    if !armed(Gate::AwaitingFirstRun) {
        return 0;
    }
    match field::<i32>(&ctx, config(&CONFIG.tp.switch_next_pid)) {
        Some(next) => first_run(next as u32),
        None => 0,
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
    match pid_of(ctx.arg(2)) {
        Some(next) => first_run(next),
        None => 0,
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
    let (tid, _) = current();
    first_run(tid)
}

/// Runs on every context switch of the machine while a traced child awaits
/// its first run: one hash lookup, nothing else.
#[inline(always)]
fn first_run(next: u32) -> u32 {
    let Some(tgid) = (unsafe { AWAIT_FIRST_RUN.get(next) }).copied() else {
        return 0;
    };
    let ts = now();
    if AWAIT_FIRST_RUN.remove(next).is_ok() {
        disarm(Gate::AwaitingFirstRun);
    }
    let cpu = unsafe { bpf_get_smp_processor_id() } as u64;
    mark(ts, kind::FIRST_RUN, next, tgid, cpu, 0, 0);
    0
}

/// Bytes of the environment the new image received (`mm->env_end - env_start`),
/// read through offsets from the kernel's BTF.
#[inline(always)]
fn env_bytes() -> u64 {
    let task_mm = config(&CONFIG.kernel.task_mm);
    let start = config(&CONFIG.kernel.mm_env_start);
    let end = config(&CONFIG.kernel.mm_env_end);
    if task_mm == 0 || start == 0 || end == 0 {
        return UNKNOWN;
    }
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let Ok(mm) = bpf_probe_read_kernel(task.add(task_mm as usize) as *const u64) else {
            return UNKNOWN;
        };
        if mm == 0 {
            return UNKNOWN;
        }
        let mm = mm as *const u8;
        let s = bpf_probe_read_kernel(mm.add(start as usize) as *const u64);
        let e = bpf_probe_read_kernel(mm.add(end as usize) as *const u64);
        match (s, e) {
            (Ok(s), Ok(e)) if e >= s => e - s,
            _ => UNKNOWN,
        }
    }
}

#[inline(always)]
fn exec_done(old_pid: u64, argc: u64, envc: u64, name: Text) -> u32 {
    let ts = now();
    let (tid, tgid) = current();
    let Some(proc_) = traced(tgid) else {
        return 0;
    };
    // Read before the window closes: the CoW count covers life before exec.
    let faults = faults_of(proc_, true);
    close_cow_window(proc_);
    let bytes = match env_bytes() {
        UNKNOWN => UNKNOWN_U32,
        b => b,
    };
    text_mark(
        ts,
        kind::EXEC_DONE,
        tid,
        tgid,
        pack_u32s(old_pid, argc),
        pack_u32s(bytes, envc),
        faults,
        name,
    );
    let capture = config(&CONFIG.capture);
    if capture & capture_bits::ARGS != 0 {
        capture_range(
            ts,
            kind::EXEC_ARGS,
            tid,
            tgid,
            config(&CONFIG.kernel.mm_arg_start),
            config(&CONFIG.kernel.mm_arg_end),
        );
    }
    if capture & capture_bits::ENV != 0 {
        capture_range(
            ts,
            kind::EXEC_ENV,
            tid,
            tgid,
            config(&CONFIG.kernel.mm_env_start),
            config(&CONFIG.kernel.mm_env_end),
        );
    }
    0
}

/// Sends the new image's argument or environment strings, read from the
/// `[start, end)` range the kernel just laid out on its stack.
#[inline(always)]
fn capture_range(ts: u64, kind: u16, tid: u32, tgid: u32, start_off: u32, end_off: u32) {
    let task_mm = config(&CONFIG.kernel.task_mm);
    if task_mm == 0 || start_off == 0 || end_off == 0 {
        return;
    }
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let Ok(mm) = bpf_probe_read_kernel(task.add(task_mm as usize) as *const u64) else {
            return;
        };
        let mm = mm as *const u8;
        let (Ok(start), Ok(end)) = (
            bpf_probe_read_kernel(mm.add(start_off as usize) as *const u64),
            bpf_probe_read_kernel(mm.add(end_off as usize) as *const u64),
        ) else {
            return;
        };
        if end > start {
            text_mark(
                ts,
                kind,
                tid,
                tgid,
                end - start,
                0,
                0,
                Text::UserBytes(start as *const u8, end - start),
            );
        }
    }
}

/// Exec done from the classic tracepoint: no argument or environment counts.
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let old_pid = field::<i32>(&ctx, config(&CONFIG.tp.exec_old_pid)).unwrap_or(0);
    // __data_loc: low 16 bits are the string's offset in the record.
    let loc = field::<u32>(&ctx, config(&CONFIG.tp.exec_filename)).unwrap_or(0);
    let name = unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) };
    exec_done(
        old_pid as u32 as u64,
        UNKNOWN_U32,
        UNKNOWN_U32,
        Text::Kernel(name),
    )
}

/// Exec done from the raw tracepoint, whose arguments include the
/// `linux_binprm`: the kernel's own argc/envc for the new image.
/// TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn raw_sched_process_exec(ctx: RawTracePointContext) -> u32 {
    let old_pid: u64 = ctx.arg(1);
    let bprm = ctx.arg::<u64>(2) as *const u8;
    let read_u32 = |off: u32| -> u64 {
        if off == 0 {
            return UNKNOWN_U32;
        }
        unsafe { bpf_probe_read_kernel(bprm.add(off as usize) as *const i32) }
            .map_or(UNKNOWN_U32, |v| v as u32 as u64)
    };
    let argc = read_u32(config(&CONFIG.kernel.binprm_argc));
    let envc = read_u32(config(&CONFIG.kernel.binprm_envc));
    let filename_off = config(&CONFIG.kernel.binprm_filename);
    let name = if filename_off == 0 {
        core::ptr::null()
    } else {
        unsafe { bpf_probe_read_kernel(bprm.add(filename_off as usize) as *const u64) }.unwrap_or(0)
            as *const u8
    };
    exec_done(old_pid as u32 as u64, argc, envc, Text::Kernel(name))
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
    let ts = now();
    let (tid, tgid) = current();
    if traced(tgid).is_some() {
        mark(ts, kind::EXEC_PREPARE, tid, tgid, 0, 0, 0);
    }
    0
}

#[inline(always)]
fn exit_code() -> u64 {
    let off = config(&CONFIG.kernel.task_exit_code);
    if off == 0 {
        return UNKNOWN;
    }
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        match bpf_probe_read_kernel(task.add(off as usize) as *const i32) {
            Ok(code) => code as u32 as u64,
            Err(_) => UNKNOWN,
        }
    }
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let ts = now();
    let (tid, tgid) = current();
    // Only the end of the whole process matters. Kernels without group_dead
    // fall back to the leader's exit.
    let group_dead = match field::<u8>(&ctx, config(&CONFIG.tp.exit_group_dead)) {
        Some(v) => v != 0,
        None => tid == tgid,
    };
    exited(ts, tid, tgid, group_dead)
}

/// TP_PROTO(struct task_struct *p, bool group_dead): only on kernels whose
/// tracepoint passes group_dead. Where it does not, attaching fails (the
/// program reads a second argument) and the classic tracepoint is used.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn raw_sched_process_exit(ctx: RawTracePointContext) -> u32 {
    let ts = now();
    let (tid, tgid) = current();
    exited(ts, tid, tgid, ctx.arg::<u64>(1) & 1 != 0)
}

#[inline(always)]
fn exited(ts: u64, tid: u32, tgid: u32, group_dead: bool) -> u32 {
    if !group_dead {
        return 0;
    }
    let Some(proc_) = traced(tgid) else {
        return 0;
    };
    mark(
        ts,
        kind::EXIT,
        tid,
        tgid,
        exit_code(),
        faults_of(proc_, true),
        0,
    );
    close_cow_window(proc_);
    let _ = TRACED.remove(tgid);
    0
}
