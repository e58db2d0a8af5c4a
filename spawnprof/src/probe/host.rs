//! What this host can do, and why not when it can't: privileges, tracefs,
//! kernel BTF, the kprobe PMU. The attach plan asks these questions; every
//! "no" carries a reason the report shows.
use std::{collections::HashSet, path::Path, sync::OnceLock};

use anyhow::{Result, bail};

use super::{btf::KernelBtf, tracefs::Tracefs};
use crate::sys::procfs;

/// Capability bits (linux/capability.h) spawnprof needs.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Facts about the host gathered once before loading.
pub struct Host {
    pub kernel_release: String,
    pub tracefs: Tracefs,
    pub btf: Option<KernelBtf>,
    /// Why BTF is missing, when it is.
    pub btf_error: Option<String>,
    /// `/sys/bus/event_source/devices/kprobe/type` exists (CONFIG_KPROBES).
    pub kprobe_pmu: bool,
    /// spawnprof's PID namespace when it is not the host's (a container):
    /// the probes see host pids, and translate the ones it names.
    pub pid_ns: Option<spawnprof_common::PidNamespace>,
    /// available_filter_functions, read on first use (it is a few MB).
    filter_functions: OnceLock<Option<HashSet<String>>>,
}

impl Host {
    /// Checks privileges, then gathers the facts (mounting tracefs if needed).
    pub fn probe() -> Result<Self> {
        check_privileges()?;
        let tracefs = Tracefs::open()?;
        let (btf, btf_error) = match KernelBtf::from_sys_fs() {
            Ok(b) => (Some(b), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        Ok(Self {
            kernel_release: procfs::kernel_release(),
            tracefs,
            btf,
            btf_error,
            kprobe_pmu: Path::new("/sys/bus/event_source/devices/kprobe/type").exists(),
            pid_ns: own_pid_namespace(),
            filter_functions: OnceLock::new(),
        })
    }

    /// Whether `function` can take a kprobe. When the list cannot be read,
    /// say yes and let the attach itself decide.
    pub fn kprobe_target_exists(&self, function: &str) -> bool {
        self.filter_functions()
            .as_ref()
            .is_none_or(|l| l.contains(function))
    }

    /// How many functions can take a kprobe, when the list can be read.
    pub fn kprobe_target_count(&self) -> Option<usize> {
        self.filter_functions().as_ref().map(HashSet::len)
    }

    fn filter_functions(&self) -> &Option<HashSet<String>> {
        self.filter_functions.get_or_init(|| {
            let text =
                std::fs::read_to_string(self.tracefs.root().join("available_filter_functions"))
                    .ok()?;
            // Lines are "name" or "name [module]".
            Some(
                text.lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .map(str::to_string)
                    .collect(),
            )
        })
    }
}

/// The inode of the host's (initial) PID namespace, fixed since Linux 3.8
/// (PROC_PID_INIT_INO).
const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// spawnprof's PID namespace, unless it is the host's.
fn own_pid_namespace() -> Option<spawnprof_common::PidNamespace> {
    use std::os::unix::fs::MetadataExt as _;
    let ns = std::fs::metadata("/proc/self/ns/pid").ok()?;
    (ns.ino() != INIT_PID_NS_INO).then(|| spawnprof_common::PidNamespace {
        dev: ns.dev(),
        ino: ns.ino(),
    })
}

/// Whether this process is in a user namespace other than the host's: only
/// the initial one maps every uid to itself.
fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|map| {
        let fields: Vec<&str> = map.split_whitespace().collect();
        fields != ["0", "0", "4294967295"]
    })
}

/// Effective capabilities of this process, from /proc/self/status.
fn effective_caps() -> Option<u64> {
    let status = procfs::read("/proc/self/status")?;
    u64::from_str_radix(procfs::status_field(&status, "CapEff:")?, 16).ok()
}

/// Loading BPF programs and reading tracepoints needs root, or CAP_BPF with
/// CAP_PERFMON (5.8+), or CAP_SYS_ADMIN.
pub fn check_privileges() -> Result<()> {
    if in_user_namespace() {
        bail!(
            "spawnprof runs in a user namespace (a rootless container, or `unshare --user`), \
             whose capabilities do not let it load eBPF programs: run it as root on the host, \
             or in a container that shares the host's user namespace (e.g. `docker run \
             --privileged`, not rootless)"
        );
    }
    let caps = effective_caps().unwrap_or(0);
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!(
        "spawnprof needs to load eBPF programs: run it as root (e.g. `sudo spawnprof ...`), \
         or grant CAP_BPF and CAP_PERFMON (plus CAP_DAC_READ_SEARCH for tracefs), e.g. \
         `sudo setcap cap_bpf,cap_perfmon,cap_dac_read_search+ep $(command -v spawnprof)`"
    )
}
