//! RLIMIT_MEMLOCK: raised for spawnprof's own BPF maps, given back to the
//! commands it starts.

/// RLIMIT_MEMLOCK as it was before [`raise_memlock_limit`] raised it.
static MEMLOCK_BEFORE_RAISE: std::sync::OnceLock<libc::rlimit> = std::sync::OnceLock::new();

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK, often 64 KiB or
/// 8 MiB: less than the ring buffer alone. (Later ones charge the memory
/// cgroup, and the limit does not matter.) Raised for spawnprof only: the
/// command it starts gets the old limit back ([`memlock_limit_to_restore`]).
pub fn raise_memlock_limit() -> std::result::Result<(), std::io::Error> {
    let mut before = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut before) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit for the call's duration.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let _ = MEMLOCK_BEFORE_RAISE.set(before);
    Ok(())
}

/// The RLIMIT_MEMLOCK a started command must get back, if spawnprof raised
/// its own.
pub fn memlock_limit_to_restore() -> Option<libc::rlimit> {
    MEMLOCK_BEFORE_RAISE.get().copied()
}
