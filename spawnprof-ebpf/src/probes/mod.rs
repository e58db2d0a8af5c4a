pub mod clone;
pub mod exec;
pub mod faults;
pub mod kfuncs;
pub mod mm;
pub mod sched;
pub mod stacks;

use aya_ebpf::programs::TracePointContext;
use spawnprof_common::NO_FIELD;

/// Reads a tracepoint field at an offset the loader parsed from tracefs.
/// `None` when this kernel lacks the field or the read fails.
#[inline(always)]
pub fn field<T>(ctx: &TracePointContext, offset: u32) -> Option<T> {
    if offset == NO_FIELD {
        return None;
    }
    unsafe { ctx.read_at::<T>(offset as usize) }.ok()
}
