//! The raw methods on x86_64: `vfork` and `clone3` from inline assembly.
use std::ffi::c_void;
use std::io;

use super::{ChildStack, CloneArgs, ExecArgs, check, exec_child, vfork_clone_args};

/// `vfork(2)` + exec of `args`. Returns the child's pid once the child has
/// exec'd or exited; check `args.err` (reset it to 0 before each call) to
/// learn whether the exec failed.
///
/// # Safety
/// `args` and the strings it points to must stay valid; the calling thread
/// is suspended until the child execs.
pub unsafe fn vfork_exec(args: &ExecArgs) -> io::Result<libc::pid_t> {
    let ret: i64;
    // SAFETY: see the module docs. Without `nostack`, rsp is 16-byte aligned
    // at entry and the compiler keeps nothing live below it; the child moves
    // further down, aligns, and calls exec_child, which never returns.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "sub rsp, 512",
            "and rsp, -16",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_vfork => ret,
            in("r12") args as *const ExecArgs as *mut c_void,
            in("r13") exec_child as extern "C" fn(*mut c_void) -> !,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    check(ret)
}

/// `clone3(CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD)` on `stack`, + exec.
/// Same contract as [`vfork_exec`].
///
/// # Safety
/// As for [`vfork_exec`]; `stack` must not be used by anyone else.
pub unsafe fn clone3_vfork_exec(
    args: &ExecArgs,
    stack: &mut ChildStack,
) -> io::Result<libc::pid_t> {
    let cargs = vfork_clone_args(stack);
    let ret: i64;
    // SAFETY: the kernel starts the child with rsp = base + size (page
    // aligned, so 16-byte aligned for the call) and the parent's other
    // registers; the child calls exec_child(r12), which never returns.
    // The parent resumes only after the child exec'd or exited.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &cargs as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") args as *const ExecArgs as *mut c_void,
            in("r13") exec_child as extern "C" fn(*mut c_void) -> !,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    check(ret)
}
