//! The globals the probes are loaded with: tracepoint field offsets read
//! from tracefs `format` files, and kernel struct offsets from BTF (aya
//! 0.14 has no CO-RE relocations, so offsets are resolved here, per host).
use anyhow::{Result, bail};
use spawnprof_common::{KernelOffsets, NO_FIELD, ProbeConfig, TracepointOffsets, capture};

use super::{Host, Tracefs, arch::SYSCALL_ARGS, options::SessionOptions};

/// The globals the probes read: tracepoint field offsets from tracefs,
/// kernel struct offsets from BTF.
pub(super) fn probe_config(host: &Host, opts: &SessionOptions) -> Result<ProbeConfig> {
    let kernel = kernel_offsets(host);
    Ok(ProbeConfig {
        follow: opts.follow as u32,
        capture: (opts.capture_args as u32 * capture::ARGS)
            | (opts.capture_env as u32 * capture::ENV),
        count_every_fault: !kernel.has_fault_counters() as u32,
        ring_buffer_bytes: opts.ring_buffer_bytes,
        notices: opts.notices as u32,
        metrics: opts.metrics.map_or(0, |labels| labels.mode()),
        pid_ns: host.pid_ns.unwrap_or_default(),
        scope: opts.scope,
        tp: tracepoint_offsets(&host.tracefs)?,
        kernel,
    })
}

/// Where each tracepoint field the probes read comes from:
/// (slot, category, event, field, size in bytes).
type FieldSource = (
    fn(&mut TracepointOffsets) -> &mut u32,
    &'static str,
    &'static str,
    &'static str,
    u32,
);

const TRACEPOINT_FIELDS: &[FieldSource] = &[
    (
        |o| &mut o.fork_parent_pid,
        "sched",
        "sched_process_fork",
        "parent_pid",
        4,
    ),
    (
        |o| &mut o.fork_child_pid,
        "sched",
        "sched_process_fork",
        "child_pid",
        4,
    ),
    (
        |o| &mut o.exec_filename,
        "sched",
        "sched_process_exec",
        "filename",
        4,
    ),
    (|o| &mut o.exec_pid, "sched", "sched_process_exec", "pid", 4),
    (
        |o| &mut o.exec_old_pid,
        "sched",
        "sched_process_exec",
        "old_pid",
        4,
    ),
    (|o| &mut o.exit_pid, "sched", "sched_process_exit", "pid", 4),
    (
        |o| &mut o.exit_group_dead,
        "sched",
        "sched_process_exit",
        "group_dead",
        1,
    ),
    (
        |o| &mut o.wakeup_new_pid,
        "sched",
        "sched_wakeup_new",
        "pid",
        4,
    ),
    (
        |o| &mut o.wakeup_new_target_cpu,
        "sched",
        "sched_wakeup_new",
        "target_cpu",
        4,
    ),
    (
        |o| &mut o.switch_next_pid,
        "sched",
        "sched_switch",
        "next_pid",
        4,
    ),
    (
        |o| &mut o.mmap_lock_mm,
        "mmap_lock",
        "mmap_lock_start_locking",
        "mm",
        8,
    ),
    (
        |o| &mut o.mmap_lock_write,
        "mmap_lock",
        "mmap_lock_start_locking",
        "write",
        1,
    ),
    (
        |o| &mut o.fault_error_code,
        "exceptions",
        "page_fault_user",
        "error_code",
        8,
    ),
    (
        |o| &mut o.sys_enter_clone_flags,
        "syscalls",
        "sys_enter_clone",
        "clone_flags",
        8,
    ),
    (
        |o| &mut o.sys_enter_clone3_uargs,
        "syscalls",
        "sys_enter_clone3",
        "uargs",
        8,
    ),
    (
        |o| &mut o.sys_enter_execve_filename,
        "syscalls",
        "sys_enter_execve",
        "filename",
        8,
    ),
    (
        |o| &mut o.sys_enter_execveat_filename,
        "syscalls",
        "sys_enter_execveat",
        "filename",
        8,
    ),
    (
        |o| &mut o.sys_enter_waitid_infop,
        "syscalls",
        "sys_enter_waitid",
        "infop",
        8,
    ),
    (
        |o| &mut o.sys_enter_waitid_options,
        "syscalls",
        "sys_enter_waitid",
        "options",
        8,
    ),
    (|o| &mut o.free_pid, "sched", "sched_process_free", "pid", 4),
    (
        |o| &mut o.sys_exit_ret,
        "syscalls",
        "sys_exit_clone",
        "ret",
        8,
    ),
];

/// Reads every field offset the probes need. A tracepoint missing here is
/// not an error: its field stays [`spawnprof_common::NO_FIELD`] and the plan
/// reports the stage as unavailable.
pub fn tracepoint_offsets(tracefs: &Tracefs) -> Result<TracepointOffsets> {
    let get = |cat: &str, ev: &str, field: &str, size: u32| -> Option<u32> {
        tracefs.format(cat, ev).ok()?.offset_of(field, size).ok()
    };
    let mut o = TracepointOffsets::MISSING;
    for (slot, cat, ev, field, size) in TRACEPOINT_FIELDS {
        if let Some(v) = get(cat, ev, field, *size) {
            *slot(&mut o) = v;
        }
    }
    // The mmap_lock release event shares start_locking's layout for mm and
    // write; check rather than assume.
    if let (Some(mm), Some(w)) = (
        get("mmap_lock", "mmap_lock_released", "mm", 8),
        get("mmap_lock", "mmap_lock_released", "write", 1),
    ) && (mm != o.mmap_lock_mm || w != o.mmap_lock_write)
    {
        bail!(
            "mmap_lock:mmap_lock_released lays out mm/write differently from start_locking; please report this kernel"
        );
    }
    Ok(o)
}

fn kernel_offsets(host: &Host) -> KernelOffsets {
    let Some(btf) = &host.btf else {
        return KernelOffsets::default();
    };
    let get = |s: &str, m: &str| btf.member_offset(s, m).unwrap_or(0);
    // For members that may sit at offset 0.
    let field = |s: &str, m: &str| btf.member_offset(s, m).unwrap_or(NO_FIELD);
    let syscall_arg = |n: usize| {
        let (member, within) = SYSCALL_ARGS[n];
        btf.member_offset("pt_regs", member)
            .map_or(NO_FIELD, |at| at + within)
    };
    let sched_info = |m: &str| match (
        btf.member_offset("task_struct", "sched_info"),
        btf.member_offset("sched_info", m),
    ) {
        (Some(at), Some(within)) => at + within,
        _ => 0,
    };
    KernelOffsets {
        task_mm: get("task_struct", "mm"),
        task_exit_code: get("task_struct", "exit_code"),
        task_pid: get("task_struct", "pid"),
        task_tgid: get("task_struct", "tgid"),
        mm_env_start: get("mm_struct", "env_start"),
        mm_env_end: get("mm_struct", "env_end"),
        mm_arg_start: get("mm_struct", "arg_start"),
        mm_arg_end: get("mm_struct", "arg_end"),
        binprm_argc: get("linux_binprm", "argc"),
        binprm_envc: get("linux_binprm", "envc"),
        binprm_filename: get("linux_binprm", "filename"),
        task_min_flt: get("task_struct", "min_flt"),
        task_maj_flt: get("task_struct", "maj_flt"),
        task_signal: get("task_struct", "signal"),
        signal_min_flt: get("signal_struct", "min_flt"),
        signal_maj_flt: get("signal_struct", "maj_flt"),
        clone_args_flags: field("kernel_clone_args", "flags"),
        clone_args_exit_signal: field("kernel_clone_args", "exit_signal"),
        regs_arg0: syscall_arg(0),
        regs_arg1: syscall_arg(1),
        regs_arg2: syscall_arg(2),
        regs_arg3: syscall_arg(3),
        task_real_parent: field("task_struct", "real_parent"),
        task_thread_pid: field("task_struct", "thread_pid"),
        pid_level: field("pid", "level"),
        pid_numbers: field("pid", "numbers"),
        upid_size: btf.struct_size("upid").unwrap_or(NO_FIELD),
        upid_nr: field("upid", "nr"),
        task_sched_pcount: sched_info("pcount"),
        task_sched_run_delay: sched_info("run_delay"),
        task_group_leader: field("task_struct", "group_leader"),
        task_comm: field("task_struct", "comm"),
    }
}
