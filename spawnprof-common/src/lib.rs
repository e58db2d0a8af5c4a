//! Types shared by the kernel side (`spawnprof-ebpf`) and the userspace side
//! (`spawnprof`). Everything here is `#[repr(C)]` and plain-old-data: the
//! layout is the wire format of the ring buffer and of the loader's globals.
//!
//! The kernel side emits one kind of record, a [`Mark`]: "this thread crossed
//! this stage boundary at this time", plus up to three values. A few marks carry
//! a short text (a path) and are sent as a [`TextMark`]. Userspace sorts the
//! marks by time and folds them into per-spawn records.
#![cfg_attr(not(test), no_std)]

/// Length of a kernel task name (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;
/// Bytes of path kept for exec attempts. Longer paths are truncated and flagged.
pub const TEXT_LEN: usize = 256;

/// A value the kernel side could not obtain (a field missing on this kernel).
pub const UNKNOWN: u64 = u64::MAX;
/// A 32-bit half of a packed mark value the kernel side could not obtain.
pub const UNKNOWN_U32: u64 = 0xffff_ffff;

/// Packs two 32-bit values into one mark value (`lo | hi << 32`).
#[inline(always)]
pub const fn pack_u32s(lo: u64, hi: u64) -> u64 {
    (lo & 0xffff_ffff) | (hi << 32)
}

/// A tracepoint field offset that this kernel's format file does not have.
pub const NO_FIELD: u32 = u32::MAX;

/// Stage boundaries, the `kind` of a [`Mark`]. Documented per value: which
/// thread emits it (`tid`/`tgid` of the mark) and what `a`, `b`, `c` hold.
pub mod kind {
    /// Parent enters clone/clone3/fork/vfork. a = clone flags, b = [`super::syscall`] id.
    pub const CLONE_ENTER: u16 = 1;
    /// Parent enters `copy_process` (fentry/kprobe only).
    pub const COPY_PROCESS_ENTER: u16 = 2;
    /// Parent starts waiting for the write lock of its own mm inside a clone
    /// (first `mmap_lock_start_locking` with write=1). a = mm pointer.
    pub const MM_LOCK_WAIT: u16 = 3;
    /// That lock was acquired: dup_mmap's copy begins. a = mm pointer, b = success.
    pub const MM_LOCK_ACQUIRED: u16 = 4;
    /// That lock was released: dup_mmap's copy ends. a = mm pointer.
    pub const MM_LOCK_RELEASED: u16 = 5;
    /// Parent enters `dup_mmap` (fentry/kprobe only).
    pub const DUP_MMAP_ENTER: u16 = 6;
    /// Parent leaves `dup_mmap` (fexit/kretprobe only). a = return value.
    pub const DUP_MMAP_EXIT: u16 = 7;
    /// `task:task_newtask`, fired at the end of `copy_process`.
    /// a = new task's pid (tid), b = clone flags.
    pub const NEWTASK: u16 = 8;
    /// Parent leaves `copy_process` (fexit/kretprobe only).
    pub const COPY_PROCESS_EXIT: u16 = 9;
    /// `sched:sched_process_fork` in the parent. a = child tid,
    /// b = parent's [`super::pack_faults`] at the fork (for CoW-after-fork deltas).
    pub const FORK_DONE: u16 = 10;
    /// Time spent in copy_page_range and anon_vma_fork during this clone, summed
    /// in the kernel (fentry/kprobe only). Emitted by the parent just before
    /// [`FORK_DONE`] when at least one call was timed; with those tiers
    /// attached, its absence means no call. a = copy_page_range ns, b = anon_vma_fork ns,
    /// c = calls: copy_page_range << 32 | anon_vma_fork.
    pub const KERNEL_FN_TOTALS: u16 = 11;
    /// `sched:sched_wakeup_new`: the child is put on a run queue.
    /// a = child tid, b = target cpu.
    pub const WAKEUP_NEW: u16 = 12;
    /// Parent returns from the clone syscall. a = return value (child pid or -errno).
    pub const CLONE_EXIT: u16 = 13;
    /// Child returns from the clone syscall in user space (ret 0). tid = child.
    pub const CHILD_RETURN: u16 = 14;
    /// The child is switched onto a CPU for the first time. tid/tgid = child,
    /// a = cpu.
    pub const FIRST_RUN: u16 = 15;
    /// execve/execveat entry. text = path as given, c = [`super::syscall`] id.
    pub const EXEC_ENTER: u16 = 16;
    /// `sched:sched_prepare_exec`: the binary was found, the point of no return is near.
    pub const EXEC_PREPARE: u16 = 17;
    /// `sched:sched_process_exec`: the new image is in place.
    /// a = old pid | argc << 32, b = env bytes | env count << 32 (each half
    /// [`super::UNKNOWN_U32`] when not readable), c = [`super::pack_faults`]
    /// of the process before the exec. text = filename.
    pub const EXEC_DONE: u16 = 18;
    /// execve/execveat return. a = return value (0 or -errno).
    pub const EXEC_EXIT: u16 = 19;
    /// `sched:sched_process_exit` of the last thread (group dead).
    /// a = exit code ([`super::UNKNOWN`] if not readable), b = [`super::pack_faults`].
    pub const EXIT: u16 = 20;
    /// The parent's wait4 or waitid reaped this child. a = reaped pid.
    pub const REAP: u16 = 21;
    /// With `--capture-args`: the new image's argument strings, NUL-separated
    /// (text; at most [`super::TEXT_LEN`] bytes). Follows [`EXEC_DONE`].
    pub const EXEC_ARGS: u16 = 22;
    /// With `--capture-env`: the new image's environment, NUL-separated.
    pub const EXEC_ENV: u16 = 23;
    /// One past the largest kind; sizes per-kind arrays.
    pub const COUNT: u16 = 24;

    /// Whether marks of this kind carry the task's comm (the others leave
    /// it zeroed: fetching it is a helper call on the spawn path). Only the
    /// comms userspace reports are fetched: the parent's at clone entry and
    /// fork, the child's before its exec and at exit. Text marks always
    /// carry it (the comm after an exec).
    pub const fn carries_comm(kind: u16) -> bool {
        matches!(kind, CLONE_ENTER | CHILD_RETURN | FORK_DONE | EXIT)
    }

    /// The name of a mark kind, as summaries and debug output print it.
    pub fn name(k: u16) -> &'static str {
        match k {
            CLONE_ENTER => "clone_enter",
            COPY_PROCESS_ENTER => "copy_process_enter",
            MM_LOCK_WAIT => "mm_lock_wait",
            MM_LOCK_ACQUIRED => "mm_lock_acquired",
            MM_LOCK_RELEASED => "mm_lock_released",
            DUP_MMAP_ENTER => "dup_mmap_enter",
            DUP_MMAP_EXIT => "dup_mmap_exit",
            NEWTASK => "newtask",
            COPY_PROCESS_EXIT => "copy_process_exit",
            FORK_DONE => "fork_done",
            KERNEL_FN_TOTALS => "kernel_fn_totals",
            WAKEUP_NEW => "wakeup_new",
            CLONE_EXIT => "clone_exit",
            CHILD_RETURN => "child_return",
            FIRST_RUN => "first_run",
            EXEC_ENTER => "exec_enter",
            EXEC_PREPARE => "exec_prepare",
            EXEC_DONE => "exec_done",
            EXEC_EXIT => "exec_exit",
            EXIT => "exit",
            REAP => "reap",
            EXEC_ARGS => "exec_args",
            EXEC_ENV => "exec_env",
            _ => "unknown",
        }
    }
}

/// Which syscall started a spawn or an exec (values of [`Mark::b`] /[`Mark::c`]).
pub mod syscall {
    pub const CLONE: u64 = 1;
    pub const CLONE3: u64 = 2;
    pub const FORK: u64 = 3;
    pub const VFORK: u64 = 4;
    pub const EXECVE: u64 = 5;
    pub const EXECVEAT: u64 = 6;
    /// Seen in `kernel_clone` (fentry/kprobe tiers), which every clone,
    /// clone3, fork and vfork goes through: the syscall itself is not known.
    pub const KERNEL_CLONE: u64 = 7;
}

/// Clone flags the reports interpret.
pub mod clone_flags {
    pub const CLONE_VM: u64 = 0x0000_0100;
    pub const CLONE_FS: u64 = 0x0000_0200;
    pub const CLONE_FILES: u64 = 0x0000_0400;
    pub const CLONE_SIGHAND: u64 = 0x0000_0800;
    pub const CLONE_PIDFD: u64 = 0x0000_1000;
    pub const CLONE_VFORK: u64 = 0x0000_4000;
    pub const CLONE_PARENT: u64 = 0x0000_8000;
    pub const CLONE_THREAD: u64 = 0x0001_0000;
    pub const CLONE_NEWNS: u64 = 0x0002_0000;
    pub const CLONE_SETTLS: u64 = 0x0008_0000;
    pub const CLONE_PARENT_SETTID: u64 = 0x0010_0000;
    pub const CLONE_CHILD_CLEARTID: u64 = 0x0020_0000;
    pub const CLONE_CHILD_SETTID: u64 = 0x0100_0000;
    pub const CLONE_NEWPID: u64 = 0x2000_0000;
    /// Low byte: the signal sent to the parent on exit (SIGCHLD for fork).
    pub const CSIGNAL: u64 = 0x0000_00ff;
}

/// Packs a (faults, cow faults) pair into one mark value; each half saturates.
#[inline(always)]
pub const fn pack_faults(faults: u64, cow: u64) -> u64 {
    let f = if faults > 0xffff_ffff {
        0xffff_ffff
    } else {
        faults
    };
    let c = if cow > 0xffff_ffff { 0xffff_ffff } else { cow };
    (f << 32) | c
}

/// Inverse of [`pack_faults`].
#[inline(always)]
pub const fn unpack_faults(v: u64) -> (u64, u64) {
    (v >> 32, v & 0xffff_ffff)
}

/// One stage boundary crossed by one thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    /// CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns`).
    pub ts_ns: u64,
    /// The thread the boundary belongs to (not always `current`: see [`kind::FIRST_RUN`]).
    pub tid: u32,
    pub tgid: u32,
    /// One of [`kind`].
    pub kind: u16,
    /// CPU the mark was taken on.
    pub cpu: u16,
    /// Length of the text that follows when this mark heads a [`TextMark`]
    /// (0 for a bare mark). Bit 31 set: the text was truncated.
    pub text_len: u32,
    pub a: u64,
    pub b: u64,
    pub c: u64,
    /// `current`'s comm when the mark was taken (NUL padded).
    pub comm: [u8; COMM_LEN],
}

/// Set in [`Mark::text_len`] when the text did not fit in [`TEXT_LEN`].
pub const TEXT_TRUNCATED: u32 = 1 << 31;

/// A mark followed by a short text (exec paths).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TextMark {
    pub mark: Mark,
    pub text: [u8; TEXT_LEN],
}

/// Bits of [`ProbeConfig::capture`]. Nothing beyond argv[0], paths and
/// counts is recorded unless asked for: arguments and environments hold secrets.
pub mod capture {
    pub const ARGS: u32 = 1;
    pub const ENV: u32 = 2;
}

/// Which stages follow a new child until it runs ([`Gates::await_child_attached`]).
pub mod await_child {
    /// first_run: its probes remove the child's entry when it first runs.
    pub const FIRST_RUN: u32 = 1;
    /// wakeup_new: its probes look the child up when it is woken.
    pub const WAKEUP_NEW: u32 = 2;
}

/// Flags of a traced process ([`TracedProc::flags`]).
pub mod traced {
    /// Its own spawns are recorded, and its children are traced too.
    pub const SPAWNS: u32 = 1;
    /// Only its life is recorded (first run, exec, exit), not its own spawns:
    /// children of a `record -p` target without `--follow`.
    pub const LIFE_ONLY: u32 = 2;
    /// Its memory is shared copy-on-write with a fork: it is a forked child
    /// that has not exec'd yet, or it has forked since its own exec. Only
    /// then are its copy-on-write faults counted.
    pub const COW_WINDOW: u32 = 4;
}

/// Value of the kernel-side set of traced processes, keyed by tgid. The fault
/// counters live here so the page-fault probe needs a single lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TracedProc {
    pub flags: u32,
    pub _pad: u32,
    /// User page faults of the process, counted by the fault probe only when
    /// the kernel's task counters cannot be read (no BTF).
    pub faults: u64,
    /// Write faults on present pages (copy-on-write breaks) while the process
    /// is in a [`traced::COW_WINDOW`].
    pub cow_faults: u64,
}

/// Counters that gate the probes firing on every event of the machine. The
/// kernel side keeps them in its .bss (global `GATES`); userspace reads them
/// back for `--probe-cost`. Each counts the traced situations a probe can
/// matter to. `summary.json` carries their values at the end of a
/// `--probe-cost` recording (all 0 when every traced window closed).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct Gates {
    /// Traced clones without CLONE_VM between syscall entry and return:
    /// only they run dup_mmap, whose write lock the mmap_lock probes follow.
    pub forks_in_flight: u64,
    /// Traced processes in a copy-on-write window ([`traced::COW_WINDOW`]):
    /// the page-fault probe counts only theirs.
    pub cow_windows: u64,
    /// Children forked and not yet run: the context-switch probe looks for them.
    pub awaiting_first_run: u64,
    /// Not a counter: the [`await_child`] bits of the stages whose probes
    /// did attach (not skipped, not unavailable), written by the loader once
    /// the plan is resolved (zero before, when nothing is traced yet). A
    /// forked child is remembered only for these: one whose first run no
    /// probe can see must not stay in the map. Without first_run, wakeup_new
    /// forgets the child itself, so no entry outlives its spawn.
    #[cfg_attr(feature = "user", serde(default))]
    pub await_child_attached: u64,
}

/// Name of the kernel side's .bss map, which holds [`Gates`].
pub const MAP_GATES: &str = ".bss";

/// Per-thread state kept while a traced thread is inside a clone syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CloneState {
    /// Flags of the clone in progress (tells a thread from a process at fork time).
    pub clone_flags: u64,
    /// The mm whose write lock brackets dup_mmap (0 until seen).
    pub lock_mm: u64,
    /// 0: no lock seen, 1: waiting, 2: held, 3: released (dup_mmap done).
    pub lock_phase: u32,
    pub _pad: u32,
    pub cpr_enter_ns: u64,
    pub cpr_total_ns: u64,
    pub avf_enter_ns: u64,
    pub avf_total_ns: u64,
    pub cpr_calls: u32,
    pub avf_calls: u32,
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
    pub newtask_pid: u32,
    pub newtask_clone_flags: u32,
    pub mmap_lock_mm: u32,
    pub mmap_lock_write: u32,
    pub mmap_lock_success: u32,
    pub fault_error_code: u32,
    pub sys_enter_clone_flags: u32,
    pub sys_enter_clone3_uargs: u32,
    pub sys_enter_execve_filename: u32,
    pub sys_enter_execveat_filename: u32,
    pub sys_enter_waitid_infop: u32,
    pub sys_enter_waitid_options: u32,
    pub sys_exit_ret: u32,
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
        newtask_pid: NO_FIELD,
        newtask_clone_flags: NO_FIELD,
        mmap_lock_mm: NO_FIELD,
        mmap_lock_write: NO_FIELD,
        mmap_lock_success: NO_FIELD,
        fault_error_code: NO_FIELD,
        sys_enter_clone_flags: NO_FIELD,
        sys_enter_clone3_uargs: NO_FIELD,
        sys_enter_execve_filename: NO_FIELD,
        sys_enter_execveat_filename: NO_FIELD,
        sys_enter_waitid_infop: NO_FIELD,
        sys_enter_waitid_options: NO_FIELD,
        sys_exit_ret: NO_FIELD,
    };
}

/// Offsets inside kernel structures, read from the kernel's BTF at load time.
/// 0 means unknown (except where a field says [`NO_FIELD`]): the probes
/// then report [`UNKNOWN`] for what needs them.
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
    /// Children of a process traced with [`traced::SPAWNS`] get
    /// [`traced::SPAWNS`] too (`--follow`, `record -- CMD`); otherwise
    /// [`traced::LIFE_ONLY`].
    pub follow: u32,
    /// What to capture beyond counts: [`capture::ARGS`], [`capture::ENV`].
    pub capture: u32,
    /// 1: the fault probe counts every fault of traced processes, because
    /// the kernel's task counters cannot be read (see
    /// [`KernelOffsets::has_fault_counters`]); 0: it counts only
    /// copy-on-write faults, inside copy-on-write windows.
    pub count_every_fault: u32,
    /// Size of the `MARKS` ring buffer in bytes (wakes the reader at half full).
    pub ring_buffer_bytes: u32,
    /// spawnprof's own PID namespace, when it is not the host's (see
    /// [`NsRegistration`]); zeros otherwise.
    pub pid_ns: PidNamespace,
    pub tp: TracepointOffsets,
    pub kernel: KernelOffsets,
}

impl ProbeConfig {
    pub const DEFAULT: Self = Self {
        follow: 0,
        capture: 0,
        count_every_fault: 1,
        ring_buffer_bytes: 0,
        pid_ns: PidNamespace { dev: 0, ino: 0 },
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
        },
    };
}

/// Key of the in-kernel stack sample counts: one per (process, kernel
/// stack, user stack). Stack ids index the `STACKS` map; negative when the
/// stack could not be taken (e.g. no user stack in a kernel thread).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StackKey {
    pub tgid: u32,
    pub kernel_stack: i32,
    pub user_stack: i32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
}

/// A PID namespace, as `bpf_get_ns_current_pid_tgid` takes it: the device
/// and inode of its `/proc/PID/ns/pid` file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidNamespace {
    pub dev: u64,
    pub ino: u64,
}

/// A process userspace asked to trace while spawnprof runs in a PID
/// namespace (a container). Userspace knows it only by its pid there; the
/// probes see every task by its pid on the host. The first probe that runs
/// in the process translates: it finds the namespace pid here, adds the host
/// tgid to `TRACED` with `flags` and writes it back to `host_tgid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NsRegistration {
    pub flags: u32,
    /// 0 until a probe has run in the process.
    pub host_tgid: u32,
}

/// Hash namespace tgid -> [`NsRegistration`].
pub const MAP_NS_REGISTRATIONS: &str = "NS_REGISTRATIONS";
/// One-entry array, set by userspace: 1 while a registration waits for its
/// process (the probes look at the map only then).
pub const MAP_NS_PENDING: &str = "NS_PENDING";

/// Stack trace map (kernel and user stacks by id).
pub const MAP_STACKS: &str = "STACKS";
/// Hash StackKey -> sample count.
pub const MAP_STACK_COUNTS: &str = "STACK_COUNTS";

/// Name of the ring buffer map carrying marks.
pub const MAP_MARKS: &str = "MARKS";
/// Per-CPU array, indexed by kind: marks dropped because the ring buffer was full.
pub const MAP_LOST: &str = "LOST";
/// LRU hash tgid -> [`TracedProc`]: the processes being traced.
pub const MAP_TRACED: &str = "TRACED";
/// Name of the loader-set global holding the [`ProbeConfig`].
pub const GLOBAL_CONFIG: &str = "CONFIG";

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), contain only integers and arrays of
    // integers, and have no padding the compiler could leave uninitialised
    // (fields are laid out at their natural alignment with explicit pads).
    unsafe impl aya::Pod for super::Mark {}
    unsafe impl aya::Pod for super::TracedProc {}
    unsafe impl aya::Pod for super::CloneState {}
    unsafe impl aya::Pod for super::Gates {}
    unsafe impl aya::Pod for super::TracepointOffsets {}
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::ProbeConfig {}
    unsafe impl aya::Pod for super::StackKey {}
    unsafe impl aya::Pod for super::PidNamespace {}
    unsafe impl aya::Pod for super::NsRegistration {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_sizes_are_stable() {
        assert_eq!(core::mem::size_of::<Mark>(), 64);
        assert_eq!(core::mem::size_of::<TextMark>(), 64 + TEXT_LEN);
        assert_eq!(core::mem::size_of::<TracedProc>(), 24);
    }

    #[test]
    fn fault_packing_round_trips_and_saturates() {
        assert_eq!(unpack_faults(pack_faults(7, 3)), (7, 3));
        assert_eq!(unpack_faults(pack_faults(u64::MAX, 1)), (0xffff_ffff, 1));
    }
}
