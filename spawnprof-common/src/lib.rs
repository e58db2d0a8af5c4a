//! Types shared by the kernel side (`spawnprof-ebpf`) and the userspace side
//! (`spawnprof`). Everything here is `#[repr(C)]` and plain-old-data: the
//! layout is the wire format of the ring buffer, of the kernel's maps and
//! of the loader's globals.
//!
//! - [`record`]: what the kernel sends: one [`SpawnEvent`] per spawn,
//!   assembled in the kernel, and the rarer exec, capture and notice records.
//! - [`state`]: what the kernel keeps between probe runs (traced processes,
//!   clones and execs in flight, gates).
//! - [`config`]: what the loader sets before loading.
//! - [`metrics`]: the histograms and counters of `serve` and `top`.
#![cfg_attr(not(test), no_std)]

pub mod config;
pub mod metrics;
pub mod record;
pub mod state;

pub use config::{KernelOffsets, ProbeConfig, Scope, TracepointOffsets, capture, scope};
pub use record::{
    ExecEvent, FAULTS_UNKNOWN, Notice, PATH_LEN_MASK, PATH_TRUNCATED, PATH_UNREADABLE,
    SIGNAL_IN_FLAGS, SPAWN_PATH_OFFSET, SpawnEvent, TEXT_TRUNCATED, TextEvent, lost, rec, spawn,
    ts,
};
pub use state::{
    CloneState, ExecState, Gates, NS_ROOT, NsRegistration, PidNamespace, QUIET_SPAWNS,
    QUIET_SPAWNS_MAX, ReapKey, SPAWN_SLOT_COUNT, Slot, StackKey, TRACED_SLOT_COUNT, TracedProc,
    await_child, traced,
};

/// Length of a kernel task name (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;
/// Bytes of a path or captured text kept. Longer ones are truncated and flagged.
pub const TEXT_LEN: usize = 256;

/// A value the kernel side could not obtain (a field missing on this kernel).
pub const UNKNOWN: u64 = u64::MAX;
/// A 32-bit value the kernel side could not obtain.
pub const UNKNOWN_U32: u32 = u32::MAX;

/// A tracepoint field offset that this kernel's format file does not have.
pub const NO_FIELD: u32 = u32::MAX;

/// Which syscall started a spawn or an exec.
pub mod syscall {
    pub const CLONE: u16 = 1;
    pub const CLONE3: u16 = 2;
    pub const FORK: u16 = 3;
    pub const VFORK: u16 = 4;
    pub const EXECVE: u16 = 5;
    pub const EXECVEAT: u16 = 6;
    /// Seen in `kernel_clone` (fentry/kprobe tiers), which every clone,
    /// clone3, fork and vfork goes through: the syscall itself is not known.
    pub const KERNEL_CLONE: u16 = 7;
}

/// Clone flags (include/uapi/linux/sched.h), for the reports and the probes.
pub mod clone_flags {
    pub const CLONE_VM: u64 = 0x0000_0100;
    pub const CLONE_FS: u64 = 0x0000_0200;
    pub const CLONE_FILES: u64 = 0x0000_0400;
    pub const CLONE_SIGHAND: u64 = 0x0000_0800;
    pub const CLONE_PIDFD: u64 = 0x0000_1000;
    pub const CLONE_PTRACE: u64 = 0x0000_2000;
    pub const CLONE_VFORK: u64 = 0x0000_4000;
    pub const CLONE_PARENT: u64 = 0x0000_8000;
    pub const CLONE_THREAD: u64 = 0x0001_0000;
    pub const CLONE_NEWNS: u64 = 0x0002_0000;
    pub const CLONE_SYSVSEM: u64 = 0x0004_0000;
    pub const CLONE_SETTLS: u64 = 0x0008_0000;
    pub const CLONE_PARENT_SETTID: u64 = 0x0010_0000;
    pub const CLONE_CHILD_CLEARTID: u64 = 0x0020_0000;
    pub const CLONE_DETACHED: u64 = 0x0040_0000;
    pub const CLONE_UNTRACED: u64 = 0x0080_0000;
    pub const CLONE_CHILD_SETTID: u64 = 0x0100_0000;
    pub const CLONE_NEWCGROUP: u64 = 0x0200_0000;
    pub const CLONE_NEWUTS: u64 = 0x0400_0000;
    pub const CLONE_NEWIPC: u64 = 0x0800_0000;
    pub const CLONE_NEWUSER: u64 = 0x1000_0000;
    pub const CLONE_NEWPID: u64 = 0x2000_0000;
    pub const CLONE_NEWNET: u64 = 0x4000_0000;
    pub const CLONE_IO: u64 = 0x8000_0000;
    /// clone3 only (`clone_args.flags` is 64 bits wide).
    pub const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
    pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    pub const CLONE_NEWTIME: u64 = 0x0000_0080;
    /// Low byte: the signal sent to the parent on exit (SIGCHLD for fork).
    /// CLONE_NEWTIME shares it, so it counts only with clone3.
    pub const CSIGNAL: u64 = 0x0000_00ff;
}

/// The kernel side's .bss map, which holds [`Gates`].
pub const MAP_GATES: &str = ".bss";
/// Ring buffer of [`record`]s.
pub const MAP_RECORDS: &str = "RECORDS";
/// Per-CPU array, indexed by [`lost`]: what could not be kept.
pub const MAP_LOST: &str = "LOST";
/// Hash child tid -> [`SpawnEvent`]: spawns in progress whose slot another
/// holds.
pub const MAP_SPAWNS: &str = "SPAWNS";
/// LRU hash tgid -> [`TracedProc`]: the processes being traced whose slot
/// another holds.
pub const MAP_TRACED: &str = "TRACED";
/// Array of [`Slot`]s of [`TracedProc`]: most of the processes being traced.
pub const MAP_TRACED_SLOTS: &str = "TRACED_SLOTS";
/// Array of [`Slot`]s of [`SpawnEvent`]: most of the spawns in progress.
pub const MAP_SPAWN_SLOTS: &str = "SPAWN_SLOTS";
/// Hash namespace tgid -> [`NsRegistration`].
pub const MAP_NS_REGISTRATIONS: &str = "NS_REGISTRATIONS";
/// One-entry array, set by userspace: 1 while a registration waits for its
/// process (the probes look at the map only then).
pub const MAP_NS_PENDING: &str = "NS_PENDING";
/// One-entry array, set by userspace when the recording ends: the probes
/// send nothing more.
pub const MAP_STOPPED: &str = "STOPPED";
/// One-entry array: the [`parked`] groups of fork-only probes userspace
/// has detached.
pub const MAP_PARKED: &str = "PARKED";

/// The groups of fork-only probes parked apart (bits of `PARKED[0]`).
pub mod parked {
    /// The mmap-lock programs, which time dup_mmap: parked while no fork
    /// is in flight.
    pub const MM_LOCK: u32 = 1;
    /// The page-fault program, which counts copy-on-write faults: parked
    /// only while, besides, no copy-on-write window is open.
    pub const FAULTS: u32 = 2;
}
/// Stack trace map (kernel and user stacks by id).
pub const MAP_STACKS: &str = "STACKS";
/// Hash StackKey -> sample count.
pub const MAP_STACK_COUNTS: &str = "STACK_COUNTS";
/// Name of the loader-set global holding the [`ProbeConfig`].
pub const GLOBAL_CONFIG: &str = "CONFIG";

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), contain only integers and arrays of
    // integers, and have no padding the compiler could leave uninitialised
    // (fields are laid out at their natural alignment with explicit pads).
    unsafe impl aya::Pod for super::SpawnEvent {}
    unsafe impl aya::Pod for super::TracedProc {}
    unsafe impl aya::Pod for super::Slot<super::TracedProc> {}
    unsafe impl aya::Pod for super::Slot<super::SpawnEvent> {}
    unsafe impl aya::Pod for super::CloneState {}
    unsafe impl aya::Pod for super::Gates {}
    unsafe impl aya::Pod for super::TracepointOffsets {}
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::ProbeConfig {}
    unsafe impl aya::Pod for super::StackKey {}
    unsafe impl aya::Pod for super::PidNamespace {}
    unsafe impl aya::Pod for super::Scope {}
    unsafe impl aya::Pod for super::NsRegistration {}
    unsafe impl aya::Pod for super::metrics::SeriesKey {}
    unsafe impl aya::Pod for super::metrics::Series {}
    unsafe impl aya::Pod for super::metrics::MetricsState {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_sizes_are_stable() {
        assert_eq!(core::mem::size_of::<SpawnEvent>(), 688);
        assert_eq!(core::mem::size_of::<ExecEvent>(), 48 + TEXT_LEN);
        assert_eq!(core::mem::size_of::<TextEvent>(), 24 + TEXT_LEN);
        assert_eq!(core::mem::size_of::<Notice>(), 8);
        assert_eq!(core::mem::size_of::<TracedProc>(), 32);
        assert_eq!(core::mem::size_of::<CloneState>(), 160);
    }

    #[test]
    fn the_spawn_id_and_kind_lead_every_record() {
        assert_eq!(core::mem::offset_of!(SpawnEvent, kind), 0);
        assert_eq!(core::mem::offset_of!(ExecEvent, kind), 0);
        assert_eq!(core::mem::offset_of!(TextEvent, kind), 0);
        assert_eq!(core::mem::offset_of!(Notice, kind), 0);
        assert_eq!(core::mem::offset_of!(SpawnEvent, ts), 168);
        assert_eq!(core::mem::offset_of!(SpawnEvent, exec_path), 432);
        assert_eq!(SPAWN_PATH_OFFSET + TEXT_LEN, 688);
    }

    #[test]
    fn progress_bytes_fold_into_state_bits() {
        let mut p = [0u8; spawn::COUNT];
        p[spawn::EXITED.trailing_zeros() as usize] = 1;
        p[spawn::REAPED.trailing_zeros() as usize] = 1;
        assert_eq!(spawn::state(&p), spawn::EXITED | spawn::REAPED);
    }
}
