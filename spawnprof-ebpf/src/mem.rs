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
    zero_first(p, core::mem::size_of::<T>());
}

/// Zeroes the first `bytes` of `*p` the same way; `bytes` is a constant
/// at every call, so the loop unrolls.
#[inline(always)]
pub fn zero_first<T>(p: *mut T, bytes: usize) {
    const { assert!(core::mem::size_of::<T>() % 8 == 0 && core::mem::align_of::<T>() >= 8) };
    let words = p as *mut u64;
    let mut i = 0;
    while i < bytes.min(core::mem::size_of::<T>()) / 8 {
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
}

/// A value of all zero bytes, built without the byte-wise memset
/// `Default::default()` compiles to.
///
/// # Safety
/// Zero must be a valid value of every field of `T`.
#[inline(always)]
pub unsafe fn zeroed<T>() -> T {
    let mut value = core::mem::MaybeUninit::<T>::uninit();
    zero(value.as_mut_ptr());
    // SAFETY: every byte was just written; the caller vouches for zero.
    unsafe { value.assume_init() }
}

/// A new traced-process entry with `flags` and every count zero.
#[inline(always)]
pub fn traced_entry(flags: u32) -> TracedProc {
    // SAFETY: TracedProc is integers only.
    let mut entry: TracedProc = unsafe { zeroed() };
    entry.flags = flags;
    entry
}
