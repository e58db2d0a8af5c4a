//! Maps and the loader-set configuration global.
use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use spawnprof_common::{CloneState, ProbeConfig, TracedProc, kind};

/// Marks to userspace. The loader resizes it (`--ring-buffer`).
#[map]
pub static MARKS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// Marks dropped because `MARKS` was full, per kind.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(kind::COUNT as u32, 0);

/// The traced processes (tgid), grown at fork. LRU so a storm of processes
/// that never exit cannot wedge the filter.
#[map]
pub static TRACED: LruHashMap<u32, TracedProc> = LruHashMap::with_max_entries(65536, 0);

/// Traced threads currently inside a clone syscall.
#[map]
pub static CLONES: HashMap<u32, CloneState> = HashMap::with_max_entries(16384, 0);

/// Children forked but not yet run: tid -> tgid.
#[map]
pub static AWAIT_FIRST_RUN: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);

/// Set by the loader before load (`EbpfLoader::set_global`). It lives in
/// .rodata, so the verifier sees constants and prunes what this kernel lacks.
#[unsafe(no_mangle)]
pub static CONFIG: ProbeConfig = ProbeConfig::DEFAULT;

/// Reads one configuration value. The volatile read stops the compiler from
/// folding the default in at build time.
#[inline(always)]
pub fn config<T: Copy>(field: &T) -> T {
    unsafe { core::ptr::read_volatile(field) }
}
