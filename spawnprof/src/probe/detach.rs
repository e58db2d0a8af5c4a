//! Ending a recording without waiting for the kernel to detach.
//!
//! Detaching a tracepoint program waits for an RCU grace period under the
//! kernel's tracepoint lock, one program after another: about 1.4 s for the
//! whole set on the development VM. A recording does not need to wait:
//!
//! ```text
//! stop: STOPPED[0] = 1, then a grace period (membarrier): no program is
//!       still sending, and none will (they check STOPPED before sending)
//! hand-off: a detached grandchild inherits the BPF descriptors and holds
//!       them until this process has dropped its own; its exit then
//!       detaches the programs, while spawnprof writes the recording
//! ```
//!
//! The programs that still run until then return early, or touch only
//! map entries already read.
use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{Array, MapData},
};
use spawnprof_common::MAP_STOPPED;

/// Tells the probes the recording ended, and waits until every program
/// run that could have missed it is over.
pub fn stop(ebpf: &mut Ebpf) -> Result<()> {
    let mut flag: Array<&mut MapData, u32> =
        Array::try_from(ebpf.map_mut(MAP_STOPPED).context("STOPPED map missing")?)?;
    flag.set(0, 1, 0)?;
    // MEMBARRIER_CMD_GLOBAL is synchronize_rcu(), and program runs are RCU
    // read-side sections. Without it, a generous pause does the same.
    // SAFETY: a syscall with integer arguments only.
    if unsafe { libc::syscall(libc::SYS_membarrier, 1, 0, 0) } != 0 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

/// Forks the holder of this process's BPF descriptors, so that dropping
/// them here is only a reference count and the kernel detaches the
/// programs when the holder exits: once the returned descriptor is
/// dropped, which the caller does right after its own BPF objects. `None`
/// when it could not: the caller then detaches itself.
pub fn hand_off() -> Option<OwnedFd> {
    let mut pipe = [0; 2];
    // SAFETY: `pipe` has room for two descriptors.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    let [read_end, write_end] = pipe;
    // Listed after the pipe is made, so no number in the list can be
    // reused by it, and before the fork: the child of a threaded process
    // must not allocate.
    let close = descriptors_to_close(&pipe);
    // SAFETY: between fork and _exit the children call only
    // async-signal-safe functions (fork, setsid, close, read, _exit).
    match unsafe { libc::fork() } {
        -1 => {
            // SAFETY: both ends are ours and used nowhere else.
            unsafe {
                libc::close(read_end);
                libc::close(write_end);
            }
            None
        }
        0 => unsafe {
            if libc::fork() == 0 {
                libc::setsid();
                hold(&close, read_end, write_end);
            }
            libc::_exit(0)
        },
        middle => {
            // SAFETY: our own child, which exits at once.
            unsafe {
                libc::waitpid(middle, std::ptr::null_mut(), 0);
                libc::close(read_end);
            }
            // Its closing (the drop, or this process's exit) is the
            // holder's signal.
            // SAFETY: a descriptor of ours, owned from here on.
            Some(unsafe { OwnedFd::from_raw_fd(write_end) })
        }
    }
}

/// In the holder: drops everything but the BPF descriptors (so that no
/// pipe or terminal is kept open for whoever reads this process's output),
/// waits for the recorder to drop its own, and exits. A `spawnprof bench`
/// records many times in one process: each holder must go with its
/// recording, not pile up until the bench ends.
unsafe fn hold(close: &[RawFd], read_end: RawFd, write_end: RawFd) -> ! {
    unsafe {
        for &fd in close {
            libc::close(fd);
        }
        libc::close(write_end);
        let mut byte = 0u8;
        while libc::read(read_end, (&raw mut byte).cast(), 1) > 0 {}
        libc::_exit(0)
    }
}

/// Every open descriptor that is neither a BPF object, a perf event nor
/// one of `keep`.
fn descriptors_to_close(keep: &[RawFd]) -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let fd: RawFd = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            let target = target.to_string_lossy();
            let bpf = target.starts_with("anon_inode:bpf") || target == "anon_inode:[perf_event]";
            (!bpf && !keep.contains(&fd)).then_some(fd)
        })
        .collect()
}
