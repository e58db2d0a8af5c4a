//! Resolving the attach plan on this host: for each stage, its candidates
//! best first are pre-checked (BTF, tracefs, the kprobe PMU, options),
//! then loaded and attached; the first that works is the stage's row, and
//! why each better one was rejected is kept for `spawnprof probes`.
use std::collections::HashSet;

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    programs::{
        FEntry, FExit, KProbe, Program, ProgramError, RawTracePoint, TracePoint,
        raw_trace_point::{RawTracePointLink, RawTracePointLinkId},
        trace_point::TracePointLinkId,
    },
};

use super::{
    Host, Tracefs,
    arch::syscall_arg_field,
    options::SessionOptions,
    plan::{
        Attach, CONTEXT_SWITCH, Candidate, FIRST_RUN_PER_SWITCH, FORK_ONLY, LOW_OVERHEAD,
        Mechanism, PlanRow, ProbeStage, Rejection, SKIP_STAGE,
    },
};

/// What resolving the plan works with: the loaded object, the host's
/// facts, and the programs attached by the stages resolved so far.
pub(super) struct Resolver<'a> {
    pub ebpf: &'a mut Ebpf,
    pub btf: Option<&'a aya::Btf>,
    pub host: &'a Host,
    pub opts: &'a SessionOptions,
    pub attached: &'a mut HashSet<&'static str>,
    /// The links of the fork-only programs, held apart so that they can be
    /// parked ([`super::park`]).
    pub fork_links: &'a mut ForkLinks,
}

/// The links of attached [`FORK_ONLY`] programs, by program.
pub(super) type ForkLinks = Vec<(ForkProgram, RawTracePointLink)>;

/// A [`FORK_ONLY`] program and the raw tracepoint it is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ForkProgram {
    pub program: &'static str,
    pub tracepoint: &'static str,
}

/// Tries `stage`'s candidates best first and returns the row of the first
/// that attaches (or ends the list as "unavailable"). A required stage
/// with no working candidate is an error naming every reason.
pub(super) fn resolve_stage(stage: &ProbeStage, r: &mut Resolver<'_>) -> Result<PlanRow> {
    let mut rejected = Vec::new();
    for candidate in stage.candidates {
        match r.try_candidate(stage, candidate) {
            Ok(()) => {
                return Ok(PlanRow {
                    stage: stage.name.into(),
                    mechanism: candidate.mechanism,
                    how: candidate.how.into(),
                    targets: candidate.attaches.iter().map(Attach::target).collect(),
                    rejected,
                });
            }
            Err(reason) => rejected.push(Rejection {
                mechanism: candidate.mechanism,
                reason,
            }),
        }
    }
    let reasons: Vec<String> = rejected.iter().map(|r| r.reason.clone()).collect();
    bail!(
        "cannot trace the `{}` stage, which recording needs: {}",
        stage.name,
        reasons.join("; ")
    )
}

impl Resolver<'_> {
    /// Attaches one candidate; `Err` holds why it was rejected.
    fn try_candidate(&mut self, stage: &ProbeStage, candidate: &Candidate) -> Result<(), String> {
        if let Some(why) = left_out(stage, candidate, self.opts) {
            return Err(why);
        }
        if candidate.mechanism == Mechanism::Unavailable {
            return Ok(());
        }
        conflict(stage.name, candidate, self.attached)
            .or_else(|| missing_input(candidate, self.attached))
            .map_or(Ok(()), |why| Err(anyhow::anyhow!(why)))
            .and_then(|()| precheck(self.host, self.opts, candidate))
            .and_then(|()| {
                attach_candidate(
                    self.ebpf,
                    (self.btf, &self.host.tracefs),
                    candidate,
                    (self.attached, self.fork_links),
                    self.opts.empty_programs,
                )
            })
            .map_err(|e| format!("{e:#}"))
    }
}

/// Why the options leave this candidate out, if they do.
fn left_out(stage: &ProbeStage, candidate: &Candidate, opts: &SessionOptions) -> Option<String> {
    if candidate.mechanism == Mechanism::Unavailable {
        return None;
    }
    if opts.skips(stage.name) {
        return Some(format!("skipped on request ({SKIP_STAGE})"));
    }
    let event = candidate.per_machine_event()?;
    if opts.low_overhead {
        return Some(format!(
            "fires on every {event} of the machine: left out ({LOW_OVERHEAD})"
        ));
    }
    (event == CONTEXT_SWITCH && !opts.first_run_per_switch).then(|| {
        format!(
            "fires on every {event} of the machine: serve and top read the first run from \
             the scheduler's wait count ({FIRST_RUN_PER_SWITCH} to time each switch)"
        )
    })
}

/// Why a candidate that reads what other stages' programs record cannot
/// work with what they attached: a first run derived from the wait needs
/// the wake-up it is counted from.
fn missing_input(candidate: &Candidate, attached: &HashSet<&'static str>) -> Option<String> {
    let woken = attached.iter().any(|p| p.ends_with("sched_wakeup_new"));
    (candidate.mechanism == Mechanism::SchedInfo && !woken)
        .then(|| "needs the wakeup_new stage, which did not attach".to_string())
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

/// waitid's infop and options, its third and fourth arguments.
const WAITID_ARGS: &[(&str, &str)] = &[syscall_arg_field(2), syscall_arg_field(3)];

/// Kernel struct fields programs read through the pointers they are handed
/// (raw tracepoint and kernel-function arguments); programs not listed need
/// none. Without them the candidate is refused, with the reason.
pub(super) const PROGRAM_BTF_FIELDS: &[(&str, &[(&str, &str)])] = &[
    ("raw_sched_switch", &[("task_struct", "pid")]),
    ("raw_sched_process_fork", &[("task_struct", "pid")]),
    ("raw_sched_wakeup_new", &[("task_struct", "pid")]),
    ("fentry_kernel_clone", CLONE_ARGS),
    ("kprobe_kernel_clone", CLONE_ARGS),
    // The do_wp_page tiers count only CoW faults: the totals must come
    // from the task counters.
    ("fentry_do_wp_page", FAULT_COUNTERS),
    ("kprobe_do_wp_page", FAULT_COUNTERS),
    ("fentry_execve", &[syscall_arg_field(0)]),
    ("fentry_execveat", &[syscall_arg_field(1)]),
    ("kprobe_execve", &[syscall_arg_field(0)]),
    ("kprobe_execveat", &[syscall_arg_field(1)]),
    ("fexit_waitid", WAITID_ARGS),
    ("kprobe_waitid", WAITID_ARGS),
    (
        "raw_sched_process_exec",
        &[
            ("linux_binprm", "argc"),
            ("linux_binprm", "envc"),
            ("linux_binprm", "filename"),
        ],
    ),
];

/// What the first run is derived from without a context-switch probe.
const SCHED_INFO_FIELDS: &[(&str, &str)] = &[
    ("task_struct", "sched_info"),
    ("sched_info", "pcount"),
    ("sched_info", "run_delay"),
];

fn precheck(host: &Host, opts: &SessionOptions, candidate: &Candidate) -> Result<()> {
    let attaches = candidate.attaches;
    match candidate.mechanism {
        Mechanism::Fentry => precheck_fentry(host, opts, attaches)?,
        Mechanism::Kprobe => precheck_kprobe(host, opts, attaches)?,
        Mechanism::RawTracepoint => {
            if opts.no_raw_tracepoint {
                bail!("disabled by --no-raw-tracepoint");
            }
            for a in attaches {
                check_raw_prototype(host, a.program())?;
            }
        }
        Mechanism::Tracepoint => precheck_tracepoints(host, attaches)?,
        Mechanism::SchedInfo => precheck_sched_info(host)?,
        Mechanism::Unavailable => {}
    }
    check_btf_fields(host, candidate)
}

fn precheck_fentry(host: &Host, opts: &SessionOptions, attaches: &[Attach]) -> Result<()> {
    if opts.no_fentry {
        bail!("disabled by --no-fentry");
    }
    let Some(btf) = &host.btf else {
        bail!(
            "no kernel BTF ({})",
            host.btf_error.as_deref().unwrap_or("unknown reason")
        );
    };
    for a in attaches {
        if let Attach::Fentry { function, .. } | Attach::Fexit { function, .. } = a
            && !btf.has_function(function)
        {
            bail!("`{function}` is not in the kernel's BTF (inlined or renamed on this kernel)");
        }
    }
    Ok(())
}

fn precheck_kprobe(host: &Host, opts: &SessionOptions, attaches: &[Attach]) -> Result<()> {
    if opts.no_kprobe {
        bail!("disabled by --no-kprobe");
    }
    if !host.kprobe_pmu {
        bail!(
            "no kprobe PMU (/sys/bus/event_source/devices/kprobe/type is missing: \
             kernel built without CONFIG_KPROBES)"
        );
    }
    for a in attaches {
        if let Attach::Kprobe { function, .. } = a
            && !host.kprobe_target_exists(function)
        {
            bail!("`{function}` is not in available_filter_functions (inlined or notrace)");
        }
    }
    Ok(())
}

/// Every tracepoint a stage cannot do without must exist.
fn precheck_tracepoints(host: &Host, attaches: &[Attach]) -> Result<()> {
    for a in attaches {
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
    Ok(())
}

fn precheck_sched_info(host: &Host) -> Result<()> {
    let btf = host
        .btf
        .as_ref()
        .context("no kernel BTF to locate sched_info")?;
    for (s, m) in SCHED_INFO_FIELDS {
        if btf.member_offset(s, m).is_none() {
            bail!("the kernel's BTF has no {s}.{m} (built without CONFIG_SCHED_INFO)");
        }
    }
    if !sched_info_counting() {
        bail!(
            "the scheduler counts no run delays here (/proc/self/schedstat reads 0 \
             time slices: a kernel before 5.14 without schedstats, booted with \
             `nodelayacct`; boot without it)"
        );
    }
    Ok(())
}

/// Whether the kernel fills `sched_info` at run time: before 5.14 a
/// kernel without schedstats fills it only while delay accounting is on,
/// and otherwise every task's `pcount` stays 0, as the third field
/// of our own schedstat shows (we have run, so it is at least 1 when on).
fn sched_info_counting() -> bool {
    crate::sys::procfs::read_trim("/proc/self/schedstat").is_some_and(|line| slices_counted(&line))
}

/// Whether a schedstat line (run time, run delay, time slices) counts time
/// slices.
fn slices_counted(line: &str) -> bool {
    line.split_whitespace()
        .nth(2)
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|slices| slices > 0)
}

/// Raw tracepoint programs written for one prototype of their tracepoint:
/// (program, tracepoint, the argument they read its first bool from). The
/// mmap_lock tracepoints passed `(mm, memcg_path, write)` before about 6.14
/// and `(mm, write)` since; the kernel's BTF says which.
pub(super) const RAW_PROTOTYPES: &[(&str, &str, u32)] = &[
    ("raw_mmap_lock_start_locking", "mmap_lock_start_locking", 1),
    ("raw_mmap_lock_released", "mmap_lock_released", 1),
    (
        "raw_mmap_lock_start_locking_memcg",
        "mmap_lock_start_locking",
        2,
    ),
    ("raw_mmap_lock_released_memcg", "mmap_lock_released", 2),
];

/// Refuses a raw tracepoint program written for another prototype than
/// this kernel's: a raw program reads its arguments by position, and the
/// attach only checks it reads no more of them than there are.
fn check_raw_prototype(host: &Host, program: &str) -> Result<()> {
    let Some(&(_, tracepoint, reads)) = RAW_PROTOTYPES.iter().find(|(p, _, _)| *p == program)
    else {
        return Ok(());
    };
    let Some(btf) = &host.btf else {
        bail!("no kernel BTF to tell how {tracepoint} passes its arguments");
    };
    match btf.raw_tracepoint_bool_arg(tracepoint) {
        Some(at) if at == reads => Ok(()),
        Some(at) => bail!(
            "this kernel's {tracepoint} passes its first bool as argument {at}, where this \
             program reads argument {reads} (another prototype)"
        ),
        None => bail!("the kernel's BTF has no prototype of {tracepoint} with a bool"),
    }
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
    (btf, tracefs): (Option<&aya::Btf>, &Tracefs),
    candidate: &Candidate,
    (attached, fork_links): (&mut HashSet<&'static str>, &mut ForkLinks),
    empty: bool,
) -> Result<()> {
    let mut mine = Vec::new();
    let mut stand_ins = Vec::new();
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
        match attach_one(ebpf, btf, a, fork_links, empty) {
            Ok(stand_in) => {
                attached.insert(program);
                mine.push(program);
                stand_ins.extend(stand_in);
            }
            Err(e) => {
                for &p in &mine {
                    attached.remove(p);
                    unload(ebpf, p);
                }
                fork_links.retain(|(p, _)| !mine_or(p.program, &mine, program));
                unload(ebpf, program);
                detach_stand_ins(ebpf, stand_ins);
                return Err(e.context(format!("attaching {} to {}", program, a.target())));
            }
        }
    }
    Ok(())
}

pub(super) fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Program> {
    ebpf.program_mut(name)
        .with_context(|| format!("program {name} is missing from the eBPF object"))
}

fn mine_or(p: &str, mine: &[&str], program: &str) -> bool {
    p == program || mine.contains(&p)
}

fn attach_one(
    ebpf: &mut Ebpf,
    btf: Option<&aya::Btf>,
    a: &Attach,
    fork_links: &mut ForkLinks,
    empty: bool,
) -> Result<Option<StandIn>> {
    let btf_required = || btf.context("kernel BTF could not be loaded");
    match *a {
        Attach::Tracepoint {
            program: p,
            category,
            name,
            ..
        } => {
            let p = if empty { EMPTY_TRACEPOINT } else { p };
            let tp: &mut TracePoint = program(ebpf, p)?.try_into()?;
            loaded(tp.load(), empty)?;
            let link = tp.attach(category, name)?;
            return Ok(empty.then_some(StandIn::Tracepoint(link)));
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
            let p = if empty { EMPTY_RAW_TRACEPOINT } else { p };
            let rt: &mut RawTracePoint = program(ebpf, p)?.try_into()?;
            loaded(rt.load(), empty)?;
            let link = rt.attach(name).map_err(|e| raw_attach_error(name, e))?;
            if empty {
                return Ok(Some(StandIn::Raw(link)));
            }
            if FORK_ONLY.contains(&p) {
                let fork = ForkProgram {
                    program: p,
                    tracepoint: name,
                };
                fork_links.push((fork, rt.take_link(link)?));
            }
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
    Ok(None)
}

/// The stand-ins of [`SessionOptions::empty_programs`].
const EMPTY_TRACEPOINT: &str = "empty_tracepoint";
const EMPTY_RAW_TRACEPOINT: &str = "empty_raw_tracepoint";

/// A load's result. A stand-in is loaded once and attached to many hooks,
/// so finding it loaded is fine; a real program loaded twice would be
/// attached twice, and stays an error.
fn loaded(result: Result<(), ProgramError>, stand_in: bool) -> Result<(), ProgramError> {
    match result {
        Err(ProgramError::AlreadyLoaded) if stand_in => Ok(()),
        other => other,
    }
}

/// A stand-in's link on one hook. The stand-in itself serves every
/// candidate, so a candidate that fails takes back only its own links.
enum StandIn {
    Tracepoint(TracePointLinkId),
    Raw(RawTracePointLinkId),
}

/// Detaches a failed candidate's stand-ins (best effort, as [`unload`]).
fn detach_stand_ins(ebpf: &mut Ebpf, links: Vec<StandIn>) {
    for link in links {
        let _ = match link {
            StandIn::Tracepoint(id) => match ebpf.program_mut(EMPTY_TRACEPOINT) {
                Some(Program::TracePoint(tp)) => tp.detach(id),
                _ => Ok(()),
            },
            StandIn::Raw(id) => match ebpf.program_mut(EMPTY_RAW_TRACEPOINT) {
                Some(Program::RawTracePoint(rt)) => rt.detach(id),
                _ => Ok(()),
            },
        };
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::plan::PLAN;

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
    fn serve_and_top_leave_the_per_switch_first_run_out_unless_asked() {
        let stage = PLAN.iter().find(|s| s.name == "first_run").unwrap();
        let per_switch = raw_candidate("first_run");
        let from_wait = stage
            .candidates
            .iter()
            .find(|c| c.mechanism == Mechanism::SchedInfo)
            .unwrap();
        let metrics = SessionOptions {
            first_run_per_switch: false,
            ..SessionOptions::default()
        };
        let why = left_out(stage, per_switch, &metrics).expect("left out");
        assert!(why.contains(FIRST_RUN_PER_SWITCH), "{why}");
        assert_eq!(left_out(stage, from_wait, &metrics), None);
        // record's default, and serve's with the option, keep it.
        assert_eq!(
            left_out(stage, per_switch, &SessionOptions::default()),
            None
        );
        // The other machine-wide probes are not this option's business.
        let faults = PLAN.iter().find(|s| s.name == "page_faults").unwrap();
        assert_eq!(
            left_out(faults, raw_candidate("page_faults"), &metrics),
            None
        );
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
        // page_fault_user passes scalars: no BTF needed.
        precheck(&host, &opts, raw_candidate("page_faults")).unwrap_or_else(|e| panic!("{e:#}"));
        // mmap_lock passes an mm pointer that is only compared, but where
        // its `write` sits depends on the kernel: only BTF says.
        for stage in ["mm_lock_wait", "dup_mmap"] {
            let err = precheck(&host, &opts, raw_candidate(stage)).unwrap_err();
            assert!(
                format!("{err:#}").contains("how mmap_lock_start_locking passes its arguments"),
                "{stage}: {err:#}"
            );
        }
        let err = precheck(&host, &opts, raw_candidate("first_run")).unwrap_err();
        assert!(format!("{err:#}").contains("task_struct.pid"), "{err:#}");
        let err = precheck(&host, &opts, raw_candidate("exec_done")).unwrap_err();
        assert!(format!("{err:#}").contains("linux_binprm.argc"), "{err:#}");
        let err = precheck(&host, &opts, sched_info_candidate()).unwrap_err();
        assert!(format!("{err:#}").contains("sched_info"), "{err:#}");
    }

    #[test]
    fn sched_info_off_at_run_time_shows_as_zero_time_slices() {
        assert!(slices_counted("5301291 2182918 12"));
        assert!(!slices_counted("0 0 0"));
        assert!(!slices_counted("5301291"));
        // This kernel (6.18) always fills sched_info.
        assert!(sched_info_counting());
    }

    fn sched_info_candidate() -> &'static Candidate {
        PLAN.iter()
            .flat_map(|s| s.candidates)
            .find(|c| c.mechanism == Mechanism::SchedInfo)
            .expect("first_run has a sched_info candidate")
    }

    #[test]
    fn a_first_run_from_the_wait_needs_the_wake_up() {
        let mut attached = HashSet::from(["raw_sched_process_fork"]);
        let why = missing_input(sched_info_candidate(), &attached);
        assert!(why.is_some_and(|w| w.contains("wakeup_new")));
        for woken in ["raw_sched_wakeup_new", "sched_wakeup_new"] {
            attached.insert(woken);
            assert_eq!(missing_input(sched_info_candidate(), &attached), None);
        }
        assert_eq!(
            missing_input(raw_candidate("first_run"), &HashSet::new()),
            None
        );
    }
}
