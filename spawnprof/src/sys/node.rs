//! Facts about the machine that change how process spawning performs: the
//! glibc version (which decides whether Rust's `Command` can use
//! `posix_spawn`), transparent huge pages, overcommit, hugetlb reservations,
//! the size of the environment and `PATH`, cores and memory, and what
//! waking an idle CPU involves (idle driver, virtual CPUs, steal time),
//! and where the node sits in a fleet (its name, its Slurm job and node ids).
//!
//! Everything here is read once, from `/proc`, `/sys` and libc; a missing
//! file yields `None` rather than an error so `collect()` works in
//! containers and on unusual kernels.

use std::ffi::CStr;
use std::os::unix::ffi::OsStrExt;

use serde::{Deserialize, Serialize};

use super::procfs::{bracketed, meminfo_field, read, read_trim};

/// Oldest glibc whose `posix_spawn` uses `clone(CLONE_VM|CLONE_VFORK)` and
/// therefore the oldest on which Rust's std takes its `posix_spawn` fast path.
pub const GLIBC_FAST_SPAWN: (u32, u32) = (2, 24);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub hostname: String,
    pub kernel_release: String,
    /// `gnu_get_libc_version()`, e.g. "2.36".
    pub glibc_version: String,
    /// glibc >= 2.24: Rust std spawns with `posix_spawn` (a vfork-style
    /// `clone`) unless the `Command` needs the fork path (`pre_exec`, uid/gid,
    /// ...). False means every `Command::spawn` forks and copies page tables.
    pub std_posix_spawn_fast_path: bool,
    /// Bracketed value of /sys/kernel/mm/transparent_hugepage/enabled.
    pub thp_enabled: Option<String>,
    /// Bracketed value of /sys/kernel/mm/transparent_hugepage/defrag.
    pub thp_defrag: Option<String>,
    /// /proc/sys/vm/overcommit_memory: 0 heuristic, 1 always, 2 never.
    pub overcommit_memory: Option<u32>,
    pub hugetlb_pages_total: Option<u64>,
    pub hugetlb_pages_free: Option<u64>,
    pub hugetlb_page_size: Option<u64>,
    /// Variables in this process's environment and their bytes, counting
    /// each `NAME=value` string without its NUL.
    pub env_count: u64,
    pub env_bytes: u64,
    pub path_entries: u64,
    pub path_bytes: u64,
    pub cpus_online: u64,
    pub mem_total: Option<u64>,
    pub cpu_model: Option<String>,
    /// The CPUs are virtual (x86's `hypervisor` flag): an idle vCPU is
    /// halted and the host must schedule it again before a child placed on
    /// it can run. `None` where /proc/cpuinfo does not say.
    #[serde(default)]
    pub virtual_cpus: Option<bool>,
    /// cpuidle driver and governor, e.g. "haltpoll/haltpoll", "intel_idle/menu".
    #[serde(default)]
    pub cpuidle: Option<String>,
    /// Share of CPU time since boot that the hypervisor gave to others
    /// while this node's vCPUs wanted to run (/proc/stat steal).
    #[serde(default)]
    pub steal_share: Option<f64>,
    /// The name this node goes by in a fleet (`bench --node-name`), where
    /// the host name does not tell nodes apart (containers, pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// CPUs this process may run on (its affinity mask): fewer than
    /// `cpus_online` when pinned by taskset, a cpuset or an allocation.
    #[serde(default)]
    pub usable_cpus: Option<u64>,
    /// PATH entries that are not directories: every spawn by name tries
    /// each of them (one failed execve) before the one that holds it.
    #[serde(default)]
    pub path_missing: Option<u64>,
    /// The Slurm job this ran in, when it ran under `srun`/`sbatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmIds>,
}

/// Slurm's ids of the job step a bench ran in (its `SLURM_*` variables),
/// so a fleet report can be tied back to `sacct` and the node list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlurmIds {
    pub job_id: Option<String>,
    pub step_id: Option<String>,
    /// `SLURMD_NODENAME`: the node's name in slurm.conf.
    pub node_name: Option<String>,
    /// `SLURM_NODEID`: the node's index within the allocation.
    pub node_id: Option<String>,
    /// `SLURM_PROCID`: the task's rank within the step.
    pub proc_id: Option<String>,
    pub cluster_name: Option<String>,
}

impl SlurmIds {
    /// From this process's environment; `None` outside a Slurm job.
    pub fn from_env() -> Option<SlurmIds> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let ids = SlurmIds {
            job_id: var("SLURM_JOB_ID").or_else(|| var("SLURM_JOBID")),
            step_id: var("SLURM_STEP_ID").or_else(|| var("SLURM_STEPID")),
            node_name: var("SLURMD_NODENAME"),
            node_id: var("SLURM_NODEID"),
            proc_id: var("SLURM_PROCID"),
            cluster_name: var("SLURM_CLUSTER_NAME"),
        };
        (ids != SlurmIds::default()).then_some(ids)
    }

    /// `Slurm job 42 (step 0), node node017 (#3), task 3`.
    pub fn summary(&self) -> String {
        let or_q = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
        let step = self
            .step_id
            .as_ref()
            .map_or(String::new(), |s| format!(" (step {s})"));
        format!(
            "Slurm job {}{step}, node {} (#{}), task {}",
            or_q(&self.job_id),
            or_q(&self.node_name),
            or_q(&self.node_id),
            or_q(&self.proc_id)
        )
    }
}

impl NodeFacts {
    /// The node's name in a fleet: `--node-name`, else Slurm's name for it,
    /// else the host name.
    pub fn name(&self) -> &str {
        self.node_name
            .as_deref()
            .or_else(|| self.slurm.as_ref()?.node_name.as_deref())
            .unwrap_or(&self.hostname)
    }

    /// How Rust's `Command` spawns here, for "glibc 2.36 (Rust std …)".
    pub fn std_spawn_path(&self) -> &'static str {
        if self.std_posix_spawn_fast_path {
            "uses posix_spawn"
        } else {
            "forks: glibc < 2.24"
        }
    }

    /// What waking an idle CPU involves here, e.g. "virtual CPUs, cpuidle
    /// haltpoll/haltpoll, 4.1% steal since boot"; `None` when nothing is known.
    pub fn cpu_wakeup_summary(&self) -> Option<String> {
        let mut parts = Vec::new();
        match self.virtual_cpus {
            Some(true) => parts.push("virtual CPUs".to_string()),
            Some(false) => parts.push("physical CPUs".to_string()),
            None => {}
        }
        if let Some(idle) = &self.cpuidle {
            parts.push(format!("cpuidle {idle}"));
        }
        if let Some(steal) = self.steal_share {
            parts.push(format!("{:.1}% steal since boot", 100.0 * steal));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    pub fn collect() -> NodeFacts {
        let glibc_version = glibc_version();
        let meminfo = read("/proc/meminfo").unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let (env_count, env_bytes) = environment_size();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path_bytes = path.as_bytes().len() as u64;
        let path_entries = if path.is_empty() {
            0
        } else {
            path.as_bytes().split(|&b| b == b':').count() as u64
        };
        NodeFacts {
            hostname: read_trim("/proc/sys/kernel/hostname").unwrap_or_else(hostname_libc),
            kernel_release: read_trim("/proc/sys/kernel/osrelease").unwrap_or_default(),
            std_posix_spawn_fast_path: glibc_at_least(&glibc_version, GLIBC_FAST_SPAWN),
            glibc_version,
            thp_enabled: read("/sys/kernel/mm/transparent_hugepage/enabled")
                .and_then(|s| bracketed(&s)),
            thp_defrag: read("/sys/kernel/mm/transparent_hugepage/defrag")
                .and_then(|s| bracketed(&s)),
            overcommit_memory: read_trim("/proc/sys/vm/overcommit_memory")
                .and_then(|s| s.parse().ok()),
            hugetlb_pages_total: meminfo_field(&meminfo, "HugePages_Total"),
            hugetlb_pages_free: meminfo_field(&meminfo, "HugePages_Free"),
            hugetlb_page_size: meminfo_field(&meminfo, "Hugepagesize"),
            env_count,
            env_bytes,
            path_entries,
            path_bytes,
            // SAFETY: sysconf has no preconditions.
            cpus_online: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u64,
            mem_total: meminfo_field(&meminfo, "MemTotal"),
            cpu_model: cpuinfo.as_deref().and_then(cpu_model),
            virtual_cpus: cpuinfo.as_deref().and_then(virtual_cpus),
            cpuidle: cpuidle(),
            steal_share: read("/proc/stat").and_then(|s| steal_share(&s)),
            node_name: None,
            usable_cpus: usable_cpus(),
            path_missing: Some(path_missing(&path)),
            slurm: SlurmIds::from_env(),
        }
    }
}

/// The running glibc's version string, e.g. "2.36".
pub fn glibc_version() -> String {
    // SAFETY: gnu_get_libc_version returns a pointer to a static NUL-terminated string.
    unsafe { CStr::from_ptr(libc::gnu_get_libc_version()) }
        .to_string_lossy()
        .into_owned()
}

/// Count and total bytes (`NAME=value`, no NUL) of the current environment.
pub fn environment_size() -> (u64, u64) {
    std::env::vars_os().fold((0, 0), |(n, b), (k, v)| {
        (
            n + 1,
            b + k.as_bytes().len() as u64 + 1 + v.as_bytes().len() as u64,
        )
    })
}

/// `major.minor` of a version like "2.36", "2.17" or "2.35.9000".
pub fn parse_glibc_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor_str: String = parts
        .next()?
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((major, minor_str.parse().ok()?))
}

/// Whether `version` is at least `min`; unparseable versions are not.
pub fn glibc_at_least(version: &str, min: (u32, u32)) -> bool {
    parse_glibc_version(version).is_some_and(|v| v >= min)
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        let key = key.trim();
        (key == "model name" || key == "Model" || key == "cpu model")
            .then(|| value.trim().to_string())
    })
}

/// From the x86 `flags` line: whether it has `hypervisor`. Other
/// architectures' cpuinfo has no such flag, so they get `None`.
fn virtual_cpus(cpuinfo: &str) -> Option<bool> {
    let flags = cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "flags").then_some(value)
    })?;
    Some(flags.split_whitespace().any(|f| f == "hypervisor"))
}

fn cpuidle() -> Option<String> {
    let dir = "/sys/devices/system/cpu/cpuidle";
    let driver = read_trim(&format!("{dir}/current_driver"))?;
    let governor = read_trim(&format!("{dir}/current_governor_ro"))
        .or_else(|| read_trim(&format!("{dir}/current_governor")));
    Some(match governor {
        Some(g) => format!("{driver}/{g}"),
        None => driver,
    })
}

/// steal / all time, from the aggregate `cpu` line of /proc/stat (user nice
/// system idle iowait irq softirq steal …, in ticks).
fn steal_share(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = ticks.iter().sum();
    // Four decimals: enough for a share, and short decimals read back from
    // JSON exactly (a full-precision float may come back one ulp off).
    (ticks.len() == 8 && total > 0).then(|| (ticks[7] as f64 / total as f64 * 1e4).round() / 1e4)
}

/// CPUs in this process's affinity mask.
fn usable_cpus() -> Option<u64> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity
    // writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(libc::CPU_COUNT(&set) as u64)
    }
}

/// PATH entries that are not directories (an empty entry is the current
/// directory, which exists).
fn path_missing(path: &std::ffi::OsStr) -> u64 {
    if path.is_empty() {
        return 0;
    }
    path.as_bytes()
        .split(|&b| b == b':')
        .filter(|dir| !dir.is_empty())
        .filter(|dir| !std::path::Path::new(std::ffi::OsStr::from_bytes(dir)).is_dir())
        .count() as u64
}

fn hostname_libc() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // unless truncated, and the last byte stays 0.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return String::new();
    }
    CStr::from_bytes_until_nul(&buf)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions() {
        assert_eq!(parse_glibc_version("2.36"), Some((2, 36)));
        assert_eq!(parse_glibc_version("2.17"), Some((2, 17)));
        assert_eq!(parse_glibc_version("2.35.9000"), Some((2, 35)));
        assert_eq!(parse_glibc_version("2.39-rc1"), Some((2, 39)));
        assert_eq!(parse_glibc_version("garbage"), None);
        assert_eq!(parse_glibc_version(""), None);
        assert!(glibc_at_least("2.36", GLIBC_FAST_SPAWN));
        assert!(glibc_at_least("2.24", GLIBC_FAST_SPAWN));
        assert!(!glibc_at_least("2.23", GLIBC_FAST_SPAWN));
        assert!(!glibc_at_least("2.17", GLIBC_FAST_SPAWN));
        // numeric, not lexicographic: 2.4 < 2.24 < 2.100
        assert!(!glibc_at_least("2.4", GLIBC_FAST_SPAWN));
        assert!(glibc_at_least("2.100", GLIBC_FAST_SPAWN));
        assert!(glibc_at_least("3.0", GLIBC_FAST_SPAWN));
        assert!(!glibc_at_least("nope", GLIBC_FAST_SPAWN));
    }

    #[test]
    fn cpu_model_line() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC 7H12 64-Core Processor\n";
        assert_eq!(
            cpu_model(text).as_deref(),
            Some("AMD EPYC 7H12 64-Core Processor")
        );
    }

    #[test]
    fn virtual_cpus_idle_and_steal() {
        assert_eq!(
            virtual_cpus("model name\t: X\nflags\t\t: fpu vme hypervisor lahf_lm\n"),
            Some(true)
        );
        assert_eq!(virtual_cpus("flags\t: fpu vme\n"), Some(false));
        assert_eq!(virtual_cpus("Features\t: fp asimd\n"), None);
        let stat = "cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 50 0 25 400 5 0 0 20 0 0\n";
        assert_eq!(steal_share(stat), Some(0.04));
        let odd = "cpu  8771 0 2917 9000 10 0 0 463 0 0\n";
        let share = steal_share(odd).unwrap();
        assert_eq!(share, 0.0219);
        // Every four-decimal share survives a JSON round trip.
        for k in 0..=10_000u32 {
            let v = f64::from(k) / 1e4;
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<f64>(&json).unwrap(), v, "{json}");
        }
        assert_eq!(steal_share("cpu  1 2 3\n"), None, "too old a format");
        assert_eq!(steal_share("cpu0 1 2 3 4 5 6 7 8\n"), None);
    }

    #[test]
    fn path_entries_that_are_not_directories_are_counted() {
        let path = std::ffi::OsStr::new("/nonexistent-a:/usr/bin::/nonexistent-b:/bin");
        assert_eq!(path_missing(path), 2);
        assert_eq!(path_missing(std::ffi::OsStr::new("")), 0);
    }

    #[test]
    fn the_fleet_name_prefers_the_option_then_slurm_then_the_host() {
        let mut facts = NodeFacts::collect();
        facts.hostname = "host1".into();
        facts.slurm = None;
        facts.node_name = None;
        assert_eq!(facts.name(), "host1");
        facts.slurm = Some(SlurmIds {
            node_name: Some("node017".into()),
            ..SlurmIds::default()
        });
        assert_eq!(facts.name(), "node017");
        facts.node_name = Some("rack3-17".into());
        assert_eq!(facts.name(), "rack3-17");
    }

    #[test]
    fn collect_on_this_machine() {
        let facts = NodeFacts::collect();
        assert!(facts.cpus_online >= 1);
        assert!(parse_glibc_version(&facts.glibc_version).is_some());
        let usable = facts.usable_cpus.expect("an affinity mask");
        assert!(usable >= 1 && usable <= facts.cpus_online.max(usable));
        let json = serde_json::to_string(&facts).unwrap();
        let back: NodeFacts = serde_json::from_str(&json).unwrap();
        assert_eq!(back, facts);
    }
}
