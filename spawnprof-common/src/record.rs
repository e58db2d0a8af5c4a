//! What crosses the ring buffer: one [`SpawnEvent`] per spawn, assembled in
//! the kernel and sent once when the spawn ends, plus the rarer
//! [`ExecEvent`]s (every exec attempt but a spawn's first successful one),
//! [`TextEvent`]s (`--capture-args`/`--capture-env`) and [`Notice`]s (for
//! stack symbolization). Every record starts with a `u16` of [`rec`].
use crate::{COMM_LEN, ExecState, TEXT_LEN};

/// Record kinds: the first two bytes of every ring-buffer record.
pub mod rec {
    pub const SPAWN: u16 = 1;
    pub const EXEC: u16 = 2;
    pub const CAPTURE_ARGS: u16 = 3;
    pub const CAPTURE_ENV: u16 = 4;
    /// A traced process exec'd (only while stacks are sampled).
    pub const NOTICE_EXEC: u16 = 5;
    /// A traced process exited (only while stacks are sampled).
    pub const NOTICE_EXIT: u16 = 6;
    /// A traced fork began while the fork-only probes were parked: wakes
    /// the reader to bring them back.
    pub const NOTICE_FORK: u16 = 7;
}

/// Slots of [`SpawnEvent::ts`]: stage boundaries, `bpf_ktime_get_ns`, 0
/// when not seen.
pub mod ts {
    /// The parent enters clone/clone3/fork/vfork.
    pub const CLONE_ENTER: usize = 0;
    /// copy_process entry and exit (fentry/kprobe only).
    pub const COPY_PROCESS_ENTER: usize = 1;
    /// dup_mmap's wait for the parent's mmap write lock, and the copy it
    /// brackets (mmap_lock tracepoints, or dup_mmap's uprobe hooks).
    pub const MM_LOCK_WAIT: usize = 2;
    pub const MM_COPY_START: usize = 3;
    pub const MM_COPY_END: usize = 4;
    /// dup_mmap entry and exit (fentry/kprobe only).
    pub const DUP_MMAP_ENTER: usize = 5;
    pub const DUP_MMAP_EXIT: usize = 6;
    pub const COPY_PROCESS_EXIT: usize = 7;
    /// `task:task_newtask`, at the end of copy_process.
    pub const NEWTASK: usize = 8;
    /// `sched:sched_process_fork`, in the parent.
    pub const FORK_DONE: usize = 9;
    /// `sched:sched_wakeup_new`: the child is put on a run queue.
    pub const WAKEUP_NEW: usize = 10;
    /// The parent returns from the clone.
    pub const CLONE_EXIT: usize = 11;
    /// The child is switched onto a CPU for the first time.
    pub const FIRST_RUN: usize = 12;
    /// The child's own return from the clone syscall (syscall tracepoints only).
    pub const CHILD_RETURN: usize = 13;
    /// The first exec attempt's entry, and the first successful one's.
    pub const EXEC_FIRST_ENTER: usize = 14;
    pub const EXEC_ENTER: usize = 15;
    /// The successful exec's point of no return (sched_prepare_exec or
    /// begin_new_exec), the new image in place, and the return to user space.
    pub const EXEC_PREPARE: usize = 16;
    pub const EXEC_DONE: usize = 17;
    pub const EXEC_RETURN: usize = 18;
    /// The exit of the process (last thread) or of the thread.
    pub const EXIT: usize = 19;
    /// A wait returned the child (processes only).
    pub const REAP: usize = 20;
    pub const COUNT: usize = 21;
    /// Slots in the record (room for later boundaries without a new layout).
    pub const SLOTS: usize = 24;
}

/// What has happened to a spawn. In the kernel each is a byte of
/// [`SpawnEvent::progress`] (at the bit's position), written with a plain
/// byte store: the parent, the child and the reaper run on different CPUs
/// at once, and a read-modify-write of one word would lose updates (older
/// kernels have no atomic or). [`state`] folds them into these bits.
pub mod spawn {
    /// A thread (CLONE_THREAD), not a process.
    pub const THREAD: u32 = 1;
    /// The command spawnprof started (`record -- CMD`): created by userspace.
    pub const ROOT: u32 = 1 << 1;
    pub const PARENT_RETURNED: u32 = 1 << 2;
    pub const EXITED: u32 = 1 << 3;
    pub const REAPED: u32 = 1 << 4;
    /// A fork whose parent's copy-on-write faults after it are still being
    /// counted (until the parent's next fork, exec or exit).
    pub const COW_PENDING: u32 = 1 << 5;
    /// Not run yet: the first-run probes look for it.
    pub const AWAITING_FIRST_RUN: u32 = 1 << 6;
    /// The first successful exec is in the record.
    pub const EXECED: u32 = 1 << 7;
    /// Finished, but the ring buffer was full: userspace collects it from
    /// the map.
    pub const EMIT_PENDING: u32 = 1 << 8;
    /// Released by a wait no probe saw (the reaper was not traced): reaped,
    /// at an unknown time.
    pub const REAP_UNSEEN: u32 = 1 << 9;
    /// A thread whose exec made it the process's leader (de_thread): its
    /// thread record ends at the exec.
    pub const EXEC_TOOK_OVER: u32 = 1 << 10;
    /// The clone failed: the record is the parent's side only.
    pub const CLONE_FAILED: u32 = 1 << 11;
    /// Collected by userspace when the recording ended, unfinished.
    pub const RECORDING_ENDED: u32 = 1 << 12;
    /// An exec attempt is between entry and return (the record's exec fields
    /// may still change).
    pub const EXEC_IN_FLIGHT: u32 = 1 << 13;
    /// The parent's copy-on-write count after this fork is in `parent_cow`.
    pub const PARENT_COW_KNOWN: u32 = 1 << 14;
    /// The spawn's own exit code could not be read.
    pub const EXIT_CODE_UNKNOWN: u32 = 1 << 15;
    /// It exited still awaiting its first run: the probes missed its first
    /// switch-in (rare, under load).
    pub const FIRST_RUN_MISSED: u32 = 1 << 16;
    /// Its tid is in its first-run slot (`AWAITED`), so the context-switch
    /// probes find it without a hash lookup per switch.
    pub const FIRST_RUN_SLOT: u32 = 1 << 17;
    /// A fork begun while the mmap-lock probes were parked: its dup_mmap
    /// was not seen.
    pub const FORK_UNWATCHED: u32 = 1 << 18;
    /// The child's first switch-in was not seen, and its first run is its
    /// wake-up plus the scheduler's own count of its wait before it (on
    /// its parent's CPU) or its return from the clone (on another).
    pub const FIRST_RUN_FROM_RUN_DELAY: u32 = 1 << 19;
    /// A fork begun while the page-fault probe was parked: its
    /// copy-on-write counts were not seen.
    pub const FAULTS_UNWATCHED: u32 = 1 << 20;
    /// Bytes of [`super::SpawnEvent::progress`].
    pub const COUNT: usize = 24;

    /// The bits of a record's progress bytes.
    pub fn state(progress: &[u8; COUNT]) -> u32 {
        progress
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != 0)
            .fold(0, |bits, (i, _)| bits | 1 << i)
    }
}

/// Bit of [`SpawnEvent::exec_path_len`] and [`ExecEvent::path_len`]: the
/// path did not fit in [`TEXT_LEN`].
pub const PATH_TRUNCATED: u16 = 1 << 15;
/// Bit of [`ExecEvent::path_len`]: the path could not be read (its page
/// not resident, say); the path is then empty.
pub const PATH_UNREADABLE: u16 = 1 << 14;
/// The length bits of a path length field.
pub const PATH_LEN_MASK: u16 = 0x3fff;

/// [`SpawnEvent::exit_signal`] (and the clone state's) when the signal is
/// the flags' low byte, as clone() and fork() pass it.
pub const SIGNAL_IN_FLAGS: u8 = u8::MAX;

/// A fault count the kernel side could not read.
pub const FAULTS_UNKNOWN: u32 = u32::MAX;

/// One spawn, parent and child sides. Kept in the kernel's `SPAWNS` map
/// (keyed by the child's tid) while it happens and sent whole when it ends:
/// a process when it is reaped (and its parent has returned from the clone
/// and, for a fork, its parent's copy-on-write window has closed), a thread
/// when it exits, the root command when it exits.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SpawnEvent {
    /// [`rec::SPAWN`].
    pub kind: u16,
    /// [`crate::syscall`] id of the clone (0: not seen).
    pub syscall: u16,
    /// The signal the child sends its parent when it exits, where the
    /// syscall takes it apart from the flags (clone3, kernel_clone);
    /// [`SIGNAL_IN_FLAGS`] where it is their low byte (clone, fork).
    pub exit_signal: u32,
    /// Unique per spawn: the fork's timestamp (the root's: its registration).
    pub spawn_id: u64,
    /// One byte per [`spawn`] bit (see there).
    pub progress: [u8; spawn::COUNT],
    pub parent_tgid: u32,
    pub parent_tid: u32,
    pub child_tid: u32,
    pub child_tgid: u32,
    /// The CPU of the fork, and the CPU the child first ran on (`u16::MAX`: unknown).
    pub parent_cpu: u16,
    pub first_cpu: u16,
    /// The successful exec's syscall, attempts in all, and those that
    /// failed before it (a PATH search's misses).
    pub exec_syscall: u16,
    pub exec_attempts: u16,
    pub failed_attempts: u16,
    /// Bytes of `exec_path`, with [`PATH_TRUNCATED`].
    pub exec_path_len: u16,
    /// `task_struct.exit_code` at exit (see [`spawn::EXIT_CODE_UNKNOWN`]).
    pub exit_code: u32,
    pub clone_flags: u64,
    /// The clone's return in the parent (the child's pid as it sees it, or -errno).
    pub clone_ret: i64,
    /// The last exec attempt's return.
    pub exec_ret: i64,
    /// The new image's argument and environment counts and bytes
    /// ([`crate::UNKNOWN_U32`] / [`crate::UNKNOWN`] when not readable).
    pub argc: u32,
    pub envc: u32,
    pub env_bytes: u64,
    /// The child's user page faults and copy-on-write faults before its
    /// exec and over its life ([`FAULTS_UNKNOWN`] when not counted).
    pub faults_pre_exec: u32,
    pub cow_pre_exec: u32,
    pub faults_total: u32,
    pub cow_total: u32,
    /// The parent's copy-on-write faults from this fork to its next fork,
    /// exec or exit ([`spawn::PARENT_COW_KNOWN`]).
    pub parent_cow: u32,
    /// The child's pid as its reaper sees it, when that is another number
    /// (PID namespaces), and the reaper.
    pub reap_ns_pid: u32,
    pub reaper_tgid: u32,
    /// `serve --cgroup-label`: the spawning parent's cgroup label (see
    /// `metrics::SeriesKey::cgroup`); 0 otherwise.
    pub cgroup_slot: u32,
    /// copy_page_range and anon_vma_fork time and calls inside the clone
    /// (fentry/kprobe tiers).
    pub cpr_ns: u64,
    pub avf_ns: u64,
    pub cpr_calls: u32,
    pub avf_calls: u32,
    /// Stage boundaries: [`ts`] slots.
    pub ts: [u64; ts::SLOTS],
    /// The parent process's name at the clone (its main thread's), the
    /// child's before and after its exec (after: set in `serve` only with
    /// `--label-by exec`).
    pub parent_comm: [u8; COMM_LEN],
    pub comm_before: [u8; COMM_LEN],
    pub comm_after: [u8; COMM_LEN],
    /// The process leader's exec attempt in flight (`enter` 0: none). An
    /// attempt from another thread waits in the kernel's `EXECS` hash
    /// instead; the leader's, the usual case, costs no hash insert.
    pub attempt: ExecState,
    /// The successful exec's path as the kernel got it (`linux_binprm.filename`).
    /// Last, so that a record is sent only as far as its path goes (see
    /// [`SpawnEvent::wire_len`]).
    pub exec_path: [u8; TEXT_LEN],
}

/// Where a spawn record's path starts: the shortest record on the wire.
pub const SPAWN_PATH_OFFSET: usize = core::mem::offset_of!(SpawnEvent, exec_path);

impl SpawnEvent {
    /// The bytes the kernel sends: up to the path's NUL. "/bin/true" makes
    /// a record of 442 bytes instead of 688; the reader zero-fills the rest.
    /// The kernel's path is at most `TEXT_LEN - 1` bytes, so a mask bounds
    /// it: a compare would not do for 5.10's verifier, which loses the
    /// bound when LLVM compares a copy of the register. Not rounded to
    /// words either: LLVM turns that into a mask the verifier reads as up
    /// to 504.
    #[inline(always)]
    pub fn wire_len(&self) -> usize {
        const _: () = assert!(TEXT_LEN.is_power_of_two());
        let n = (self.exec_path_len & PATH_LEN_MASK) as usize & (TEXT_LEN - 1);
        SPAWN_PATH_OFFSET + n + 1
    }

    /// The record as sent: its first [`Self::wire_len`] bytes.
    #[inline(always)]
    pub fn wire(&self) -> &[u8] {
        // SAFETY: plain integers and arrays; wire_len is at most its size.
        unsafe { core::slice::from_raw_parts((self as *const Self).cast::<u8>(), self.wire_len()) }
    }

    /// The [`spawn`] bits of its progress bytes.
    pub fn state(&self) -> u32 {
        spawn::state(&self.progress)
    }

    /// Sets the progress bytes of `bits` (userspace: the root record, the
    /// sweep at the end, tests).
    pub fn mark(&mut self, bits: u32) {
        for (i, b) in self.progress.iter_mut().enumerate() {
            if bits & (1 << i) != 0 {
                *b = 1;
            }
        }
    }
}

/// One exec attempt that is not its spawn's first successful one (a
/// failure, such as each missing PATH directory, or a later exec).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    /// [`rec::EXEC`].
    pub kind: u16,
    pub syscall: u16,
    /// Bytes of `path`, with [`PATH_TRUNCATED`] and [`PATH_UNREADABLE`].
    pub path_len: u16,
    pub _pad: u16,
    /// The spawn it belongs to ([`SpawnEvent::spawn_id`], `child_tgid`).
    pub spawn_id: u64,
    pub child_tgid: u32,
    /// The thread that made the attempt.
    pub tid: u32,
    pub enter: u64,
    pub exit: u64,
    /// 0 or -errno.
    pub ret: i64,
    pub path: [u8; TEXT_LEN],
}

/// Captured argument or environment strings of a spawn's exec'd image,
/// NUL-separated (`--capture-args`, `--capture-env`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TextEvent {
    /// [`rec::CAPTURE_ARGS`] or [`rec::CAPTURE_ENV`].
    pub kind: u16,
    pub _pad: u16,
    /// Bytes of `text`; bit 31: the strings were longer.
    pub len: u32,
    pub spawn_id: u64,
    pub child_tgid: u32,
    pub _pad2: u32,
    pub text: [u8; TEXT_LEN],
}

/// Bit 31 of [`TextEvent::len`].
pub const TEXT_TRUNCATED: u32 = 1 << 31;

/// A traced process exec'd or exited, for stack symbolization: its memory
/// maps are read while it still runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Notice {
    /// [`rec::NOTICE_EXEC`] or [`rec::NOTICE_EXIT`].
    pub kind: u16,
    pub _pad: u16,
    pub tgid: u32,
}

/// Indexes of the per-CPU `LOST` counters.
pub mod lost {
    /// A spawn not recorded: the `SPAWNS` map was full at its fork.
    pub const SPAWN_NO_ROOM: u32 = 0;
    /// A clone not followed: the `CLONES` map was full at its entry.
    pub const CLONE_NO_ROOM: u32 = 1;
    /// A finished spawn that did not fit in the ring buffer: kept in the
    /// map for userspace to collect (not lost).
    pub const SPAWN_DEFERRED: u32 = 2;
    /// An exec attempt's record did not fit in the ring buffer.
    pub const EXEC_RING: u32 = 3;
    /// A capture or a notice did not fit in the ring buffer.
    pub const TEXT_RING: u32 = 4;
    /// A finished spawn that could neither be sent nor kept.
    pub const SPAWN_RING: u32 = 5;
    /// A pid-reuse collision: a finished spawn still waiting in the map
    /// when its tid was given to a new task.
    pub const SPAWN_OVERWRITTEN: u32 = 6;
    pub const COUNT: u32 = 8;

    /// Its name in summary.json.
    pub fn name(i: u32) -> &'static str {
        match i {
            SPAWN_NO_ROOM => "spawn_no_room",
            CLONE_NO_ROOM => "clone_no_room",
            SPAWN_DEFERRED => "spawn_deferred",
            EXEC_RING => "exec_ring_full",
            TEXT_RING => "text_ring_full",
            SPAWN_RING => "spawn_ring_full",
            SPAWN_OVERWRITTEN => "spawn_overwritten",
            _ => "unknown",
        }
    }
}
