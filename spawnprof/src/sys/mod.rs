//! The machine and this process: clocks, /proc and /sys, and the node
//! facts that explain spawn costs.
pub mod cgroup;
pub mod clock;
pub mod memlock;
pub mod node;
pub mod procfs;
pub mod term;

/// Gives the heap freed since start-up back to the kernel. Loading the
/// probes peaks at some 55 MiB (the object, BTF, verifier logs), and glibc
/// keeps much of that heap once its large-allocation threshold has risen:
/// `serve` stayed 10 MiB above what it uses for as long as it ran.
pub fn release_freed_heap() {
    // SAFETY: takes only the padding to keep; safe at any time.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}
