//! Copy-on-write faults, counted per traced process in the kernel (faults are
//! far too frequent to stream). The counters ride along on the fork, exec
//! and exit marks.
//!
//! The probe fires on every user fault of the machine, so it does as little
//! as it can: the fault totals come from the kernel's own task counters (read
//! at exec and exit), and copy-on-write faults are only counted while a
//! traced process shares memory with a fork (`COW_WINDOWS`); otherwise the
//! probe returns after one load. Without the task counters' offsets (no
//! BTF) it falls back to counting every fault of traced processes.
//!
//! Where the kernel allows, the fault tracepoint is not attached at all:
//! fentry or a kprobe on `do_wp_page`, which handles exactly the write
//! faults on present pages, fires far less often (not for the read faults
//! and first touches that make up most of an exec).
use aya_ebpf::{
    macros::{fentry, kprobe, raw_tracepoint, tracepoint},
    programs::{FEntryContext, ProbeContext, RawTracePointContext, TracePointContext},
};

use spawnprof_common::{TracedProc, traced as tflags};

use super::field;
use crate::{
    emit::current,
    maps::{CONFIG, Gate, armed, config, cow_fault_seen},
    scope::traced,
};

/// x86 page-fault error code bits: the page was present / the access was a write.
const PF_PROT: u64 = 1;
const PF_WRITE: u64 = 2;

#[tracepoint]
pub fn page_fault_user(ctx: TracePointContext) -> u32 {
    count(|| field::<u64>(&ctx, config(&CONFIG.tp.fault_error_code)).unwrap_or(0))
}

/// Preferred: no classic record to build on every fault of the machine.
/// TP_PROTO(unsigned long address, struct pt_regs *regs, unsigned long error_code)
#[raw_tracepoint(tracepoint = "page_fault_user")]
pub fn raw_page_fault_user(ctx: RawTracePointContext) -> u32 {
    count(|| ctx.arg::<u64>(2))
}

#[inline(always)]
fn count(error_code: impl FnOnce() -> u64) -> u32 {
    let every_fault = config(&CONFIG.count_every_fault) != 0;
    if !every_fault && !armed(Gate::CowWindows) {
        return 0;
    }
    // Most faults (first touches, reads) cannot be copy-on-write: they
    // return here, before looking their process up.
    let cow = error_code() & (PF_PROT | PF_WRITE) == PF_PROT | PF_WRITE;
    if !every_fault && !cow {
        return 0;
    }
    let (_, tgid) = current();
    let Some(proc_) = traced(tgid) else {
        return 0;
    };
    // Plain increments: a count lost between two threads of one process
    // is tolerable, and cheaper than an atomic on every fault.
    if every_fault {
        unsafe { (*proc_).faults += 1 };
    }
    if cow {
        count_cow(proc_);
    }
    0
}

/// One copy-on-write fault of a traced process, counted if it is in a
/// copy-on-write window.
#[inline(always)]
fn count_cow(proc_: *mut TracedProc) {
    unsafe {
        if (*proc_).flags & tflags::COW_WINDOW != 0 {
            (*proc_).cow_faults += 1;
            cow_fault_seen();
        }
    }
}

/// `vm_fault_t do_wp_page(struct vm_fault *vmf)`: a write to a present,
/// write-protected page (a copy-on-write break or the reuse of a page that
/// is no longer shared), in the faulting task.
#[inline(always)]
fn write_protect_fault() -> u32 {
    if !armed(Gate::CowWindows) {
        return 0;
    }
    let (_, tgid) = current();
    if let Some(proc_) = traced(tgid) {
        count_cow(proc_);
    }
    0
}

#[fentry(function = "do_wp_page")]
pub fn fentry_do_wp_page(_ctx: FEntryContext) -> u32 {
    write_protect_fault()
}

#[kprobe]
pub fn kprobe_do_wp_page(_ctx: ProbeContext) -> u32 {
    write_protect_fault()
}
