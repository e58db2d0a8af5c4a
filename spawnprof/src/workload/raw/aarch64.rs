//! The raw methods on aarch64, which has no vfork syscall: `clone` and
//! `clone3` from inline assembly.
use std::ffi::c_void;
use std::io;

use super::{ChildStack, CloneArgs, ExecArgs, check, exec_child, vfork_clone_args};

/// `vfork_exec` on aarch64: `clone(CLONE_VM|CLONE_VFORK|SIGCHLD)` with a
/// null stack, so the child runs on the parent's stack as with vfork.
///
/// # Safety
/// As for x86_64's `vfork_exec`: `args` and its strings stay valid; the
/// calling thread is suspended until the child execs.
pub unsafe fn vfork_exec(args: &ExecArgs) -> io::Result<libc::pid_t> {
    let flags = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64;
    let ret: i64;
    // SAFETY: see the module docs. The kernel preserves every register but
    // x0 in both parent and child; the child moves below the parent's
    // frame, aligns (sp cannot be an AND source, hence x11), and calls
    // exec_child(x9), which never returns. x19 and x29 are LLVM's.
    unsafe {
        std::arch::asm!(
            "svc #0",
            "cbnz x0, 2f",
            "mov x11, sp",
            "sub x11, x11, #512",
            "and sp, x11, #-16",
            "mov x0, x9",
            "blr x10",
            "brk #1",
            "2:",
            inlateout("x0") flags => ret,
            in("x1") 0u64,
            in("x2") 0u64,
            in("x3") 0u64,
            in("x4") 0u64,
            in("x8") libc::SYS_clone,
            in("x9") args as *const ExecArgs as *mut c_void,
            in("x10") exec_child as extern "C" fn(*mut c_void) -> !,
            lateout("x11") _,
        );
    }
    check(ret)
}

/// `clone3_vfork_exec` on aarch64.
///
/// # Safety
/// As for [`vfork_exec`]; `stack` must not be used by anyone else.
pub unsafe fn clone3_vfork_exec(
    args: &ExecArgs,
    stack: &mut ChildStack,
) -> io::Result<libc::pid_t> {
    let cargs = vfork_clone_args(stack);
    let ret: i64;
    // SAFETY: the kernel starts the child with sp = base + size (page
    // aligned) and the parent's other registers; the child calls
    // exec_child(x9), which never returns. The parent resumes only after
    // the child exec'd or exited.
    unsafe {
        std::arch::asm!(
            "svc #0",
            "cbnz x0, 2f",
            "mov x0, x9",
            "blr x10",
            "brk #1",
            "2:",
            inlateout("x0") &cargs as *const CloneArgs => ret,
            in("x1") std::mem::size_of::<CloneArgs>(),
            in("x8") libc::SYS_clone3,
            in("x9") args as *const ExecArgs as *mut c_void,
            in("x10") exec_child as extern "C" fn(*mut c_void) -> !,
            options(nostack),
        );
    }
    check(ret)
}
