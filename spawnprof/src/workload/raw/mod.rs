//! vfork-style process creation without glibc's wrappers.
//!
//! Calling glibc's `vfork()` from Rust is unsound (Rust has no
//! `returns_twice`; the libc crate deprecates it: rust-lang/libc#1596): the
//! child returns into compiled Rust code running on the parent's stack and
//! may clobber stack slots the parent still relies on. Both functions here
//! therefore issue the syscall from inline assembly and, in the child,
//! *never return into Rust code of the caller*: the child branch jumps
//! straight into [`exec_child`], which execs or `_exit`s.
//!
//! * [`vfork_exec`]: `vfork(2)`. The child runs on the parent's stack,
//!   below the parent's stack pointer (which the parent no longer uses);
//!   the asm moves 512 bytes further down first, past any red zone.
//! * [`clone3_vfork_exec`]: `clone3(CLONE_VM|CLONE_VFORK)` with
//!   `exit_signal = SIGCHLD` and a dedicated mmap'd stack ([`ChildStack`],
//!   with a guard page), i.e. what glibc's `posix_spawn` does internally.
//!
//! In both cases the parent thread is suspended until the child has exec'd
//! or exited, so one `ExecArgs` and one stack per spawning thread are
//! reused for every spawn. The child only calls async-signal-safe
//! functions (`execv`/`execvp`, `_exit`) on data prepared before the
//! syscall; its only writes to shared memory are the `err` field of
//! [`ExecArgs`] and, through glibc, the calling thread's `errno`.
//!
//! Signals: unlike glibc's `posix_spawn`, the signal mask is not blocked
//! around the syscall and handlers are not reset in the child. That is
//! safe in the spawner because it installs no asynchronous signal
//! handlers (std's SIGSEGV/SIGBUS stack-overflow handlers only run on
//! faults, and tokio's SIGCHLD handler is only installed by the tokio
//! methods, which never use this module).
//!
//! x86_64 and aarch64 are implemented (aarch64 has no vfork syscall:
//! `clone(CLONE_VM|CLONE_VFORK|SIGCHLD)` with no new stack is the same);
//! elsewhere these return `Unsupported`. Each architecture's assembly has
//! a file of its own; what they share is here.

use std::ffi::c_void;
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

use libc::c_char;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod unsupported;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(target_arch = "aarch64")]
pub use aarch64::{clone3_vfork_exec, vfork_exec};
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub use unsupported::{clone3_vfork_exec, vfork_exec};
#[cfg(target_arch = "x86_64")]
pub use x86_64::{clone3_vfork_exec, vfork_exec};

/// What an exec'ing child needs. Lives in the parent's memory; a
/// vfork-style child reads it and stores its exec errno in `err`.
#[repr(C)]
pub struct ExecArgs {
    pub path: *const c_char,
    pub argv: *const *const c_char,
    /// `execvp` (search PATH) instead of `execv`.
    pub search_path: bool,
    /// errno of the failed exec, 0 if the exec succeeded (or has not run).
    pub err: AtomicI32,
}

/// Child side of every raw method: exec, and on failure record errno and
/// `_exit(127)` (no atexit handlers, no stdio flush: the memory may be the
/// parent's).
pub extern "C" fn exec_child(arg: *mut c_void) -> ! {
    // SAFETY: `arg` points at the parent's ExecArgs, valid until the parent
    // resumes (after our exec/exit). execv/execvp/_exit are async-signal-safe.
    unsafe {
        let a = &*(arg as *const ExecArgs);
        if a.search_path {
            libc::execvp(a.path, a.argv);
        } else {
            libc::execv(a.path, a.argv);
        }
        a.err.store(*libc::__errno_location(), Ordering::Relaxed);
        libc::_exit(127)
    }
}

/// A private stack for clone3 children: `size` usable bytes above one
/// PROT_NONE guard page.
pub struct ChildStack {
    map: *mut c_void,
    map_len: usize,
}

// SAFETY: owned mapping, only used by the thread that owns the lane.
unsafe impl Send for ChildStack {}

const GUARD: usize = 4096;

impl ChildStack {
    pub fn new(size: usize) -> io::Result<ChildStack> {
        let map_len = size.next_multiple_of(4096) + GUARD;
        // SAFETY: fresh anonymous mapping.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the first page of our mapping becomes the guard.
        if unsafe { libc::mprotect(map, GUARD, libc::PROT_NONE) } != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: ours.
            unsafe { libc::munmap(map, map_len) };
            return Err(e);
        }
        Ok(ChildStack { map, map_len })
    }

    /// Lowest usable address and usable size (what clone3 wants: the kernel
    /// starts the child at `base + size`).
    fn region(&self) -> (u64, u64) {
        (
            self.map as u64 + GUARD as u64,
            (self.map_len - GUARD) as u64,
        )
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: ours; no child can be using it (vfork semantics).
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

/// `struct clone_args` (linux/sched.h), CLONE_ARGS_SIZE_VER2 = 88 bytes.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// clone3's arguments for a vfork-style child on `stack`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn vfork_clone_args(stack: &ChildStack) -> CloneArgs {
    let (base, size) = stack.region();
    CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64,
        exit_signal: libc::SIGCHLD as u64,
        stack: base,
        stack_size: size,
        ..CloneArgs::default()
    }
}

fn check(ret: i64) -> io::Result<libc::pid_t> {
    if ret < 0 {
        Err(io::Error::from_raw_os_error(-ret as i32))
    } else {
        Ok(ret as libc::pid_t)
    }
}

/// Whether this build implements the raw vfork-style methods.
pub const SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn wait(pid: libc::pid_t) -> i32 {
        let mut status = 0;
        // SAFETY: our child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        status
    }

    #[test]
    fn clone_args_size() {
        assert_eq!(std::mem::size_of::<CloneArgs>(), 88);
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn raw_methods_exec_and_report_failure() {
        let ok = CString::new("/bin/true").unwrap();
        let bad = CString::new("/nonexistent/spawnprof").unwrap();
        let mut stack = ChildStack::new(256 << 10).unwrap();
        for path in [&ok, &bad] {
            let argv = [path.as_ptr(), std::ptr::null()];
            let args = ExecArgs {
                path: path.as_ptr(),
                argv: argv.as_ptr(),
                search_path: false,
                err: AtomicI32::new(0),
            };
            for which in 0..2 {
                args.err.store(0, Ordering::Relaxed);
                // SAFETY: args/argv outlive the call; stack is ours.
                let pid = unsafe {
                    if which == 0 {
                        vfork_exec(&args)
                    } else {
                        clone3_vfork_exec(&args, &mut stack)
                    }
                }
                .unwrap();
                let status = wait(pid);
                let err = args.err.load(Ordering::Relaxed);
                if path == &ok {
                    assert_eq!(err, 0);
                    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
                } else {
                    assert_eq!(err, libc::ENOENT);
                    assert_eq!(libc::WEXITSTATUS(status), 127);
                }
            }
        }
    }
}
