//! User page faults, counted per traced process in the kernel (they are far
//! too frequent to stream). The counters ride along on the fork, exec and
//! exit marks.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

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
    let (_, tgid) = current();
    let Some(proc_) = traced(tgid) else {
        return 0;
    };
    let code = field::<u64>(&ctx, config(&CONFIG.tp.fault_error_code)).unwrap_or(0);
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
