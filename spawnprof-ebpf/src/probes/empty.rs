//! Programs that do nothing, for `cargo xtask bench-overhead` only: with
//! `SPAWNPROF_BENCH_EMPTY_PROGRAMS=1` the loader attaches them in place of
//! every tracepoint and raw tracepoint program of the plan, to time what
//! entering spawnprof's own hooks costs without their work.
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

#[tracepoint]
pub fn empty_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

#[raw_tracepoint]
pub fn empty_raw_tracepoint(_ctx: RawTracePointContext) -> u32 {
    0
}
