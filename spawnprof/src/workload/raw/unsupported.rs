//! Elsewhere the raw methods refuse.
use std::io;

use super::{ChildStack, ExecArgs};

/// Refuses: this architecture has no raw method.
///
/// # Safety
/// Always safe; `unsafe` only to match the implemented architectures.
pub unsafe fn vfork_exec(_args: &ExecArgs) -> io::Result<libc::pid_t> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "vfork-exec is only implemented on x86_64 and aarch64",
    ))
}

/// Refuses: this architecture has no raw method.
///
/// # Safety
/// Always safe; `unsafe` only to match the implemented architectures.
pub unsafe fn clone3_vfork_exec(
    _args: &ExecArgs,
    _stack: &mut ChildStack,
) -> io::Result<libc::pid_t> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "clone3-vfork is only implemented on x86_64 and aarch64",
    ))
}
