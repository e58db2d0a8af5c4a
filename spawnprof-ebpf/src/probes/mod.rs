pub mod clone;
pub mod empty;
pub mod exec;
pub mod faults;
pub mod kfuncs;
pub mod mm;
pub mod reap;
pub mod sched;
pub mod stacks;

use aya_ebpf::{helpers::bpf_probe_read_kernel, programs::TracePointContext};
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

/// The syscall argument at `reg_off` (a `pt_regs` offset from BTF) in the
/// saved user registers at `regs`, as handed to the syscall functions
/// (`__x64_sys_*`, `__arm64_sys_*`).
#[inline(always)]
pub fn syscall_arg(regs: u64, reg_off: u32) -> Option<u64> {
    if reg_off == NO_FIELD || regs == 0 {
        return None;
    }
    unsafe { bpf_probe_read_kernel((regs as *const u8).add(reg_off as usize) as *const u64) }.ok()
}
