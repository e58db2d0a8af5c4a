//! What differs between the architectures spawnprof runs on: the names the
//! kernel gives its syscall functions, and where their `struct pt_regs`
//! argument holds the syscall's arguments. Everything else is looked up on
//! the running kernel.

/// The kernel's function for syscall `$name` on this architecture, e.g.
/// `syscall_function!("execve")` is `__x64_sys_execve` on x86_64.
#[cfg(target_arch = "aarch64")]
macro_rules! syscall_function {
    ($name:literal) => {
        concat!("__arm64_sys_", $name)
    };
}
#[cfg(not(target_arch = "aarch64"))]
macro_rules! syscall_function {
    ($name:literal) => {
        concat!("__x64_sys_", $name)
    };
}
pub(crate) use syscall_function;

/// The `pt_regs` member holding each of a syscall's first four arguments,
/// and that argument's byte offset inside the member.
#[cfg(target_arch = "aarch64")]
pub const SYSCALL_ARGS: [(&str, u32); 4] = [("regs", 0), ("regs", 8), ("regs", 16), ("regs", 24)];
#[cfg(not(target_arch = "aarch64"))]
pub const SYSCALL_ARGS: [(&str, u32); 4] = [("di", 0), ("si", 0), ("dx", 0), ("r10", 0)];

/// The `(struct, member)` the probes need in BTF to read syscall argument `n`.
pub const fn syscall_arg_field(n: usize) -> (&'static str, &'static str) {
    ("pt_regs", SYSCALL_ARGS[n].0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_functions_carry_the_architectures_prefix() {
        let name = syscall_function!("execve");
        assert!(
            name == "__x64_sys_execve" || name == "__arm64_sys_execve",
            "{name}"
        );
        assert_eq!(syscall_arg_field(3).0, "pt_regs");
    }
}
