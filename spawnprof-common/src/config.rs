//! The globals the loader sets before loading (`CONFIG`): options, and the
//! tracepoint field offsets and kernel struct offsets of this host, which
//! differ between kernels and are read from tracefs and BTF at load time.
use crate::{NO_FIELD, state::PidNamespace};

/// Bits of [`ProbeConfig::capture`]. Nothing beyond argv[0], paths and
/// counts is recorded unless asked for: arguments and environments hold secrets.
pub mod capture {
    pub const ARGS: u32 = 1;
    pub const ENV: u32 = 2;
}

/// Values of [`Scope::kind`].
pub mod scope {
    /// Only the processes userspace adds (and their children, with follow).
    pub const NONE: u32 = 0;
    /// Every process: the first probe that runs in one adds it.
    pub const ALL: u32 = 1;
    /// The processes of a cgroup v2 subtree, added by the first probe
    /// that runs in them there.
    pub const CGROUP: u32 = 2;
}

/// Which processes the probes trace on their own ([`scope`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub kind: u32,
    /// The cgroup's depth below the cgroup2 root (`bpf_get_current_ancestor_cgroup_id`'s level).
    pub cgroup_level: u32,
    /// Its id (the directory's inode number).
    pub cgroup_id: u64,
}

/// Byte offsets of the tracepoint fields the probes read, parsed from tracefs
/// `format` files at load time because they differ between kernels.
/// [`NO_FIELD`] marks a field this kernel does not have.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointOffsets {
    pub fork_parent_pid: u32,
    pub fork_child_pid: u32,
    pub exec_filename: u32,
    pub exec_pid: u32,
    pub exec_old_pid: u32,
    pub exit_pid: u32,
    pub exit_group_dead: u32,
    pub wakeup_new_pid: u32,
    pub wakeup_new_target_cpu: u32,
    pub switch_next_pid: u32,
    pub mmap_lock_mm: u32,
    pub mmap_lock_write: u32,
    pub fault_error_code: u32,
    pub sys_enter_clone_flags: u32,
    pub sys_enter_clone3_uargs: u32,
    pub sys_enter_execve_filename: u32,
    pub sys_enter_execveat_filename: u32,
    pub sys_enter_waitid_infop: u32,
    pub sys_enter_waitid_options: u32,
    pub sys_exit_ret: u32,
    /// `sched:sched_process_free`'s pid: a task released (reaped).
    pub free_pid: u32,
}

impl TracepointOffsets {
    /// Every field missing; the loader fills in what the kernel has.
    pub const MISSING: Self = Self {
        fork_parent_pid: NO_FIELD,
        fork_child_pid: NO_FIELD,
        exec_filename: NO_FIELD,
        exec_pid: NO_FIELD,
        exec_old_pid: NO_FIELD,
        exit_pid: NO_FIELD,
        exit_group_dead: NO_FIELD,
        wakeup_new_pid: NO_FIELD,
        wakeup_new_target_cpu: NO_FIELD,
        switch_next_pid: NO_FIELD,
        mmap_lock_mm: NO_FIELD,
        mmap_lock_write: NO_FIELD,
        fault_error_code: NO_FIELD,
        sys_enter_clone_flags: NO_FIELD,
        sys_enter_clone3_uargs: NO_FIELD,
        sys_enter_execve_filename: NO_FIELD,
        sys_enter_execveat_filename: NO_FIELD,
        sys_enter_waitid_infop: NO_FIELD,
        sys_enter_waitid_options: NO_FIELD,
        sys_exit_ret: NO_FIELD,
        free_pid: NO_FIELD,
    };
}

/// Offsets inside kernel structures, read from the kernel's BTF at load time.
/// 0 means unknown (except where a field says [`NO_FIELD`]): the probes
/// then report [`crate::UNKNOWN`] for what needs them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.mm`
    pub task_mm: u32,
    /// `task_struct.exit_code`
    pub task_exit_code: u32,
    /// `task_struct.pid` (the thread id)
    pub task_pid: u32,
    /// `task_struct.tgid`
    pub task_tgid: u32,
    /// `mm_struct.env_start` (inside the anonymous struct of recent kernels)
    pub mm_env_start: u32,
    /// `mm_struct.env_end`
    pub mm_env_end: u32,
    /// `mm_struct.arg_start`
    pub mm_arg_start: u32,
    /// `mm_struct.arg_end`
    pub mm_arg_end: u32,
    /// `linux_binprm.argc`
    pub binprm_argc: u32,
    /// `linux_binprm.envc`
    pub binprm_envc: u32,
    /// `linux_binprm.filename`
    pub binprm_filename: u32,
    /// `task_struct.min_flt` and `maj_flt`: the kernel's own per-thread
    /// fault counters, read at exec and exit instead of probing every fault.
    pub task_min_flt: u32,
    pub task_maj_flt: u32,
    /// `task_struct.signal`, and `signal_struct.min_flt`/`maj_flt`: the
    /// faults of the process's threads that already exited.
    pub task_signal: u32,
    pub signal_min_flt: u32,
    pub signal_maj_flt: u32,
    /// `kernel_clone_args.flags` and `.exit_signal`, for the fentry/kprobe
    /// tiers of the clone stage ([`NO_FIELD`] when unknown: `flags` is at 0).
    pub clone_args_flags: u32,
    pub clone_args_exit_signal: u32,
    /// Where the `struct pt_regs` a syscall function gets holds the
    /// syscall's first four arguments (x86-64: `di`, `si`, `dx`, `r10`;
    /// arm64: `regs[0]` to `regs[3]`), for the fentry/kprobe tiers of the
    /// exec stage and of waitid reaps ([`NO_FIELD`] when unknown).
    pub regs_arg0: u32,
    pub regs_arg1: u32,
    pub regs_arg2: u32,
    pub regs_arg3: u32,
    /// `task_struct.real_parent` and `.thread_pid`, `pid.level`,
    /// `pid.numbers`, and the size of `struct upid` and its `nr`'s offset:
    /// the pid an exiting child has in its reaper's PID namespace, which is
    /// what the reaper's wait returns ([`NO_FIELD`] when unknown).
    pub task_real_parent: u32,
    pub task_thread_pid: u32,
    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub upid_nr: u32,
    /// `task_struct.sched_info.pcount` and `.run_delay` (absolute offsets in
    /// the task): the scheduler's own count of a task's switch-ins and of
    /// its time waiting to run (0 when the kernel has no sched_info).
    pub task_sched_pcount: u32,
    pub task_sched_run_delay: u32,
    /// `task_struct.group_leader` and `.comm`: a spawning thread's process
    /// name, its main thread's, for `parent_comm` and `serve`'s labels
    /// ([`NO_FIELD`] when unknown: the thread's own name is used).
    pub task_group_leader: u32,
    pub task_comm: u32,
}

impl Default for KernelOffsets {
    /// Everything unknown.
    fn default() -> Self {
        ProbeConfig::DEFAULT.kernel
    }
}

impl KernelOffsets {
    /// Whether fault totals can come from the kernel's task counters.
    pub const fn has_fault_counters(&self) -> bool {
        self.task_min_flt != 0
            && self.task_maj_flt != 0
            && self.task_signal != 0
            && self.signal_min_flt != 0
            && self.signal_maj_flt != 0
    }
}

/// The loader's settings for the probes, set as the global `CONFIG`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProbeConfig {
    /// Children of a process traced with [`crate::traced::SPAWNS`] get
    /// [`crate::traced::SPAWNS`] too (`--follow`, `record -- CMD`); otherwise
    /// [`crate::traced::LIFE_ONLY`].
    pub follow: u32,
    /// What to capture beyond counts: [`capture::ARGS`], [`capture::ENV`].
    pub capture: u32,
    /// 1: the fault probe counts every fault of traced processes, because
    /// the kernel's task counters cannot be read (see
    /// [`KernelOffsets::has_fault_counters`]); 0: it counts only
    /// copy-on-write faults, inside copy-on-write windows.
    pub count_every_fault: u32,
    /// Size of the `RECORDS` ring buffer in bytes (wakes the reader at half full).
    pub ring_buffer_bytes: u32,
    /// 1: send a [`crate::record::Notice`] at every exec and exit of a
    /// traced process (stack sampling reads its memory maps then).
    pub notices: u32,
    /// `serve`/`top` ([`crate::metrics::mode`] bits): each finished spawn
    /// is folded into the metrics maps ([`crate::metrics`]) and nothing per
    /// spawn goes to `RECORDS`.
    pub metrics: u32,
    /// spawnprof's own PID namespace, when it is not the host's (see
    /// [`crate::NsRegistration`]); zeros otherwise.
    pub pid_ns: PidNamespace,
    /// Processes the probes adopt on sight, beyond those userspace adds
    /// (`serve --all`, `serve --cgroup`).
    pub scope: Scope,
    pub tp: TracepointOffsets,
    pub kernel: KernelOffsets,
}

impl ProbeConfig {
    pub const DEFAULT: Self = Self {
        follow: 0,
        capture: 0,
        count_every_fault: 1,
        ring_buffer_bytes: 0,
        notices: 0,
        metrics: 0,
        pid_ns: PidNamespace { dev: 0, ino: 0 },
        scope: Scope {
            kind: scope::NONE,
            cgroup_level: 0,
            cgroup_id: 0,
        },
        tp: TracepointOffsets::MISSING,
        kernel: KernelOffsets {
            task_mm: 0,
            task_exit_code: 0,
            task_pid: 0,
            task_tgid: 0,
            mm_env_start: 0,
            mm_env_end: 0,
            mm_arg_start: 0,
            mm_arg_end: 0,
            binprm_argc: 0,
            binprm_envc: 0,
            binprm_filename: 0,
            task_min_flt: 0,
            task_maj_flt: 0,
            task_signal: 0,
            signal_min_flt: 0,
            signal_maj_flt: 0,
            clone_args_flags: NO_FIELD,
            clone_args_exit_signal: NO_FIELD,
            regs_arg0: NO_FIELD,
            regs_arg1: NO_FIELD,
            regs_arg2: NO_FIELD,
            regs_arg3: NO_FIELD,
            task_real_parent: NO_FIELD,
            task_thread_pid: NO_FIELD,
            pid_level: NO_FIELD,
            pid_numbers: NO_FIELD,
            upid_size: NO_FIELD,
            upid_nr: NO_FIELD,
            task_sched_pcount: 0,
            task_sched_run_delay: 0,
            task_group_leader: NO_FIELD,
            task_comm: NO_FIELD,
        },
    };
}
