//! Reading /proc and /sys: processes by pid, this process's status, and
//! the `key: value` and `[choice]` formats the kernel writes.
use anyhow::{Context as _, Result, bail};

pub fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

pub fn read_trim(path: &str) -> Option<String> {
    read(path).map(|s| s.trim().to_string())
}

/// The value of `name` (with its colon, e.g. `"State:"`) in a
/// /proc/PID/status-style text, trimmed.
pub fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
}

/// The selected value in a sysfs choice list: "always [madvise] never" → "madvise".
pub fn bracketed(s: &str) -> Option<String> {
    let start = s.find('[')?;
    let end = start + s[start..].find(']')?;
    let value = s[start + 1..end].trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// A field of /proc/meminfo-style text in bytes when it has a `kB` unit,
/// otherwise the bare number (HugePages_Total is a page count).
pub fn meminfo_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, rest) = line.split_once(':')?;
        if key.trim() != name {
            return None;
        }
        let mut it = rest.split_whitespace();
        let value: u64 = it.next()?.parse().ok()?;
        match it.next() {
            Some(unit) if unit.eq_ignore_ascii_case("kb") => value.checked_mul(1024),
            _ => Some(value),
        }
    })
}

/// A `kB` field of /proc/self/status in bytes (VmRSS, VmHWM, HugetlbPages, ...).
pub fn self_status(field: &str) -> Option<u64> {
    meminfo_field(&read("/proc/self/status")?, field)
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into())
}

/// The processes descended from `pid` now (children, their children…),
/// from the parent pid in each /proc/PID/stat.
pub fn descendants(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    for e in entries.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(ppid) = read(&format!("/proc/{p}/stat")).and_then(|s| stat_ppid(&s)) {
            children.entry(ppid).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// The parent pid in a /proc/PID/stat line (after the `(comm)`, which may
/// hold spaces and parentheses).
fn stat_ppid(stat: &str) -> Option<u32> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    // Signal 0 only checks existence; a zombie still counts until reaped,
    // so look at its state too.
    let alive = unsafe { libc::kill(pid as i32, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    alive
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
}

/// The thread-group id of `pid`, or a clear error when it does not exist.
pub fn tgid_of(pid: u32) -> Result<u32> {
    if pid == 0 {
        bail!("pid 0 is not a process; pass the pid of a running process to -p");
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("no process with pid {pid} (check `ps -p {pid}`)"))?;
    let field = |name: &str| status_field(&status, name);
    if is_kernel_thread(&status) {
        bail!(
            "pid {pid} ({}) is a kernel thread: the threads it starts are made inside the \
             kernel, with no clone syscall and no exec, which is not what spawnprof traces; \
             give the pid of a user-space process",
            field("Name:").unwrap_or("")
        );
    }
    if field("State:").is_some_and(|s| s.starts_with('Z')) {
        bail!(
            "pid {pid} has already exited: it is a zombie, waiting for its parent (pid {}) to \
             reap it, and will spawn nothing; give the pid of a running process",
            field("PPid:").unwrap_or("?")
        );
    }
    field("Tgid:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("cannot read the thread group of pid {pid}"))
}

/// Whether a /proc/PID/status describes a kernel thread: its `Kthread:`
/// line (6.2+), or else no memory of its own (no `VmSize:` line) while not
/// a zombie (which has lost its memory too).
pub fn is_kernel_thread(status: &str) -> bool {
    let field = |name: &str| status_field(status, name);
    match field("Kthread:") {
        Some(v) => v == "1",
        None => field("VmSize:").is_none() && !field("State:").is_some_and(|s| s.starts_with('Z')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_pid_is_read_past_a_comm_with_spaces_and_parentheses() {
        assert_eq!(stat_ppid("42 (a (b) c) S 7 42 42 0 -1"), Some(7));
        assert_eq!(stat_ppid("42 (sh) R 1 2"), Some(1));
        assert_eq!(stat_ppid("garbage"), None);
    }

    #[test]
    fn this_process_is_a_descendant_of_its_parent() {
        let me = std::process::id();
        assert!(descendants(std::os::unix::process::parent_id()).contains(&me));
        assert!(!descendants(me).contains(&me));
    }

    #[test]
    fn thp_bracket_parsing() {
        assert_eq!(
            bracketed("always [madvise] never\n").as_deref(),
            Some("madvise")
        );
        assert_eq!(
            bracketed("[always] madvise never").as_deref(),
            Some("always")
        );
        assert_eq!(
            bracketed("always defer defer+madvise [madvise] never").as_deref(),
            Some("madvise")
        );
        assert_eq!(bracketed("always madvise never"), None);
        assert_eq!(bracketed("[] x"), None);
        assert_eq!(bracketed("[never"), None);
    }

    #[test]
    fn meminfo_parsing() {
        let text = "MemTotal:       24590000 kB\nHugePages_Total:      16\nHugePages_Free:        4\nHugepagesize:       2048 kB\n";
        assert_eq!(meminfo_field(text, "MemTotal"), Some(24_590_000 * 1024));
        assert_eq!(meminfo_field(text, "HugePages_Total"), Some(16));
        assert_eq!(meminfo_field(text, "HugePages_Free"), Some(4));
        assert_eq!(meminfo_field(text, "Hugepagesize"), Some(2 << 20));
        assert_eq!(meminfo_field(text, "Missing"), None);
        // a prefix of another key must not match
        assert_eq!(meminfo_field(text, "HugePages"), None);
    }

    #[test]
    fn kernel_threads_are_told_by_their_kthread_line_or_their_missing_memory() {
        assert!(is_kernel_thread("Name:\tkthreadd\nKthread:\t1\n"));
        assert!(!is_kernel_thread(
            "Name:\tinit\nKthread:\t0\nVmSize:\t1 kB\n"
        ));
        // Before 6.2 there is no Kthread line: no VmSize means no mm.
        assert!(is_kernel_thread("Name:\tkworker/0:1\nState:\tI (idle)\n"));
        assert!(!is_kernel_thread("Name:\tsh\nVmSize:\t2508 kB\n"));
        assert!(!is_kernel_thread("Name:\tsh\nState:\tZ (zombie)\n"));
    }
}
