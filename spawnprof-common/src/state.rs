//! What the kernel side keeps between probe runs, in its maps and .bss:
//! the traced processes, the clones in flight, the exec attempts in
//! flight, and the gates of the machine-wide probes. Userspace reads some
//! of it back (gates, the traced set) and writes the rest (the root spawn,
//! namespace registrations).
use crate::{COMM_LEN, record::ts};

/// Which stages follow a new child until it runs ([`Gates::await_child_attached`]).
pub mod await_child {
    /// first_run: its probes look for the child when it first runs.
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

/// Value of the kernel-side set of traced processes, keyed by tgid. The
/// fault counters live here so the page-fault probe needs a single lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TracedProc {
    pub flags: u32,
    /// The child of this process's latest fork whose record waits for the
    /// parent's copy-on-write count (0: none), and that count at the fork.
    pub cow_child: u32,
    /// User page faults of the process, counted by the fault probe only when
    /// the kernel's task counters cannot be read (no BTF).
    pub faults: u64,
    /// Write faults on present pages (copy-on-write breaks) while the process
    /// is in a [`traced::COW_WINDOW`].
    pub cow_faults: u64,
    pub cow_at_fork: u64,
}

/// Counters that gate the probes firing on every event of the machine. The
/// kernel side keeps them in its .bss (global `GATES`); userspace reads them
/// back for `--probe-cost`. Each counts the traced situations a probe can
/// matter to; `summary.json` carries their values at the end of a
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
    /// Spawned tasks not run yet: the context-switch probes look for them.
    pub awaiting_first_run: u64,
    /// Not a counter: the [`await_child`] bits of the stages whose probes
    /// did attach (not skipped, not unavailable), written by the loader once
    /// the plan is resolved. A child is marked as awaiting its first run
    /// only when a probe can see that run.
    #[cfg_attr(feature = "user", serde(default))]
    pub await_child_attached: u64,
    /// Spawned processes that exited and are not reaped yet: the probe on
    /// task release looks for them, for reaps no wait probe saw.
    #[cfg_attr(feature = "user", serde(default))]
    pub zombies: u64,
    /// Zombies whose reaper sees them by another pid (PID namespaces): the
    /// wait probes translate that pid through `NS_REAP` only then.
    #[cfg_attr(feature = "user", serde(default))]
    pub ns_reap_keys: u64,
    /// Tasks awaiting their first run whose slot in `AWAITED` another held:
    /// while non-zero, every context switch looks the next task up.
    #[cfg_attr(feature = "user", serde(default))]
    pub awaiting_unslotted: u64,
    /// Not a gate: traced clones without CLONE_VM seen so far. Userspace
    /// parks the fork-only probes while it stays still, and brings them
    /// back when it moves.
    #[cfg_attr(feature = "user", serde(default))]
    pub forks_seen: u64,
    /// Not a gate: spawns the probes started records for, so that the
    /// parking needs no count from userspace (`serve` reads no records).
    #[cfg_attr(feature = "user", serde(default))]
    pub spawns_seen: u64,
    /// Not a gate: spawns since the latest traced clone without CLONE_VM
    /// began. At [`QUIET_SPAWNS`] the probes wake userspace, which parks
    /// the fork-only probes once it passes its current threshold.
    #[cfg_attr(feature = "user", serde(default))]
    pub spawns_since_fork: u64,
    /// Not a gate: copy-on-write faults counted in a window so far (plain
    /// increments: two CPUs may lose one, and only a change matters).
    /// `serve` and `top` park the page-fault probe once it stays still
    /// a while, though windows are open (an idle shell's, PID 1's).
    #[cfg_attr(feature = "user", serde(default))]
    pub cow_faults_seen: u64,
}

/// Spawns without a fork before the fork-only probes are first parked.
/// Each time a fork brings them back the threshold doubles, up to
/// [`QUIET_SPAWNS_MAX`]: a workload that forks now and then soon stops
/// losing its forks' dup_mmap to the parking, and one that never forks
/// pays the machine-wide probes for few spawns.
pub const QUIET_SPAWNS: u64 = 32;
/// The highest threshold the doubling reaches.
pub const QUIET_SPAWNS_MAX: u64 = 4096;

/// Per-thread state kept while a traced thread is inside a clone syscall,
/// keyed by the parent's tid; copied into the spawn's record at the fork.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CloneState {
    /// Flags of the clone in progress (tells a thread from a process at fork time).
    pub clone_flags: u64,
    /// [`crate::syscall`] id.
    pub syscall: u16,
    /// 0: no lock seen, 1: waiting, 2: held, 3: released (dup_mmap done).
    pub lock_phase: u8,
    /// The signal the child sends its parent when it exits, where the
    /// syscall takes it apart from the flags (clone3, kernel_clone);
    /// [`crate::SIGNAL_IN_FLAGS`] where it is their low byte (clone, fork).
    pub exit_signal: u8,
    /// The [`crate::parked`] groups parked when this fork began: what of it
    /// is not seen (dup_mmap, copy-on-write counts).
    pub unwatched: u8,
    /// The child, once the fork named it (0 before).
    pub child: u32,
    /// The mm whose write lock brackets dup_mmap (0 until seen).
    pub lock_mm: u64,
    /// The parent side's boundaries, [`ts`] slots `CLONE_ENTER..=NEWTASK`.
    pub ts: [u64; ts::NEWTASK + 1],
    pub cpr_enter_ns: u64,
    pub cpr_total_ns: u64,
    pub avf_enter_ns: u64,
    pub avf_total_ns: u64,
    pub cpr_calls: u32,
    pub avf_calls: u32,
    /// The parent process's name at clone entry (its main thread's).
    pub comm: [u8; COMM_LEN],
}

/// An exec attempt between its entry and its return: in its spawn record
/// when the process leader made it, else in a hash keyed by the tid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecState {
    pub enter: u64,
    /// The user-space path pointer, read at the return (by then the kernel
    /// has copied it, so its page is resident).
    pub path: u64,
    /// [`crate::syscall`] id.
    pub syscall: u16,
    pub _pad: u16,
    pub tgid: u32,
}

/// Key of `NS_REAP`: a zombie as its reaper will name it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReapKey {
    pub reaper_tgid: u32,
    pub pid: u32,
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

/// Bit of [`NsRegistration::flags`] (beside [`traced`]'s): the process is
/// the root command, whose spawn record the translating probe creates.
pub const NS_ROOT: u32 = 1 << 16;

/// An entry of a slot table: a value kept in an array at index `key %`
/// its length, where the kernel side reads it without a hash lookup. `key`
/// is 0 while the slot is free. A key whose slot another key holds lives
/// in the table's hash instead (see the kernel side's `slots` module).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Slot<V> {
    pub key: u32,
    pub _pad: u32,
    pub value: V,
}

/// Slots of the spawns in progress ([`crate::MAP_SPAWN_SLOTS`]), by the
/// child's tid: 5.6 MiB of records.
pub const SPAWN_SLOT_COUNT: u32 = 8192;
/// Slots of the traced processes ([`crate::MAP_TRACED_SLOTS`]), by tgid.
pub const TRACED_SLOT_COUNT: u32 = 32768;
