//! spawnprof's kernel side. Every program filters (is this process traced?),
//! stamps the time and emits one small [`spawnprof_common::Mark`]; userspace
//! turns the marks into spawns. One module per probe family:
//!
//! - `probes::clone`  clone/clone3/fork/vfork entry and return
//! - `probes::sched`  fork done, wake-up, first run, exec done, exit, reap
//! - `probes::exec`   execve/execveat attempts
//! - `probes::mm`     the mmap_lock tracepoints that bracket dup_mmap
//! - `probes::faults` page faults, counted per process (never streamed)
//! - `probes::kfuncs` fentry/fexit and kprobe/kretprobe variants for kernel
//!   functions; the loader attaches whichever the kernel allows.
#![no_std]
#![no_main]
// atomic_xadd: the BPF target lacks core's atomic types.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod emit;
mod maps;
mod probes;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any reachable panic path, so this is never run.
    loop {}
}

/// GPL-compatible: the probe_read helpers are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
