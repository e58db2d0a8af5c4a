//! spawnprof's kernel side. Each spawn is assembled here, in a record kept
//! under the child's tid (`spawn`), and sent to userspace once, when it
//! ends. Every program filters (is this process traced?), stamps the time
//! and hands its stage to `spawn`. One module per probe family:
//!
//! - `probes::clone`  clone/clone3/fork/vfork entry and return
//! - `probes::sched`  fork done, wake-up, first run, exec done, exit, release
//! - `probes::exec`   execve/execveat attempts
//! - `probes::reap`   wait4/waitid returning a child
//! - `probes::mm`     the mmap_lock tracepoints that bracket dup_mmap
//! - `probes::faults` page faults, counted per process (never streamed)
//! - `probes::kfuncs` fentry/fexit and kprobe/kretprobe variants for kernel
//!   functions; the loader attaches whichever the kernel allows.
//! - `probes::stacks` on-CPU stack samples, counted in the kernel.
//!
//! `metrics` folds finished spawns into histograms instead of sending
//! them (`serve`, `top`). `spawn` is the record's state machine, `task`
//! reads kernel structures through BTF offsets, `emit` sends records,
//! `maps` holds the state, and `mem` fills memory without the byte-wise
//! memset the BPF target falls back to.
#![no_std]
#![no_main]
// atomic_xadd: the BPF target lacks core's atomic types.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod emit;
mod maps;
mod mem;
mod metrics;
mod probes;
mod scope;
mod slots;
mod spawn;
mod task;

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
