//! Maps and the loader-set configuration global.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use spawnprof_common::{
    CloneState, ExecState, Gates, NsRegistration, ProbeConfig, QUIET_SPAWNS, ReapKey,
    SPAWN_SLOT_COUNT, Slot, SpawnEvent, TRACED_SLOT_COUNT, TracedProc, lost,
};

use crate::slots::Table;

/// Records to userspace. The loader resizes it (`--ring-buffer`).
#[map]
pub static RECORDS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// What could not be kept, per [`lost`] reason.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(lost::COUNT, 0);

/// Spawns in progress, keyed by the child's tid: the record each is sent
/// as when it ends ([`spawn_table`]). Entries go when their record is sent (or
/// collected by userspace).
#[map]
pub static SPAWN_SLOTS: Array<Slot<SpawnEvent>> = Array::with_max_entries(SPAWN_SLOT_COUNT, 0);

/// Spawns in progress whose slot another holds. The loader sizes it to the
/// kernel's pid_max, the most tasks that can exist at once (a benchmark can
/// hold 30,000 unreaped children); entries are allocated as they are
/// inserted, not up front.
#[map]
pub static SPAWNS: HashMap<u32, SpawnEvent> = HashMap::with_max_entries(32768, BPF_F_NO_PREALLOC);

#[inline(always)]
pub fn spawn_table() -> Table<SpawnEvent, HashMap<u32, SpawnEvent>> {
    Table {
        slots: &SPAWN_SLOTS,
        count: SPAWN_SLOT_COUNT,
        spill: &SPAWNS,
    }
}

/// Map flag: allocate entries as they are inserted.
const BPF_F_NO_PREALLOC: u32 = 1;

/// Scratch space for building a new spawn record (too large for the stack).
#[map]
pub static SCRATCH: PerCpuArray<SpawnEvent> = PerCpuArray::with_max_entries(1, 0);

/// Exec attempts between entry and return, keyed by tid.
#[map]
pub static EXECS: HashMap<u32, ExecState> = HashMap::with_max_entries(16384, 0);

/// Zombies their reaper names by another pid than the host's (PID
/// namespaces): (reaper, its pid for the child) -> the child's host tgid.
#[map]
pub static NS_REAP: HashMap<ReapKey, u32> = HashMap::with_max_entries(4096, 0);

/// The traced processes (tgid), grown at fork ([`traced_table`]).
#[map]
pub static TRACED_SLOTS: Array<Slot<TracedProc>> = Array::with_max_entries(TRACED_SLOT_COUNT, 0);

/// The traced processes whose slot another holds. LRU so a storm of
/// processes that never exit cannot wedge the filter.
#[map]
pub static TRACED: LruHashMap<u32, TracedProc> = LruHashMap::with_max_entries(65536, 0);

#[inline(always)]
pub fn traced_table() -> Table<TracedProc, LruHashMap<u32, TracedProc>> {
    Table {
        slots: &TRACED_SLOTS,
        count: TRACED_SLOT_COUNT,
        spill: &TRACED,
    }
}

/// Tasks awaiting their first run, each at slot `tid % AWAITED_SLOTS` (0:
/// free). A context switch to a task not in its slot returns after this
/// array read (inlined by the verifier) unless some awaited task found its
/// slot taken ([`Gate::AwaitingUnslotted`]).
#[map]
pub static AWAITED: Array<u32> = Array::with_max_entries(AWAITED_SLOTS, 0);

pub const AWAITED_SLOTS: u32 = 256;

/// Traced threads inside a clone syscall, by tid ([`clone_table`]).
#[map]
pub static CLONE_SLOTS: Array<Slot<CloneState>> = Array::with_max_entries(CLONE_SLOT_COUNT, 0);

const CLONE_SLOT_COUNT: u32 = 8192;

/// Traced threads inside a clone syscall whose slot another one holds.
#[map]
pub static CLONES: HashMap<u32, CloneState> = HashMap::with_max_entries(4096, 0);

#[inline(always)]
pub fn clone_table() -> Table<CloneState, HashMap<u32, CloneState>> {
    Table {
        slots: &CLONE_SLOTS,
        count: CLONE_SLOT_COUNT,
        spill: &CLONES,
    }
}

/// Entry 0 is non-zero once the recording has ended (set by userspace):
/// nothing more is sent and no spawn is started, while the probes, still
/// attached, are detached in the background.
#[map]
pub static STOPPED: Array<u32> = Array::with_max_entries(1, 0);

#[inline(always)]
pub fn stopped() -> bool {
    STOPPED.get(0).is_some_and(|v| *v != 0)
}

/// Entry 0 is non-zero while userspace has the fork-only probes (mmap
/// lock, page faults) detached: a fork then marks its record.
#[map]
pub static PARKED: Array<u32> = Array::with_max_entries(1, 0);

/// Processes to trace named by their pid in spawnprof's PID namespace:
/// see [`NsRegistration`]. Used only when spawnprof runs in one.
#[map]
pub static NS_REGISTRATIONS: HashMap<u32, NsRegistration> = HashMap::with_max_entries(64, 0);

/// Entry 0 is non-zero while a registration waits (written by userspace
/// only, so it needs no atomics).
#[map]
pub static NS_PENDING: Array<u32> = Array::with_max_entries(1, 0);

/// Set by the loader before load (`EbpfLoader::set_global`). It lives in
/// .rodata, so the verifier sees constants and prunes what this kernel lacks.
#[unsafe(no_mangle)]
pub static CONFIG: ProbeConfig = ProbeConfig::DEFAULT;

/// `bpf_map_update_elem` flag: only if the key is new.
pub const BPF_NOEXIST: u64 = 1;

/// Reads one configuration value. The volatile read stops the compiler from
/// folding the default in at build time.
#[inline(always)]
pub fn config<T: Copy>(field: &T) -> T {
    unsafe { core::ptr::read_volatile(field) }
}

/// Gates for the probes that fire on every event of the machine (each mmap
/// lock operation, page fault and context switch): see
/// [`spawnprof_common::Gates`]. While a gate is zero its probes return after
/// one load, without a map lookup or a clock read. Updated with atomic adds.
/// The only zero-initialised global, so .bss is exactly it and userspace can
/// read it back.
#[unsafe(no_mangle)]
pub static mut GATES: Gates = Gates {
    forks_in_flight: 0,
    cow_windows: 0,
    awaiting_first_run: 0,
    await_child_attached: 0,
    zombies: 0,
    ns_reap_keys: 0,
    awaiting_unslotted: 0,
    forks_seen: 0,
    spawns_seen: 0,
    spawns_since_fork: 0,
    cow_faults_seen: 0,
};

/// The [`spawnprof_common::await_child`] stages a new child is remembered
/// for: those that attached (see [`Gates::await_child_attached`]).
#[inline(always)]
pub fn awaited_stages() -> u32 {
    unsafe { core::ptr::read_volatile(&raw const GATES.await_child_attached) as u32 }
}

/// One of the [`GATES`] counters.
#[derive(Clone, Copy)]
pub enum Gate {
    ForksInFlight,
    CowWindows,
    AwaitingFirstRun,
    Zombies,
    NsReapKeys,
    AwaitingUnslotted,
    ForksSeen,
    SpawnsSeen,
}

#[inline(always)]
fn counter(gate: Gate) -> *mut u64 {
    // SAFETY: only raw pointers are made; every access goes through a
    // volatile load or an atomic add.
    unsafe {
        match gate {
            Gate::ForksInFlight => &raw mut GATES.forks_in_flight,
            Gate::CowWindows => &raw mut GATES.cow_windows,
            Gate::AwaitingFirstRun => &raw mut GATES.awaiting_first_run,
            Gate::Zombies => &raw mut GATES.zombies,
            Gate::NsReapKeys => &raw mut GATES.ns_reap_keys,
            Gate::AwaitingUnslotted => &raw mut GATES.awaiting_unslotted,
            Gate::ForksSeen => &raw mut GATES.forks_seen,
            Gate::SpawnsSeen => &raw mut GATES.spawns_seen,
        }
    }
}

/// Whether a gate is open (its counter non-zero). Any non-zero value opens
/// it: a counter that drifted (say, a decrement for a clone seen only
/// half) costs time, never data.
#[inline(always)]
pub fn armed(gate: Gate) -> bool {
    unsafe { core::ptr::read_volatile(counter(gate)) != 0 }
}

/// A traced fork began: the count of spawns without one starts again.
#[inline(always)]
pub fn fork_began() {
    unsafe { core::ptr::write_volatile(&raw mut GATES.spawns_since_fork, 0) };
}

/// A copy-on-write fault counted in a window: userspace parks the fault
/// probe while this stays still ([`Gates::cow_faults_seen`]). No atomic:
/// only a change matters, and a shared line is costly on every CoW fault.
#[inline(always)]
pub fn cow_fault_seen() {
    let counter = unsafe { &raw mut GATES.cow_faults_seen };
    unsafe { core::ptr::write_volatile(counter, core::ptr::read_volatile(counter) + 1) };
}

/// Counts a spawn toward the parking threshold; true for the one that
/// reaches the first, [`QUIET_SPAWNS`]. Userspace's later, doubled
/// thresholds are met by its timer: a wake-up at each would cut the
/// reader's batches short. Two CPUs may both see one value: a wake-up
/// missed or doubled, and userspace's timer parks a little later.
#[inline(always)]
pub fn quiet_reached() -> bool {
    let counter = unsafe { &raw mut GATES.spawns_since_fork };
    let before = unsafe { core::ptr::read_volatile(counter) };
    add(counter, 1);
    before + 1 == QUIET_SPAWNS
}

#[inline(always)]
pub fn arm(gate: Gate) {
    add(counter(gate), 1);
}

#[inline(always)]
pub fn disarm(gate: Gate) {
    add(counter(gate), u64::MAX); // wrapping -1
}

/// Atomic add whose result is unused: the original BPF_XADD instruction,
/// which every kernel with BPF supports.
#[inline(always)]
fn add(gate: *mut u64, v: u64) {
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            gate, v,
        );
    }
}
