//! Kernel functions inside copy_process, timed where the kernel allows it.
//! Each hook exists twice, as fentry/fexit and as kprobe/kretprobe; the
//! loader's attach plan picks one per stage (fentry first) and says which.
//!
//! Hooked functions (prototypes as of 6.1, only the entry/exit matter here):
//! - `struct task_struct *copy_process(struct pid *, int, int, struct kernel_clone_args *)`
//! - `int dup_mmap(struct mm_struct *mm, struct mm_struct *oldmm)` (static;
//!   inlined on 5.10 and 6.12 here: its first and last calls,
//!   `uprobe_start_dup_mmap()` and `uprobe_end_dup_mmap()`, bracket it then)
//! - `int copy_page_range(struct vm_area_struct *dst, struct vm_area_struct *src)` (5.11+ shape)
//! - `int anon_vma_fork(struct vm_area_struct *vma, struct vm_area_struct *pvma)`
//! - `void uprobe_start_dup_mmap(void)` and `void uprobe_dup_mmap(struct
//!   mm_struct *oldmm, struct mm_struct *newmm)`: called only by dup_mmap,
//!   the first before it takes the parent's mmap write lock, the second
//!   right after; together they time the lock wait without a probe on
//!   every mmap lock operation of the machine (CONFIG_UPROBES kernels).
use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use spawnprof_common::ts::{
    COPY_PROCESS_ENTER, COPY_PROCESS_EXIT, DUP_MMAP_ENTER, DUP_MMAP_EXIT, MM_COPY_START,
    MM_LOCK_WAIT,
};

use crate::{
    emit::{current, now},
    maps::{Gate, armed},
    spawn::clones,
};

/// Stamps a boundary of the calling thread's traced clone, if it is in one.
#[inline(always)]
fn clone_mark(slot: usize) -> u32 {
    let t = now();
    if let Some(c) = clones::get(current().0)
        && let Some(v) = unsafe { (*c).ts.get_mut(slot) }
    {
        *v = t;
    }
    0
}

/// The lock-wait boundaries inside dup_mmap, where the mmap_lock
/// tracepoint derivation would put them.
#[inline(always)]
fn lock_wait_mark(slot: usize) -> u32 {
    if !armed(Gate::ForksInFlight) {
        return 0;
    }
    clone_mark(slot)
}

/// Which per-clone accumulator a timed function feeds.
#[derive(Clone, Copy)]
enum Timed {
    CopyPageRange,
    AnonVmaFork,
}

#[inline(always)]
fn timed_enter(which: Timed) -> u32 {
    let (tid, _) = current();
    if let Some(s) = clones::get(tid) {
        let t = now();
        unsafe {
            match which {
                Timed::CopyPageRange => (*s).cpr_enter_ns = t,
                Timed::AnonVmaFork => (*s).avf_enter_ns = t,
            }
        }
    }
    0
}

#[inline(always)]
fn timed_exit(which: Timed) -> u32 {
    let t = now();
    let (tid, _) = current();
    if let Some(s) = clones::get(tid) {
        unsafe {
            match which {
                Timed::CopyPageRange if (*s).cpr_enter_ns != 0 => {
                    (*s).cpr_total_ns += t - (*s).cpr_enter_ns;
                    (*s).cpr_calls += 1;
                    (*s).cpr_enter_ns = 0;
                }
                Timed::AnonVmaFork if (*s).avf_enter_ns != 0 => {
                    (*s).avf_total_ns += t - (*s).avf_enter_ns;
                    (*s).avf_calls += 1;
                    (*s).avf_enter_ns = 0;
                }
                _ => {}
            }
        }
    }
    0
}

// fentry/fexit tier.

#[fentry(function = "copy_process")]
pub fn fentry_copy_process(_ctx: FEntryContext) -> u32 {
    clone_mark(COPY_PROCESS_ENTER)
}

#[fexit(function = "copy_process")]
pub fn fexit_copy_process(_ctx: FExitContext) -> u32 {
    clone_mark(COPY_PROCESS_EXIT)
}

#[fentry(function = "dup_mmap")]
pub fn fentry_dup_mmap(_ctx: FEntryContext) -> u32 {
    clone_mark(DUP_MMAP_ENTER)
}

#[fexit(function = "dup_mmap")]
pub fn fexit_dup_mmap(_ctx: FExitContext) -> u32 {
    clone_mark(DUP_MMAP_EXIT)
}

#[fentry(function = "copy_page_range")]
pub fn fentry_copy_page_range(_ctx: FEntryContext) -> u32 {
    timed_enter(Timed::CopyPageRange)
}

#[fexit(function = "copy_page_range")]
pub fn fexit_copy_page_range(_ctx: FExitContext) -> u32 {
    timed_exit(Timed::CopyPageRange)
}

#[fentry(function = "anon_vma_fork")]
pub fn fentry_anon_vma_fork(_ctx: FEntryContext) -> u32 {
    timed_enter(Timed::AnonVmaFork)
}

#[fexit(function = "anon_vma_fork")]
pub fn fexit_anon_vma_fork(_ctx: FExitContext) -> u32 {
    timed_exit(Timed::AnonVmaFork)
}

// kprobe/kretprobe tier.

#[kprobe]
pub fn kprobe_copy_process(_ctx: ProbeContext) -> u32 {
    clone_mark(COPY_PROCESS_ENTER)
}

#[kretprobe]
pub fn kretprobe_copy_process(_ctx: RetProbeContext) -> u32 {
    clone_mark(COPY_PROCESS_EXIT)
}

#[kprobe]
pub fn kprobe_dup_mmap(_ctx: ProbeContext) -> u32 {
    clone_mark(DUP_MMAP_ENTER)
}

#[kretprobe]
pub fn kretprobe_dup_mmap(_ctx: RetProbeContext) -> u32 {
    clone_mark(DUP_MMAP_EXIT)
}

#[kprobe]
pub fn kprobe_copy_page_range(_ctx: ProbeContext) -> u32 {
    timed_enter(Timed::CopyPageRange)
}

#[kretprobe]
pub fn kretprobe_copy_page_range(_ctx: RetProbeContext) -> u32 {
    timed_exit(Timed::CopyPageRange)
}

#[kprobe]
pub fn kprobe_anon_vma_fork(_ctx: ProbeContext) -> u32 {
    timed_enter(Timed::AnonVmaFork)
}

#[kretprobe]
pub fn kretprobe_anon_vma_fork(_ctx: RetProbeContext) -> u32 {
    timed_exit(Timed::AnonVmaFork)
}

// dup_mmap where it is inlined (5.10, 6.12): its first call,
// uprobe_start_dup_mmap, and its last, uprobe_end_dup_mmap, both tiers.
// Entries only, so the kprobe tier needs no kretprobe.

#[fentry(function = "uprobe_start_dup_mmap")]
pub fn fentry_dup_mmap_begin(_ctx: FEntryContext) -> u32 {
    clone_mark(DUP_MMAP_ENTER)
}

#[fentry(function = "uprobe_end_dup_mmap")]
pub fn fentry_dup_mmap_end(_ctx: FEntryContext) -> u32 {
    clone_mark(DUP_MMAP_EXIT)
}

#[kprobe]
pub fn kprobe_dup_mmap_begin(_ctx: ProbeContext) -> u32 {
    clone_mark(DUP_MMAP_ENTER)
}

#[kprobe]
pub fn kprobe_dup_mmap_end(_ctx: ProbeContext) -> u32 {
    clone_mark(DUP_MMAP_EXIT)
}

// The lock wait inside dup_mmap, both tiers.

#[fentry(function = "uprobe_start_dup_mmap")]
pub fn fentry_uprobe_start_dup_mmap(_ctx: FEntryContext) -> u32 {
    lock_wait_mark(MM_LOCK_WAIT)
}

#[fentry(function = "uprobe_dup_mmap")]
pub fn fentry_uprobe_dup_mmap(_ctx: FEntryContext) -> u32 {
    lock_wait_mark(MM_COPY_START)
}

#[kprobe]
pub fn kprobe_uprobe_start_dup_mmap(_ctx: ProbeContext) -> u32 {
    lock_wait_mark(MM_LOCK_WAIT)
}

#[kprobe]
pub fn kprobe_uprobe_dup_mmap(_ctx: ProbeContext) -> u32 {
    lock_wait_mark(MM_COPY_START)
}
