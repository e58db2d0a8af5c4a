//! On-CPU stack sampling of the traced processes (perf_event cpu-clock),
//! counted per (process, kernel stack, user stack) in the kernel. This shows
//! copy_page_range, anon_vma_fork, clear_page and friends even where fentry
//! and kprobes are unavailable.
use aya_ebpf::{
    helpers::bpf_get_current_comm,
    macros::{map, perf_event},
    maps::{HashMap, StackTrace},
    programs::{PerfEventContext, tracing::StackIdContext as _},
};
use spawnprof_common::StackKey;

use crate::{emit::current, scope::traced};

/// `BPF_F_USER_STACK`: take the user-space stack instead of the kernel's.
const BPF_F_USER_STACK: u64 = 1 << 8;

#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(16384, 0);

#[map]
pub static STACK_COUNTS: HashMap<StackKey, u64> = HashMap::with_max_entries(65536, 0);

#[perf_event]
pub fn sample_stack(ctx: PerfEventContext) -> u32 {
    let (_, tgid) = current();
    if traced(tgid).is_none() {
        return 0;
    }
    let key = StackKey {
        tgid,
        kernel_stack: ctx.get_stackid(&STACKS, 0).map_or(-1, |id| id as i32),
        user_stack: ctx
            .get_stackid(&STACKS, BPF_F_USER_STACK)
            .map_or(-1, |id| id as i32),
        _pad: 0,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    match STACK_COUNTS.get_ptr_mut(key) {
        Some(count) => unsafe { *count += 1 },
        None => {
            let _ = STACK_COUNTS.insert(key, 1u64, 0);
        }
    }
    0
}
