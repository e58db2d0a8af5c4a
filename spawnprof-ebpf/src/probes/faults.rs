//! User page faults, counted per traced process in the kernel (they are far
//! too frequent to stream). The counters ride along on the fork, exec and
//! exit marks.
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use super::field;
use crate::{
    emit::{current, traced},
    maps::{CONFIG, config},
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
    let (_, tgid) = current();
    let Some(proc_) = traced(tgid) else {
        return 0;
    };
    let code = error_code();
    // Plain increments: the BPF target has no 64-bit fetch_add in Rust core,
    // and a lost count between two threads of one process is tolerable.
    unsafe {
        (*proc_).faults += 1;
        if code & (PF_PROT | PF_WRITE) == PF_PROT | PF_WRITE {
            (*proc_).cow_faults += 1;
        }
    }
    0
}
