//! Loading the probes: fill the configuration globals from tracefs and BTF,
//! load the object, resolve the attach plan candidate by candidate, and hand
//! out the ring buffer and counters. Dropping a [`Session`] detaches
//! everything (aya closes the links and programs with their file descriptors,
//! and the kernel does the same if the process dies).
use std::collections::HashSet;

use anyhow::{Context as _, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, RingBuf, StackTraceMap},
    programs::{
        PerfEvent,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};
use spawnprof_common::{
    GLOBAL_CONFIG, Gates, MAP_GATES, MAP_NS_PENDING, MAP_NS_REGISTRATIONS, MAP_RECORDS, MAP_SPAWNS,
    MAP_STACK_COUNTS, MAP_STACKS, NS_ROOT, NsRegistration, StackKey, await_child,
};

use super::{
    Host,
    attach::{Resolver, program, resolve_stage},
    config::probe_config,
    metrics::{self, KernelMetrics},
    options::SessionOptions,
    park::{ForkProbes, ParkCounts, read_gates},
    plan::{Mechanism, PLAN, PlanRow},
    spawns::{KernelSpawns, Lost, traced_flags},
};
use crate::{model::FaultCoverage, sys::memlock::raise_memlock_limit};

/// One stack sample count from the kernel.
#[derive(Clone, Debug)]
pub struct RawSample {
    pub tgid: u32,
    pub comm: [u8; 16],
    /// Instruction pointers, innermost first (empty when not taken).
    pub kernel: Vec<u64>,
    pub user: Vec<u64>,
    pub count: u64,
}

/// Room for a spawn record per task the kernel can have at once: its
/// pid_max (tids come from the same numbers), within sane bounds.
fn spawns_capacity() -> u32 {
    crate::sys::procfs::read_trim("/proc/sys/kernel/pid_max")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(32768)
        .clamp(32768, 1 << 22)
}

/// Loaded and attached probes.
pub struct Session {
    ebpf: Ebpf,
    /// The fork-only programs, parked while nothing forks ([`super::park`]).
    fork_probes: ForkProbes,
    /// The spawn state, held apart so it outlives the programs ([`Session::detach`]).
    kernel: KernelSpawns,
    pub plan: Vec<PlanRow>,
    /// The kernel's own fault counters can be read (BTF offsets known).
    kernel_fault_counters: bool,
    /// spawnprof runs in a PID namespace: [`Session::trace`] takes pids of
    /// that namespace, and the probes translate them to the host's.
    in_pid_namespace: bool,
}

impl Session {
    pub fn start(host: &Host, opts: &SessionOptions) -> Result<Self> {
        opts.validate()?;
        let size = opts.ring_buffer_bytes;
        let config = probe_config(host, opts)?;
        let memlock = raise_memlock_limit();
        let mut loader = EbpfLoader::new();
        loader
            .override_global(GLOBAL_CONFIG, &config, true)
            .map_max_entries(MAP_RECORDS, size)
            .map_max_entries(MAP_SPAWNS, spawns_capacity());
        if let Some(labels) = opts.metrics {
            metrics::size_maps(&mut loader, labels);
        }
        let mut ebpf = loader
            .load(crate::PROBES)
            .map_err(anyhow::Error::from)
            .map_err(|e| match memlock {
                Err(why) => e.context(format!(
                    "RLIMIT_MEMLOCK could not be raised ({why}), and kernels before 5.11 count \
                     BPF maps against it: run as root, or raise it first (`ulimit -l unlimited`)"
                )),
                Ok(()) => e,
            })
            .context("loading the eBPF object into the kernel")?;
        let aya_btf = aya::Btf::from_sys_fs().ok();
        let mut attached = HashSet::new();
        let mut fork_links = Vec::new();
        let mut resolver = Resolver {
            ebpf: &mut ebpf,
            btf: aya_btf.as_ref(),
            host,
            opts,
            attached: &mut attached,
            fork_links: &mut fork_links,
        };
        let plan = PLAN
            .iter()
            .map(|stage| resolve_stage(stage, &mut resolver))
            .collect::<Result<Vec<_>>>()?;
        let kernel = KernelSpawns::take(&mut ebpf)?;
        // Where no kernel counter gives fault totals, the fault probe counts
        // every fault of the traced processes: it must stay.
        if !config.kernel.has_fault_counters() {
            fork_links.retain(|(p, _)| p.program != "raw_page_fault_user");
        }
        let mut session = Self {
            ebpf,
            fork_probes: ForkProbes::new(fork_links, opts.cow_quiet),
            kernel,
            plan,
            kernel_fault_counters: config.kernel.has_fault_counters(),
            in_pid_namespace: host.pid_ns.is_some(),
        };
        session.tell_probes_what_attached()?;
        Ok(session)
    }

    /// Whether the plan observes `stage` at all (it did not end unavailable).
    fn attached(&self, stage: &str) -> bool {
        self.plan
            .iter()
            .any(|r| r.stage == stage && r.mechanism != Mechanism::Unavailable)
    }

    /// What the fault figures of the records are worth.
    pub fn fault_coverage(&self) -> FaultCoverage {
        let fault_probe = self.attached("page_faults");
        FaultCoverage {
            cow: fault_probe,
            totals: self.kernel_fault_counters || fault_probe,
        }
    }

    /// Tells the kernel side which of the stages that follow a new child
    /// until it runs (first_run, wakeup_new) did attach. Whether one ends
    /// unavailable is only known now, after the programs were loaded with
    /// their configuration.
    fn tell_probes_what_attached(&mut self) -> Result<()> {
        let attached = [
            ("first_run", await_child::FIRST_RUN),
            ("wakeup_new", await_child::WAKEUP_NEW),
        ]
        .into_iter()
        .filter(|(stage, _)| self.attached(stage))
        .fold(0, |bits, (_, bit)| bits | bit);
        let map = self
            .ebpf
            .map_mut(MAP_GATES)
            .context("the probes' gate counters (.bss) are missing")?;
        let mut gates: aya::maps::Array<_, Gates> = aya::maps::Array::try_from(map)?;
        // Nothing is traced yet, so every counter is still zero.
        let now = gates.get(&0, 0)?;
        gates.set(
            0,
            Gates {
                await_child_attached: attached as u64,
                ..now
            },
            0,
        )?;
        Ok(())
    }

    /// Adds a process to the kernel-side set of traced processes; the root
    /// command (`root`) also gets a spawn record, for its exec and exit.
    ///
    /// In a PID namespace `tgid` is a pid of that namespace: the process is
    /// traced from the first probe that runs in it, and
    /// [`Session::host_tgid`] tells its pid on the host from then on.
    pub fn trace(&mut self, tgid: u32, record_spawns: bool, root: bool) -> Result<()> {
        let flags = traced_flags(record_spawns);
        if !self.in_pid_namespace {
            return self.kernel.trace(tgid, flags, root);
        }
        let registration = NsRegistration {
            flags: flags | if root { NS_ROOT } else { 0 },
            host_tgid: 0,
        };
        let mut map: HashMap<&mut MapData, u32, NsRegistration> = HashMap::try_from(
            self.ebpf
                .map_mut(MAP_NS_REGISTRATIONS)
                .context("the NS_REGISTRATIONS map is missing")?,
        )?;
        map.insert(tgid, registration, 0)
            .with_context(|| format!("adding pid {tgid} to the traced set"))?;
        self.set_registration_pending(true)
    }

    /// The host's pid of a process given to [`Session::trace`]: itself
    /// outside a PID namespace; inside one, `None` until a probe has run in
    /// the process. Once every registration is resolved, the probes stop
    /// looking for them.
    pub fn host_tgid(&mut self, tgid: u32) -> Result<Option<u32>> {
        if !self.in_pid_namespace {
            return Ok(Some(tgid));
        }
        let map: HashMap<&MapData, u32, NsRegistration> = HashMap::try_from(
            self.ebpf
                .map(MAP_NS_REGISTRATIONS)
                .context("NS_REGISTRATIONS map missing")?,
        )?;
        let host = match map.get(&tgid, 0) {
            Ok(r) if r.host_tgid != 0 => Some(r.host_tgid),
            _ => None,
        };
        let all_resolved = map.iter().all(|e| e.is_ok_and(|(_, r)| r.host_tgid != 0));
        if all_resolved {
            self.set_registration_pending(false)?;
        }
        Ok(host)
    }

    fn set_registration_pending(&mut self, pending: bool) -> Result<()> {
        let mut flag: aya::maps::Array<&mut MapData, u32> = aya::maps::Array::try_from(
            self.ebpf
                .map_mut(MAP_NS_PENDING)
                .context("NS_PENDING map missing")?,
        )?;
        flag.set(0, pending as u32, 0)?;
        Ok(())
    }

    /// The ring buffer of records (taken once).
    pub fn take_records(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(MAP_RECORDS)
            .context("the RECORDS map is missing")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// What the kernel side could not keep so far.
    pub fn lost(&self) -> Lost {
        self.kernel.lost()
    }

    /// Finished spawns that waited in the kernel for room in the ring
    /// buffer, collected when there are new ones since `seen`; returns
    /// them and the new count.
    pub fn collect_deferred(&mut self, seen: u64) -> (Vec<Vec<u8>>, u64) {
        let now = self.kernel.deferred();
        if now == seen {
            return (Vec::new(), seen);
        }
        (self.kernel.collect_deferred(), now)
    }

    /// Stops the probes at once (they send nothing more) and leaves their
    /// detaching to a background holder that outlives this process (see
    /// [`super::detach`]); detaches here if that cannot be done. The spawn
    /// state stays readable.
    pub fn stop(mut self) -> KernelSpawns {
        let holder = super::detach::stop(&mut self.ebpf)
            .ok()
            .and_then(|()| super::detach::hand_off());
        let Some(holder) = holder else {
            return self.detach();
        };
        let Session {
            kernel,
            ebpf,
            fork_probes,
            ..
        } = self;
        // Only references now: the holder has every descriptor too.
        drop((fork_probes, ebpf));
        drop(holder);
        kernel
    }

    /// The metrics maps (`serve`, `top`: [`SessionOptions::metrics`]), taken once.
    pub fn take_metrics(&mut self) -> Result<KernelMetrics> {
        KernelMetrics::take(&mut self.ebpf)
    }

    /// Detaches and unloads every program (dropping the rest of the
    /// session); the spawn state stays readable. Each detach waits for an
    /// RCU grace period under the kernel's tracepoint lock, so this takes
    /// about 1.4 s on the development VM: [`Session::stop`] avoids the wait.
    pub fn detach(self) -> KernelSpawns {
        self.kernel
    }

    /// Starts cpu-clock sampling of the traced processes' stacks on every CPU.
    pub fn start_sampling(&mut self, hz: u64) -> Result<()> {
        let program: &mut PerfEvent = program(&mut self.ebpf, "sample_stack")?.try_into()?;
        program.load().context("loading the stack sampler")?;
        let cpus = aya::util::online_cpus().map_err(|(path, e)| anyhow::anyhow!("{path}: {e}"))?;
        for cpu in cpus {
            program
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Frequency(hz),
                    false,
                )
                .with_context(|| format!("opening the cpu-clock sampler on CPU {cpu}"))?;
        }
        Ok(())
    }

    /// Processes that have stack samples so far.
    pub fn sampled_tgids(&self) -> Vec<u32> {
        let Some(map) = self.ebpf.map(MAP_STACK_COUNTS) else {
            return Vec::new();
        };
        let Ok(counts) = HashMap::<&MapData, StackKey, u64>::try_from(map) else {
            return Vec::new();
        };
        let mut tgids: Vec<u32> = counts
            .keys()
            .filter_map(Result::ok)
            .map(|k| k.tgid)
            .collect();
        tgids.sort_unstable();
        tgids.dedup();
        tgids
    }

    /// Every stack sample count, with its stacks resolved to addresses.
    /// Returns the samples and how many stacks could not be taken.
    pub fn stack_samples(&self) -> Result<Vec<RawSample>> {
        let counts: HashMap<&MapData, StackKey, u64> = HashMap::try_from(
            self.ebpf
                .map(MAP_STACK_COUNTS)
                .context("STACK_COUNTS map missing")?,
        )?;
        let stacks: StackTraceMap<&MapData> =
            StackTraceMap::try_from(self.ebpf.map(MAP_STACKS).context("STACKS map missing")?)?;
        let frames = |id: i32| -> Vec<u64> {
            if id < 0 {
                return Vec::new();
            }
            stacks
                .get(&(id as u32), 0)
                .map(|t| t.frames().iter().map(|f| f.ip).collect())
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for entry in counts.iter() {
            let (key, count) = entry?;
            out.push(RawSample {
                tgid: key.tgid,
                comm: key.comm,
                kernel: frames(key.kernel_stack),
                user: frames(key.user_stack),
                count,
            });
        }
        Ok(out)
    }

    /// The probes' gate counters now (see [`spawnprof_common::Gates`]).
    pub fn gates(&self) -> Result<Gates> {
        read_gates(&self.ebpf)
    }

    /// Parks or brings back the fork-only probes ([`super::park`]).
    pub fn keep_fork_probes(&mut self) -> Result<()> {
        self.fork_probes.keep(&mut self.ebpf)
    }

    /// How often the fork-only probes were parked and brought back.
    pub fn park_counts(&self) -> ParkCounts {
        self.fork_probes.counts()
    }

    /// Per-program run time and run count (non-zero only while BPF stats are enabled).
    pub fn program_stats(&self) -> Vec<(String, u64, u64)> {
        self.ebpf
            .programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some((
                    name.to_string(),
                    info.run_time().as_nanos() as u64,
                    info.run_count(),
                ))
            })
            .filter(|(_, _, count)| *count > 0)
            .collect()
    }
}
