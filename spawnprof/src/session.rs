//! Loading the probes: fill the configuration globals from tracefs and BTF,
//! load the object, resolve the attach plan candidate by candidate, and hand
//! out the ring buffer and counters. Dropping a [`Session`] detaches
//! everything (aya closes the links and programs with their file descriptors,
//! and the kernel does the same if the process dies).
use std::collections::{BTreeMap, HashSet};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf, StackTraceMap},
    programs::{
        FEntry, FExit, KProbe, PerfEvent, Program, ProgramError, RawTracePoint, TracePoint,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};
use spawnprof_common::{
    GLOBAL_CONFIG, Gates, KernelOffsets, MAP_GATES, MAP_LOST, MAP_MARKS, MAP_NS_PENDING,
    MAP_NS_REGISTRATIONS, MAP_STACK_COUNTS, MAP_STACKS, MAP_TRACED, NO_FIELD, NsRegistration,
    ProbeConfig, StackKey, TracedProc, TracepointOffsets, await_child, capture, kind, traced,
};

use crate::{
    capabilities::{Host, Tracefs},
    correlate::{FaultCoverage, mark_kind_name},
    plan::{Attach, Candidate, Mechanism, PLAN, PlanRow, Rejection},
    stacks::RawSample,
};

/// Knobs of a recording that shape the probes.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Descendants of traced processes have their own spawns recorded.
    pub follow: bool,
    /// Skip the fentry/fexit tier (e.g. to exercise kprobes).
    pub no_fentry: bool,
    /// Skip the kprobe/kretprobe tier.
    pub no_kprobe: bool,
    /// Skip raw tracepoints for classic ones (where a stage has both).
    pub no_raw_tracepoint: bool,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub ring_buffer_bytes: u32,
    /// Record argument strings of each exec (`--capture-args`).
    pub capture_args: bool,
    /// Record environment strings of each exec (`--capture-env`).
    pub capture_env: bool,
    /// Stages not to attach (reported unavailable): to attribute overhead,
    /// or to drop a costly stage on a busy production node.
    pub skip_stages: Vec<String>,
    /// `--low-overhead`: no probe on a machine-wide per-event tracepoint.
    pub low_overhead: bool,
}

impl SessionOptions {
    /// The checks that need no kernel: stages that exist and may be left
    /// out, a ring buffer the kernel accepts. Errors name the option.
    pub fn validate(&self) -> Result<()> {
        for s in &self.skip_stages {
            let Some(stage) = PLAN.iter().find(|p| p.name == s) else {
                let names: Vec<&str> = PLAN.iter().map(|p| p.name).collect();
                bail!(
                    "--skip-stage {s}: no such stage (stages: {})",
                    names.join(", ")
                );
            };
            if stage.required {
                bail!("--skip-stage {s}: recording cannot work without this stage");
            }
        }
        let size = self.ring_buffer_bytes;
        if !size.is_power_of_two() || size < 4096 {
            bail!("--ring-buffer must be a power of two of at least 4096 bytes (got {size})");
        }
        Ok(())
    }

    /// Whether `stage` was left out with `--skip-stage`.
    pub fn skips(&self, stage: &str) -> bool {
        self.skip_stages.iter().any(|s| s == stage)
    }
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            follow: false,
            no_fentry: false,
            no_kprobe: false,
            no_raw_tracepoint: false,
            ring_buffer_bytes: 16 << 20,
            skip_stages: Vec::new(),
            low_overhead: false,
            capture_args: false,
            capture_env: false,
        }
    }
}

/// Loaded and attached probes.
pub struct Session {
    ebpf: Ebpf,
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
        let mut ebpf = EbpfLoader::new()
            .override_global(GLOBAL_CONFIG, &config, true)
            .map_max_entries(MAP_MARKS, size)
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
        let mut plan = Vec::new();
        for stage in PLAN {
            let mut rejected = Vec::new();
            let mut chosen = None;
            let skipped = opts.skips(stage.name);
            for candidate in stage.candidates {
                if skipped && candidate.mechanism != Mechanism::Unavailable {
                    rejected.push(Rejection {
                        mechanism: candidate.mechanism,
                        reason: format!("skipped on request ({})", crate::plan::SKIP_STAGE),
                    });
                    continue;
                }
                if opts.low_overhead
                    && let Some(event) = candidate.per_machine_event()
                {
                    rejected.push(Rejection {
                        mechanism: candidate.mechanism,
                        reason: format!(
                            "fires on every {event} of the machine: left out ({})",
                            crate::plan::LOW_OVERHEAD
                        ),
                    });
                    continue;
                }
                if candidate.mechanism == Mechanism::Unavailable {
                    chosen = Some(candidate);
                    break;
                }
                let outcome = conflict(stage.name, candidate, &attached)
                    .map_or(Ok(()), |why| Err(anyhow::anyhow!(why)))
                    .and_then(|()| precheck(host, opts, candidate))
                    .and_then(|()| {
                        attach_candidate(
                            &mut ebpf,
                            aya_btf.as_ref(),
                            &host.tracefs,
                            candidate,
                            &mut attached,
                        )
                    });
                match outcome {
                    Ok(()) => {
                        chosen = Some(candidate);
                        break;
                    }
                    Err(e) => rejected.push(Rejection {
                        mechanism: candidate.mechanism,
                        reason: format!("{e:#}"),
                    }),
                }
            }
            let Some(chosen) = chosen else {
                let reasons: Vec<String> = rejected.iter().map(|r| r.reason.clone()).collect();
                bail!(
                    "cannot trace the `{}` stage, which recording needs: {}",
                    stage.name,
                    reasons.join("; ")
                );
            };
            plan.push(PlanRow {
                stage: stage.name.into(),
                mechanism: chosen.mechanism,
                how: chosen.how.into(),
                targets: chosen.attaches.iter().map(Attach::target).collect(),
                rejected,
            });
        }
        let mut session = Self {
            ebpf,
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

    /// What the fault figures of the marks are worth.
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

    /// Adds a process to the kernel-side set of traced processes.
    ///
    /// In a PID namespace `tgid` is a pid of that namespace: the process is
    /// traced from the first probe that runs in it, and
    /// [`Session::host_tgid`] tells its pid on the host from then on.
    pub fn trace(&mut self, tgid: u32, record_spawns: bool) -> Result<()> {
        let flags = if record_spawns {
            traced::SPAWNS
        } else {
            traced::LIFE_ONLY
        };
        if self.in_pid_namespace {
            let registration = NsRegistration {
                flags,
                host_tgid: 0,
            };
            self.add_traced(MAP_NS_REGISTRATIONS, tgid, registration)?;
            return self.set_registration_pending(true);
        }
        let entry = TracedProc {
            flags,
            ..TracedProc::default()
        };
        self.add_traced(MAP_TRACED, tgid, entry)
    }

    /// Puts `tgid` into one of the maps of traced processes.
    fn add_traced<V: aya::Pod>(&mut self, map: &str, tgid: u32, value: V) -> Result<()> {
        let mut map: HashMap<&mut MapData, u32, V> = HashMap::try_from(
            self.ebpf
                .map_mut(map)
                .with_context(|| format!("the {map} map is missing"))?,
        )?;
        map.insert(tgid, value, 0)
            .with_context(|| format!("adding pid {tgid} to the traced set"))?;
        Ok(())
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

    /// The ring buffer of marks (taken once).
    pub fn take_marks(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map(MAP_MARKS).context("MARKS map missing")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Marks dropped because the ring buffer was full, by kind (summed over CPUs).
    pub fn lost(&self) -> Result<BTreeMap<String, u64>> {
        let map: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(MAP_LOST).context("LOST map missing")?)?;
        let mut out = BTreeMap::new();
        for k in 1..kind::COUNT {
            let total: u64 = map.get(&(k as u32), 0)?.iter().sum();
            if total > 0 {
                out.insert(mark_kind_name(k).to_string(), total);
            }
        }
        Ok(out)
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
        let map = self
            .ebpf
            .map(MAP_GATES)
            .context("the probes' gate counters (.bss) are missing")?;
        let gates: aya::maps::Array<_, Gates> = aya::maps::Array::try_from(map)?;
        Ok(gates.get(&0, 0)?)
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

/// Why a candidate must not be combined with what earlier stages attached.
/// The mmap_lock tracepoint programs derive the lock wait and the copy from
/// the same events: once dup_mmap needed them, the lock wait is timed by
/// them too, and a kernel-function tier for it would report it twice.
fn conflict(
    stage: &str,
    candidate: &Candidate,
    attached: &HashSet<&'static str>,
) -> Option<String> {
    let kernel_function = matches!(candidate.mechanism, Mechanism::Fentry | Mechanism::Kprobe);
    (stage == "mm_lock_wait" && kernel_function && attached.iter().any(|p| p.contains("mmap_lock")))
        .then(|| {
            "dup_mmap is timed from the mmap_lock tracepoints, which time this wait too".to_string()
        })
}

/// The kernel's per-task fault counters (see `KernelOffsets::has_fault_counters`).
const FAULT_COUNTERS: &[(&str, &str)] = &[
    ("task_struct", "min_flt"),
    ("task_struct", "maj_flt"),
    ("task_struct", "signal"),
    ("signal_struct", "min_flt"),
    ("signal_struct", "maj_flt"),
];

/// What the kernel_clone tiers read from their argument.
const CLONE_ARGS: &[(&str, &str)] = &[
    ("kernel_clone_args", "flags"),
    ("kernel_clone_args", "exit_signal"),
];

/// Kernel struct fields programs read through the pointers they are handed
/// (raw tracepoint and kernel-function arguments); programs not listed need
/// none. Without them the candidate is refused, with the reason.
const PROGRAM_BTF_FIELDS: &[(&str, &[(&str, &str)])] = &[
    ("raw_sched_switch", &[("task_struct", "pid")]),
    ("raw_sched_process_fork", &[("task_struct", "pid")]),
    ("raw_task_newtask", &[("task_struct", "pid")]),
    ("raw_sched_wakeup_new", &[("task_struct", "pid")]),
    ("fentry_kernel_clone", CLONE_ARGS),
    ("kprobe_kernel_clone", CLONE_ARGS),
    // The do_wp_page tiers count only CoW faults: the totals must come
    // from the task counters.
    ("fentry_do_wp_page", FAULT_COUNTERS),
    ("kprobe_do_wp_page", FAULT_COUNTERS),
    ("fentry_execve", &[("pt_regs", "di")]),
    ("fentry_execveat", &[("pt_regs", "si")]),
    ("kprobe_execve", &[("pt_regs", "di")]),
    ("kprobe_execveat", &[("pt_regs", "si")]),
    ("fexit_waitid", &[("pt_regs", "dx"), ("pt_regs", "r10")]),
    ("kprobe_waitid", &[("pt_regs", "dx"), ("pt_regs", "r10")]),
    (
        "raw_sched_process_exec",
        &[
            ("linux_binprm", "argc"),
            ("linux_binprm", "envc"),
            ("linux_binprm", "filename"),
        ],
    ),
];

fn precheck(host: &Host, opts: &SessionOptions, candidate: &Candidate) -> Result<()> {
    match candidate.mechanism {
        Mechanism::Fentry => {
            if opts.no_fentry {
                bail!("disabled by --no-fentry");
            }
            let Some(btf) = &host.btf else {
                bail!(
                    "no kernel BTF ({})",
                    host.btf_error.as_deref().unwrap_or("unknown reason")
                );
            };
            for a in candidate.attaches {
                if let Attach::Fentry { function, .. } | Attach::Fexit { function, .. } = a
                    && !btf.has_function(function)
                {
                    bail!(
                        "`{function}` is not in the kernel's BTF (inlined or renamed on this kernel)"
                    );
                }
            }
        }
        Mechanism::Kprobe => {
            if opts.no_kprobe {
                bail!("disabled by --no-kprobe");
            }
            if !host.kprobe_pmu {
                bail!(
                    "no kprobe PMU (/sys/bus/event_source/devices/kprobe/type is missing: \
                     kernel built without CONFIG_KPROBES)"
                );
            }
            for a in candidate.attaches {
                if let Attach::Kprobe { function, .. } = a
                    && !host.kprobe_target_exists(function)
                {
                    bail!("`{function}` is not in available_filter_functions (inlined or notrace)");
                }
            }
        }
        Mechanism::RawTracepoint => {
            if opts.no_raw_tracepoint {
                bail!("disabled by --no-raw-tracepoint");
            }
        }
        Mechanism::Tracepoint => {
            for a in candidate.attaches {
                if let Attach::Tracepoint {
                    category,
                    name,
                    optional: false,
                    ..
                } = a
                    && !host.tracefs.has_event(category, name)
                {
                    bail!("tracepoint {category}:{name} does not exist on this kernel");
                }
            }
        }
        Mechanism::Unavailable => {}
    }
    check_btf_fields(host, candidate)
}

/// The errno of a refused load or attach, for the explanations below.
fn errno_of(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::LoadError { io_error, .. } => io_error.raw_os_error(),
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    }
}

/// Why the kernel refused a raw tracepoint, in its terms: the two refusals
/// an older kernel gives are a tracepoint it does not have and one whose
/// prototype has fewer arguments than the program reads.
fn raw_attach_error(name: &str, e: ProgramError) -> anyhow::Error {
    match errno_of(&e) {
        Some(libc::ENOENT) => anyhow::anyhow!("this kernel has no {name} tracepoint"),
        Some(libc::EINVAL) => anyhow::anyhow!(
            "this kernel's {name} tracepoint passes fewer arguments than the program reads \
             (an older prototype)"
        ),
        _ => e.into(),
    }
}

/// A refused fentry/fexit load. As root, EPERM there is not a missing
/// capability but a policy: say so instead of the bare errno.
fn tracing_load_error(function: &str, e: ProgramError) -> anyhow::Error {
    match errno_of(&e) {
        Some(libc::EPERM) => anyhow::anyhow!(
            "the kernel refused to load a tracing program for {function} (EPERM): a security policy \
             (kernel lockdown, an LSM, or the platform's) forbids fentry/fexit on this host"
        ),
        _ => e.into(),
    }
}

/// Refuses a candidate whose programs read kernel structs this host's BTF
/// cannot locate.
fn check_btf_fields(host: &Host, candidate: &Candidate) -> Result<()> {
    for a in candidate.attaches {
        let program = a.program();
        let needs = PROGRAM_BTF_FIELDS
            .iter()
            .find(|(p, _)| *p == program)
            .map_or(&[][..], |(_, fields)| fields);
        if needs.is_empty() {
            continue;
        }
        let Some(btf) = &host.btf else {
            bail!(
                "no kernel BTF to locate {} ({})",
                needs
                    .iter()
                    .map(|(s, m)| format!("{s}.{m}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                host.btf_error.as_deref().unwrap_or("unknown reason")
            );
        };
        for (s, m) in needs {
            if btf.member_offset(s, m).is_none() {
                bail!("the kernel's BTF has no {s}.{m}");
            }
        }
    }
    Ok(())
}

/// Loads and attaches every program of a candidate; on any failure, undoes
/// what this candidate attached so two tiers never count the same call.
fn attach_candidate(
    ebpf: &mut Ebpf,
    btf: Option<&aya::Btf>,
    tracefs: &Tracefs,
    candidate: &Candidate,
    attached: &mut HashSet<&'static str>,
) -> Result<()> {
    let mut mine = Vec::new();
    for a in candidate.attaches {
        let program = a.program();
        if attached.contains(program) {
            continue;
        }
        if let Attach::Tracepoint {
            category,
            name,
            optional: true,
            ..
        } = a
            && !tracefs.has_event(category, name)
        {
            continue;
        }
        match attach_one(ebpf, btf, a) {
            Ok(()) => {
                attached.insert(program);
                mine.push(program);
            }
            Err(e) => {
                for p in mine {
                    attached.remove(p);
                    unload(ebpf, p);
                }
                unload(ebpf, program);
                return Err(e.context(format!("attaching {} to {}", program, a.target())));
            }
        }
    }
    Ok(())
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Program> {
    ebpf.program_mut(name)
        .with_context(|| format!("program {name} is missing from the eBPF object"))
}

fn attach_one(ebpf: &mut Ebpf, btf: Option<&aya::Btf>, a: &Attach) -> Result<()> {
    let btf_required = || btf.context("kernel BTF could not be loaded");
    match *a {
        Attach::Tracepoint {
            program: p,
            category,
            name,
            ..
        } => {
            let tp: &mut TracePoint = program(ebpf, p)?.try_into()?;
            tp.load()?;
            tp.attach(category, name)?;
        }
        Attach::Fentry {
            program: p,
            function,
        } => {
            let btf = btf_required()?;
            let f: &mut FEntry = program(ebpf, p)?.try_into()?;
            f.load(function, btf)
                .map_err(|e| tracing_load_error(function, e))?;
            f.attach()?;
        }
        Attach::Fexit {
            program: p,
            function,
        } => {
            let btf = btf_required()?;
            let f: &mut FExit = program(ebpf, p)?.try_into()?;
            f.load(function, btf)
                .map_err(|e| tracing_load_error(function, e))?;
            f.attach()?;
        }
        Attach::RawTracepoint { program: p, name } => {
            let rt: &mut RawTracePoint = program(ebpf, p)?.try_into()?;
            rt.load()?;
            rt.attach(name).map_err(|e| raw_attach_error(name, e))?;
        }
        Attach::Kprobe {
            program: p,
            function,
        }
        | Attach::Kretprobe {
            program: p,
            function,
        } => {
            let k: &mut KProbe = program(ebpf, p)?.try_into()?;
            k.load()?;
            k.attach(function, 0)?;
        }
    }
    Ok(())
}

/// Detaches and unloads a program (best effort: it may never have loaded).
fn unload(ebpf: &mut Ebpf, name: &str) {
    let Some(p) = ebpf.program_mut(name) else {
        return;
    };
    let _ = match p {
        Program::TracePoint(p) => p.unload(),
        Program::FEntry(p) => p.unload(),
        Program::FExit(p) => p.unload(),
        Program::KProbe(p) => p.unload(),
        Program::RawTracePoint(p) => p.unload(),
        _ => Ok(()),
    };
}

/// RLIMIT_MEMLOCK as it was before [`raise_memlock_limit`] raised it.
static MEMLOCK_BEFORE_RAISE: std::sync::OnceLock<libc::rlimit> = std::sync::OnceLock::new();

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK, often 64 KiB or
/// 8 MiB: less than the ring buffer alone. (Later ones charge the memory
/// cgroup, and the limit does not matter.) Raised for spawnprof only: the
/// command it starts gets the old limit back ([`memlock_limit_to_restore`]).
fn raise_memlock_limit() -> std::result::Result<(), std::io::Error> {
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

/// The globals the probes read: tracepoint field offsets from tracefs,
/// kernel struct offsets from BTF.
fn probe_config(host: &Host, opts: &SessionOptions) -> Result<ProbeConfig> {
    let kernel = kernel_offsets(host);
    Ok(ProbeConfig {
        follow: opts.follow as u32,
        capture: (opts.capture_args as u32 * capture::ARGS)
            | (opts.capture_env as u32 * capture::ENV),
        count_every_fault: !kernel.has_fault_counters() as u32,
        ring_buffer_bytes: opts.ring_buffer_bytes,
        pid_ns: host.pid_ns.unwrap_or_default(),
        tp: tracepoint_offsets(&host.tracefs)?,
        kernel,
    })
}

/// Reads every field offset the probes need. A tracepoint missing here is
/// not an error: its field stays [`spawnprof_common::NO_FIELD`] and the plan
/// reports the stage as unavailable.
pub fn tracepoint_offsets(tracefs: &Tracefs) -> Result<TracepointOffsets> {
    let mut o = TracepointOffsets::MISSING;
    let get = |cat: &str, ev: &str, field: &str, size: u32| -> Option<u32> {
        tracefs.format(cat, ev).ok()?.offset_of(field, size).ok()
    };
    let set = |slot: &mut u32, v: Option<u32>| {
        if let Some(v) = v {
            *slot = v;
        }
    };
    set(
        &mut o.fork_parent_pid,
        get("sched", "sched_process_fork", "parent_pid", 4),
    );
    set(
        &mut o.fork_child_pid,
        get("sched", "sched_process_fork", "child_pid", 4),
    );
    set(
        &mut o.exec_filename,
        get("sched", "sched_process_exec", "filename", 4),
    );
    set(
        &mut o.exec_pid,
        get("sched", "sched_process_exec", "pid", 4),
    );
    set(
        &mut o.exec_old_pid,
        get("sched", "sched_process_exec", "old_pid", 4),
    );
    set(
        &mut o.exit_pid,
        get("sched", "sched_process_exit", "pid", 4),
    );
    set(
        &mut o.exit_group_dead,
        get("sched", "sched_process_exit", "group_dead", 1),
    );
    set(
        &mut o.wakeup_new_pid,
        get("sched", "sched_wakeup_new", "pid", 4),
    );
    set(
        &mut o.wakeup_new_target_cpu,
        get("sched", "sched_wakeup_new", "target_cpu", 4),
    );
    set(
        &mut o.switch_next_pid,
        get("sched", "sched_switch", "next_pid", 4),
    );
    set(&mut o.newtask_pid, get("task", "task_newtask", "pid", 4));
    set(
        &mut o.newtask_clone_flags,
        get("task", "task_newtask", "clone_flags", 8),
    );
    set(
        &mut o.mmap_lock_mm,
        get("mmap_lock", "mmap_lock_start_locking", "mm", 8),
    );
    set(
        &mut o.mmap_lock_write,
        get("mmap_lock", "mmap_lock_start_locking", "write", 1),
    );
    set(
        &mut o.mmap_lock_success,
        get("mmap_lock", "mmap_lock_acquire_returned", "success", 1),
    );
    set(
        &mut o.fault_error_code,
        get("exceptions", "page_fault_user", "error_code", 8),
    );
    set(
        &mut o.sys_enter_clone_flags,
        get("syscalls", "sys_enter_clone", "clone_flags", 8),
    );
    set(
        &mut o.sys_enter_clone3_uargs,
        get("syscalls", "sys_enter_clone3", "uargs", 8),
    );
    set(
        &mut o.sys_enter_execve_filename,
        get("syscalls", "sys_enter_execve", "filename", 8),
    );
    set(
        &mut o.sys_enter_execveat_filename,
        get("syscalls", "sys_enter_execveat", "filename", 8),
    );
    set(
        &mut o.sys_enter_waitid_infop,
        get("syscalls", "sys_enter_waitid", "infop", 8),
    );
    set(
        &mut o.sys_enter_waitid_options,
        get("syscalls", "sys_enter_waitid", "options", 8),
    );
    set(
        &mut o.sys_exit_ret,
        get("syscalls", "sys_exit_clone", "ret", 8),
    );
    // The mmap_lock release/acquire events share start_locking's layout for
    // mm and write; check rather than assume.
    for ev in ["mmap_lock_acquire_returned", "mmap_lock_released"] {
        if let (Some(mm), Some(w)) = (
            get("mmap_lock", ev, "mm", 8),
            get("mmap_lock", ev, "write", 1),
        ) && (mm != o.mmap_lock_mm || w != o.mmap_lock_write)
        {
            bail!(
                "mmap_lock:{ev} lays out mm/write differently from start_locking; please report this kernel"
            );
        }
    }
    Ok(o)
}

fn kernel_offsets(host: &Host) -> KernelOffsets {
    let Some(btf) = &host.btf else {
        return KernelOffsets::default();
    };
    let get = |s: &str, m: &str| btf.member_offset(s, m).unwrap_or(0);
    // For members that may sit at offset 0.
    let field = |s: &str, m: &str| btf.member_offset(s, m).unwrap_or(NO_FIELD);
    KernelOffsets {
        task_mm: get("task_struct", "mm"),
        task_exit_code: get("task_struct", "exit_code"),
        task_pid: get("task_struct", "pid"),
        task_tgid: get("task_struct", "tgid"),
        mm_env_start: get("mm_struct", "env_start"),
        mm_env_end: get("mm_struct", "env_end"),
        mm_arg_start: get("mm_struct", "arg_start"),
        mm_arg_end: get("mm_struct", "arg_end"),
        binprm_argc: get("linux_binprm", "argc"),
        binprm_envc: get("linux_binprm", "envc"),
        binprm_filename: get("linux_binprm", "filename"),
        task_min_flt: get("task_struct", "min_flt"),
        task_maj_flt: get("task_struct", "maj_flt"),
        task_signal: get("task_struct", "signal"),
        signal_min_flt: get("signal_struct", "min_flt"),
        signal_maj_flt: get("signal_struct", "maj_flt"),
        clone_args_flags: field("kernel_clone_args", "flags"),
        clone_args_exit_signal: field("kernel_clone_args", "exit_signal"),
        regs_di: field("pt_regs", "di"),
        regs_si: field("pt_regs", "si"),
        regs_dx: field("pt_regs", "dx"),
        regs_r10: field("pt_regs", "r10"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_candidate(stage: &str) -> &'static Candidate {
        PLAN.iter()
            .find(|s| s.name == stage)
            .and_then(|s| {
                s.candidates
                    .iter()
                    .find(|c| c.mechanism == Mechanism::RawTracepoint)
            })
            .expect("the stage has a raw-tracepoint candidate")
    }

    #[test]
    fn without_btf_only_raw_programs_that_read_kernel_structs_are_refused() {
        let Ok(mut host) = Host::probe() else {
            println!("SKIPPED: needs root to inspect the host (run through `cargo xtask test`)");
            return;
        };
        host.btf = None;
        host.btf_error = Some("no /sys/kernel/btf/vmlinux (test)".into());
        let opts = SessionOptions::default();
        // mmap_lock and page_fault_user pass scalars and an mm pointer
        // that is only compared: no BTF needed.
        for stage in ["mm_lock_wait", "dup_mmap", "page_faults"] {
            precheck(&host, &opts, raw_candidate(stage))
                .unwrap_or_else(|e| panic!("{stage}: {e:#}"));
        }
        let err = precheck(&host, &opts, raw_candidate("first_run")).unwrap_err();
        assert!(format!("{err:#}").contains("task_struct.pid"), "{err:#}");
        let err = precheck(&host, &opts, raw_candidate("exec_done")).unwrap_err();
        assert!(format!("{err:#}").contains("linux_binprm.argc"), "{err:#}");
    }
}
