//! Filling memory without memset. The BPF target has none, so the
//! compiler calls its fallback, a loop over single bytes: hundreds of
//! iterations per spawn for the records built here.
use spawnprof_common::TracedProc;

/// Zeroes `*p` eight bytes at a time. BPF has no memset: the compiler's
/// fallback is a loop over single bytes (688 of them for a spawn record,
/// most of a fork program's time), and the volatile stores keep it from
/// turning this loop back into that call.
#[inline(always)]
pub fn zero<T>(p: *mut T) {
    const { assert!(core::mem::size_of::<T>() % 8 == 0 && core::mem::align_of::<T>() >= 8) };
    let words = p as *mut u64;
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 8 {
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
}

/// A new traced-process entry with `flags` and every count zero, built
/// without the byte-wise memset `..Default::default()` compiles to.
#[inline(always)]
pub fn traced_entry(flags: u32) -> TracedProc {
    let mut entry = core::mem::MaybeUninit::<TracedProc>::uninit();
    zero(entry.as_mut_ptr());
    // SAFETY: every byte was just written, and zero is valid for each field.
    let mut entry = unsafe { entry.assume_init() };
    entry.flags = flags;
    entry
}
