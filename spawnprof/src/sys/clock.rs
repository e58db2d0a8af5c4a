//! Clocks: the kernel's monotonic clock as the probes read it, wall-clock
//! dates, and this process's CPU time.

/// The kernel's monotonic clock in ns: the one bpf_ktime_get_ns reports,
/// so profilers can select the timed window. It is CLOCK_MONOTONIC, less the
/// offset of a time namespace (a restored container, `unshare --time`),
/// whose clock the probes never see: without this every stage measured 0.
pub fn mono_ns() -> u64 {
    static OFFSET_NS: std::sync::LazyLock<i64> = std::sync::LazyLock::new(|| {
        std::fs::read_to_string("/proc/self/timens_offsets")
            .map_or(0, |text| monotonic_offset_ns(&text))
    });
    clock_ns(libc::CLOCK_MONOTONIC)
        .saturating_sub(*OFFSET_NS)
        .max(0) as u64
}

/// `clock`'s reading, ns.
fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// The `monotonic` line of /proc/PID/timens_offsets ("monotonic <s> <ns>"),
/// in ns; 0 when absent.
fn monotonic_offset_ns(text: &str) -> i64 {
    text.lines()
        .find_map(|line| {
            let mut f = line.split_whitespace();
            if f.next()? != "monotonic" {
                return None;
            }
            let secs: i64 = f.next()?.parse().ok()?;
            let nanos: i64 = f.next()?.parse().ok()?;
            Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
        })
        .unwrap_or(0)
}

/// (user, system) CPU of this process, all threads, in ns.
pub fn rusage_self() -> (u64, u64) {
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let ns = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1_000;
    (ns(ru.ru_utime), ns(ru.ru_stime))
}

/// CPU time of the calling thread so far, ns.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID) as u64
}

/// Wall-clock seconds since the Unix epoch, for dating a recording or a
/// bench; `None` with a clock set before 1970.
pub fn unix_seconds_now() -> Option<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// User + system CPU time of this process so far, ns.
pub fn own_cpu_ns() -> u64 {
    let (user, system) = rusage_self();
    user + system
}

/// `YYYYmmdd-HHMMSS` in local time, without pulling in a date crate.
pub fn local_stamp() -> String {
    let t = unsafe { libc::time(std::ptr::null_mut()) };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&t, &mut tm) };
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_namespace_offset_is_read_from_its_monotonic_line() {
        let text = "monotonic      100000         5\nboottime  7 0\n";
        assert_eq!(monotonic_offset_ns(text), 100_000_000_000_005);
        assert_eq!(monotonic_offset_ns("monotonic -3 0\n"), -3_000_000_000);
        assert_eq!(monotonic_offset_ns(""), 0);
        assert_eq!(monotonic_offset_ns("monotonic x y"), 0);
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = mono_ns();
        let b = mono_ns();
        assert!(b >= a && a > 0);
    }
}
