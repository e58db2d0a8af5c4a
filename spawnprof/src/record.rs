//! A recording: attach the probes, start or adopt the target, stream marks
//! through the reorder window into the correlator, write spawns as they
//! complete, and on the way out (target exit, duration, Ctrl-C/SIGTERM)
//! drain everything, detach, and write the summary. Nothing recorded is
//! dropped on an interrupt: the summary says `"interrupted": true`.
use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::PathBuf,
    sync::LazyLock,
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::oneshot,
};

use crate::{
    analysis,
    capabilities::Host,
    correlate::{Correlator, Reorder},
    decode::decode,
    interrupt::{self, InterruptedBeforeTracing, Interrupts},
    model::SpawnRecord,
    node::NodeFacts,
    report::{
        ProbeCost, ProgramCost, Summary,
        files::{RecordingLock, SpawnWriter, prepare_out_dir, write_summary},
    },
    session::{Session, SessionOptions},
    stacks::{self, KernelSymbols, MapsCache},
    workload::{mono_ns, rusage_self},
};

/// Spawn records kept in memory for the terminal table. The rest go only to
/// `spawns.jsonl` and the statistics, so a long recording stays small.
pub const RECORDS_KEPT: usize = 1000;

/// How often marks are collected from the ring buffer when the probes have
/// not asked for an early wake-up. Each wake-up of the reader costs tens of
/// µs of CPU, a large part of its cost per spawn: at 40 ms instead of 10 ms
/// the reader used 12-15 instead of 19-25 µs per spawn (serial
/// posix_spawn). The ring buffer is not at risk: a burst that fills half of
/// it wakes the reader at once.
const DRAIN_INTERVAL: Duration = Duration::from_millis(40);
/// With stack sampling, the memory maps of each process that just exec'd
/// are read while draining; short-lived processes must still be there.
const DRAIN_INTERVAL_SAMPLING: Duration = Duration::from_millis(10);
/// While drains come back empty the interval doubles up to this, so an idle
/// recording (`-p` on a quiet server) rarely wakes. The first marks after a
/// lull wait at most this long.
const IDLE_DRAIN_INTERVAL: Duration = Duration::from_millis(160);
/// How often `-p` checks that its target is still alive.
const ALIVE_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// How often the memory-map snapshots of processes that ended unsampled
/// are dropped (each prune walks the kernel's sample map).
const MAPS_PRUNE_INTERVAL: Duration = Duration::from_secs(10);
/// How often the live count of a `-p` recording is redrawn.
const LIVE_UPDATE_INTERVAL: Duration = Duration::from_millis(250);

/// What to trace.
#[derive(Clone, Debug)]
pub enum Target {
    /// Start this command and trace it and all its descendants.
    Command(Vec<String>),
    /// Trace a running process (all its threads).
    Pid(u32),
}

#[derive(Clone, Debug)]
pub struct RecordOptions {
    pub target: Target,
    pub out_dir: PathBuf,
    pub duration: Option<Duration>,
    pub session: SessionOptions,
    pub force: bool,
    /// How long marks wait to be put in time order.
    pub reorder_window: Duration,
    /// Send the command's stdout to this file (the bench reads the
    /// spawner's result line from it).
    pub command_stdout: Option<PathBuf>,
    /// Print the 'tracing' line when the probes are attached.
    pub announce: bool,
    /// On-CPU stack sampling frequency (0: off).
    pub sample_hz: u64,
    /// Measure spawnprof's own cost (BPF run-time statistics and the
    /// reader's CPU time). Off by default: the kernel's statistics add two
    /// clock reads to every probe run.
    pub probe_cost: bool,
    /// The command is spawnprof's own (the bench's spawner): an interrupt
    /// ends it too, whichever signal it was and whoever it reached.
    pub owns_command: bool,
}

impl RecordOptions {
    /// A recording of `target` into `out_dir` with the default settings.
    pub fn new(target: Target, out_dir: PathBuf) -> Self {
        Self {
            target,
            out_dir,
            duration: None,
            session: SessionOptions::default(),
            force: false,
            reorder_window: Duration::from_millis(20),
            command_stdout: None,
            announce: true,
            sample_hz: 999,
            probe_cost: false,
            owns_command: false,
        }
    }
}

/// The outcome of a recording.
pub struct Recording {
    /// The first [`RECORDS_KEPT`] spawns, for the terminal table; all of them
    /// are in `spawns.jsonl`.
    pub records: Vec<SpawnRecord>,
    pub summary: Summary,
    /// What could not be written to the output directory (a full disk),
    /// one message each; the summary above is whole either way.
    pub unsaved: Vec<String>,
}

impl Recording {
    /// An error when part of the recording could not be saved.
    pub fn saved(&self) -> Result<()> {
        if self.unsaved.is_empty() {
            return Ok(());
        }
        bail!(
            "the recording is incomplete on disk (its reports were not written): {}",
            self.unsaved.join("; ")
        )
    }
}

/// How the recording loop ended.
enum Stop {
    TargetExited(Option<i32>),
    Duration,
    Interrupted,
}

/// Records until the target exits, the duration elapses or a signal arrives.
pub async fn record(opts: RecordOptions) -> Result<Recording> {
    if let Some(d) = opts.duration
        && d.is_zero()
    {
        bail!("--duration must be longer than zero");
    }
    let (target_desc, existing_pid) = match &opts.target {
        Target::Command(argv) if argv.is_empty() => bail!("no command given after `--`"),
        Target::Command(argv) => (argv.join(" "), None),
        Target::Pid(pid) => (format!("pid {pid}"), Some(tgid_of(*pid)?)),
    };
    // Caught from here on: a Ctrl-C while the probes load is seen once they
    // are ready, instead of killing us with the output directory half made.
    let mut interrupts = Interrupts::catch()?;
    // Privileges first (Host::probe starts with them): without them nothing
    // else is worth checking. The output directory is checked before any
    // probe is loaded.
    let host = Host::probe()?;
    let out_dir = prepare_out_dir(&opts.out_dir, opts.force)?;
    let mut session_opts = opts.session.clone();
    if matches!(opts.target, Target::Command(_)) {
        // Everything CMD starts is part of what the user asked to see.
        session_opts.follow = true;
    }
    let mut session = Session::start(&host, &session_opts)?;
    let cost_meter = opts.probe_cost.then(CostMeter::start).transpose()?;
    let stack_sampling = if opts.sample_hz == 0 {
        "off (--sample-hz 0)".to_string()
    } else {
        match session.start_sampling(opts.sample_hz) {
            Ok(()) => format!("cpu-clock, {} Hz per CPU", opts.sample_hz),
            Err(e) => {
                crate::say!("spawnprof: warning: no stack samples (stacks.svg): {e:#}");
                format!("unavailable: {e:#}")
            }
        }
    };
    let sampling = opts.sample_hz > 0 && stack_sampling.starts_with("cpu-clock");
    // User frames are symbolized from /proc/PID/maps, by the host pids the
    // probes report; a PID namespace's /proc does not show those.
    let snapshot_maps = sampling && host.pid_ns.is_none();
    let stack_sampling = if sampling && !snapshot_maps {
        format!(
            "{stack_sampling}; user frames not symbolized (spawnprof runs in a PID namespace, \
             whose /proc does not show the host pids)"
        )
    } else {
        stack_sampling
    };
    let mut maps = MapsCache::default();
    let ring = session.take_marks()?;
    // SAFETY: the ring buffer owns its map fd and keeps it open (and the
    // same) until it is dropped, which happens after the AsyncFd is gone.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow!("polling the ring buffer: {e}"))?;
    if interrupts.arrived().await.is_some() {
        drop(ring);
        drop(session); // detaches every probe
        out_dir.discard_if_untouched();
        return Err(InterruptedBeforeTracing.into());
    }
    let mut writer = SpawnWriter::create(&opts.out_dir)?;
    // Held until the final summary is written: `spawnprof report` must not
    // rebuild this recording while it is being written.
    let _recording = RecordingLock::try_take(&opts.out_dir)?.with_context(|| {
        format!(
            "{} is being recorded into by another spawnprof; choose another -o directory",
            opts.out_dir.display()
        )
    })?;

    let t0 = mono_ns();
    let start_unix_s = crate::units::unix_seconds_now().unwrap_or(0);
    let mut correlator = Correlator::new(t0, None).with_fault_coverage(session.fault_coverage());
    let mut reorder = Reorder::new(opts.reorder_window.as_nanos() as u64);
    let mut records = Vec::new();
    let mut stats = analysis::Accumulator::default();

    let (root_pid, mut child_exit) = match &opts.target {
        Target::Command(argv) => {
            let stdout = match &opts.command_stdout {
                Some(path) => Some(std::fs::File::create(path).with_context(|| {
                    format!("creating {} for the command's output", path.display())
                })?),
                None => None,
            };
            let child = GatedChild::spawn(argv, stdout.as_ref())?;
            session.trace(child.pid, true)?;
            let pid = child.pid;
            (Some(pid), Some(child.release()?))
        }
        Target::Pid(_) => {
            let tgid = existing_pid.expect("resolved above");
            session.trace(tgid, true)?;
            (Some(tgid), None)
        }
    };

    let mut root = RootResolver {
        pending: root_pid,
        is_command: matches!(opts.target, Target::Command(_)),
    };
    root.resolve(&mut session, &mut correlator)?;

    // A pid that ended while the probes loaded leaves nothing to wait for.
    let gone_before_tracing = opts.target_is_pid() && !pid_alive(root_pid.expect("set"));
    if gone_before_tracing {
        crate::say!(
            "spawnprof: {target_desc} exited while the probes were loading: nothing was recorded (the empty recording is kept)"
        );
    } else if opts.announce {
        if host.pid_ns.is_some() {
            crate::say!(
                "spawnprof: running in a PID namespace (a container): the recording shows pids \
                 as the host numbers them"
            );
        }
        // Tools and tests wait for this line before starting the workload.
        match &opts.target {
            Target::Command(_) => crate::say!(
                "spawnprof: tracing {target_desc} (pid {}); Ctrl-C to stop",
                root_pid.unwrap_or(0)
            ),
            Target::Pid(_) => crate::say!("spawnprof: tracing {target_desc}; Ctrl-C to stop"),
        }
    }
    // What is known now, on disk before the first spawn: should spawnprof be
    // killed where no handler runs (SIGKILL, the OOM killer), `spawnprof
    // report` rebuilds the rest from spawns.jsonl (report::recover).
    let mut summary = Summary {
        schema_version: crate::model::SCHEMA_VERSION,
        spawnprof_version: env!("CARGO_PKG_VERSION").into(),
        target: target_desc.clone(),
        kernel: host.kernel_release.clone(),
        node: Some(NodeFacts::collect()),
        start_monotonic_ns: t0,
        start_unix_s,
        duration_ns: 0,
        interrupted: false,
        exit_code: None,
        counts: Default::default(),
        lost_marks_total: 0,
        lost_marks: Default::default(),
        correlation: Default::default(),
        stages: Default::default(),
        placement: None,
        plan: session.plan.clone(),
        captured: captured(&session_opts),
        stack_sampling,
        stack_samples: 0,
        probe_cost: None,
        spawns_incomplete: None,
        unfinished: Some(crate::report::recover::WHILE_RECORDING.into()),
    };
    if let Err(e) = write_summary(&opts.out_dir, &summary) {
        crate::say!("spawnprof: warning: {e:#}; the recording goes on");
    }
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    // The probes wake us only when the ring buffer is half full; otherwise
    // marks are collected on this timer (see spawnprof-ebpf emit.rs).
    let busy_drain_interval = if sampling {
        DRAIN_INTERVAL_SAMPLING
    } else {
        DRAIN_INTERVAL
    };
    let mut drain_every = busy_drain_interval;
    let tick = tokio::time::sleep(drain_every);
    tokio::pin!(tick);
    let mut alive_checked = tokio::time::Instant::now();
    let panic_at = test_panic_deadline();
    // With -p the terminal is otherwise silent until the end: a live count
    // (drawn only on a terminal). Not with a command, whose own output
    // shares the terminal and would be torn up by a redrawn line.
    let live = (opts.announce && opts.target_is_pid() && !gone_before_tracing).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} recording [{elapsed}] {msg}")
                .expect("valid template"),
        );
        bar
    });
    let mut live_shown = tokio::time::Instant::now();
    let mut maps_pruned = tokio::time::Instant::now();
    let stop = loop {
        if gone_before_tracing {
            break Stop::TargetExited(None);
        }
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain_ring(guard.get_inner_mut(), &mut reorder, snapshot_maps.then_some(&mut maps));
                guard.clear_ready();
                drain_every = busy_drain_interval;
            }
            status = async { child_exit.as_mut().expect("guarded").await }, if child_exit.is_some() => {
                break Stop::TargetExited(status.ok().flatten());
            }
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                break Stop::Duration;
            }
            signal = interrupts.recv() => {
                // Unlike Ctrl-C, SIGTERM (or SIGHUP sent with kill) reaches
                // only us: pass SIGTERM on so the command does not outlive
                // its recording. A command of our own (the bench's spawner)
                // ends on any of them.
                let end_command = signal != interrupt::Stop::CtrlC || opts.owns_command;
                if let (true, Target::Command(_), Some(pid)) = (end_command, &opts.target, root_pid)
                {
                    // SAFETY: signalling the child we started.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
                break Stop::Interrupted;
            }
            _ = &mut tick => {
                let marks = drain_ring(ring.get_mut(), &mut reorder, snapshot_maps.then_some(&mut maps));
                drain_every = if marks == 0 {
                    (drain_every * 2).min(IDLE_DRAIN_INTERVAL)
                } else {
                    busy_drain_interval
                };
                let now = tokio::time::Instant::now();
                if let Some(bar) = &live
                    && now - live_shown >= LIVE_UPDATE_INTERVAL
                {
                    live_shown = now;
                    let c = stats.counts();
                    bar.set_message(format!(
                        "{} spawns, {} execs, {} failed exec attempts",
                        c.spawns, c.execs, c.failed_exec_attempts
                    ));
                    bar.tick();
                }
                if snapshot_maps && now - maps_pruned >= MAPS_PRUNE_INTERVAL {
                    maps_pruned = now;
                    maps.prune(&session.sampled_tgids());
                }
                if panic_at.is_some_and(|at| now >= at) {
                    panic!("SPAWNPROF_TEST_PANIC_AFTER_MS: a panic while recording, on request");
                }
                tick.as_mut().reset(now + drain_every);
                if opts.target_is_pid() && now - alive_checked >= ALIVE_CHECK_INTERVAL {
                    alive_checked = now;
                    if !pid_alive(root_pid.expect("set")) {
                        if let Some(bar) = &live {
                            bar.finish_and_clear();
                        }
                        if opts.announce {
                            crate::say!("spawnprof: {target_desc} exited; stopping");
                        }
                        break Stop::TargetExited(None);
                    }
                }
            }
        }
        root.resolve(&mut session, &mut correlator)?;
        for e in reorder.ready(mono_ns()) {
            correlator.feed(&e);
        }
        flush(&mut correlator, &mut writer, &mut records, &mut stats);
    };

    if let Some(bar) = live {
        bar.finish_and_clear();
    }
    // A Ctrl-C at the terminal also ends the command, and its exit can win
    // the race to the loop: the signal still makes this an interrupt.
    let interrupted = matches!(stop, Stop::Interrupted) || interrupts.arrived().await.is_some();
    let exit_code = match stop {
        Stop::TargetExited(code) => code,
        _ => None,
    };
    if interrupted {
        crate::say!(
            "spawnprof: interrupted; writing what was recorded (Ctrl-C again to quit at once)"
        );
    }
    // What follows is synchronous: from here a signal is noted, and the next
    // one (after an interrupt, the very next) ends the process at once.
    interrupts.writing(interrupted);
    // Last marks: whatever is still in the ring buffer, then the window.
    drain_ring(ring.get_mut(), &mut reorder, None);
    root.resolve(&mut session, &mut correlator)?;
    for e in reorder.drain() {
        correlator.feed(&e);
    }
    correlator.finish_all();
    flush(&mut correlator, &mut writer, &mut records, &mut stats);
    let lost = session.lost().unwrap_or_default();
    // What recording cost, measured before the stacks are symbolized: that
    // is after-the-fact work, like writing the reports.
    let probe_cost = cost_meter.map(|m| m.finish(&session, stats.counts().spawns));
    let mut stack_samples = 0;
    // What could not be saved (a full disk): the recording still ends
    // normally, and the report is still printed from memory.
    let mut unsaved = Vec::new();
    if sampling {
        let samples = session.stack_samples().unwrap_or_default();
        stack_samples = samples.iter().map(|s| s.count).sum();
        let lines = stacks::fold(&samples, &maps, &KernelSymbols::load());
        if let Err(e) = stacks::write(&opts.out_dir, &lines, opts.sample_hz) {
            unsaved.push(format!("{e:#}"));
        }
    }
    drop(ring);
    drop(session); // detaches every probe
    let spawns_incomplete = writer.finish().err().map(|e| format!("{e:#}"));
    unsaved.extend(spawns_incomplete.clone());

    summary.duration_ns = mono_ns() - t0;
    summary.interrupted = interrupted;
    summary.exit_code = exit_code;
    summary.counts = stats.counts();
    summary.lost_marks_total = lost.values().sum();
    summary.lost_marks = lost;
    summary.correlation = correlator.stats();
    summary.stages = stats.stage_stats();
    summary.placement = stats.placement();
    summary.stack_samples = stack_samples;
    summary.probe_cost = probe_cost;
    summary.spawns_incomplete = spawns_incomplete;
    summary.unfinished = None;
    if let Err(e) = write_summary(&opts.out_dir, &summary) {
        unsaved.push(format!("{e:#}"));
    }
    if unsaved.is_empty() {
        // The recording itself is safe on disk by now; a failed picture must not lose it.
        if let Err(e) = crate::report::export::write_all_from_recording(&opts.out_dir) {
            crate::say!("spawnprof: the recording is saved, but writing its reports failed: {e:#}");
        }
    }
    out_dir.hand_to_invoking_user()?;
    Ok(Recording {
        records,
        summary,
        unsaved,
    })
}

/// Measures what the recording costs: keeps the kernel's BPF run-time
/// statistics on (they stop when the returned descriptor closes, unless the
/// host enabled them itself) and notes our CPU time at the start.
struct CostMeter {
    _stats: OwnedFd,
    cpu_ns_at_start: u64,
}

impl CostMeter {
    fn start() -> Result<Self> {
        let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| {
            anyhow!(
                "--probe-cost: the kernel refused BPF run-time statistics (BPF_ENABLE_STATS, Linux 5.8+): {e}; \
                 record without --probe-cost"
            )
        })?;
        Ok(Self {
            _stats: stats,
            cpu_ns_at_start: own_cpu_ns(),
        })
    }

    fn finish(self, session: &Session, spawns: u64) -> ProbeCost {
        let mut programs: Vec<ProgramCost> = session
            .program_stats()
            .into_iter()
            .map(|(name, run_ns, runs)| ProgramCost { name, runs, run_ns })
            .collect();
        programs.sort_by_key(|p| std::cmp::Reverse(p.run_ns));
        ProbeCost {
            bpf_ns: programs.iter().map(|p| p.run_ns).sum(),
            bpf_runs: programs.iter().map(|p| p.runs).sum(),
            programs,
            reader_cpu_ns: own_cpu_ns().saturating_sub(self.cpu_ns_at_start),
            spawns,
            gates_at_end: session.gates().ok(),
        }
    }
}

/// User + system CPU time of this process so far, ns.
fn own_cpu_ns() -> u64 {
    let (user, system) = rusage_self();
    user + system
}

/// Debug builds only (the integration tests' binaries):
/// `SPAWNPROF_TEST_PANIC_AFTER_MS=N` panics in the recording loop N ms in,
/// to prove that a panic still detaches every probe and keeps the spawns
/// written so far.
fn test_panic_deadline() -> Option<tokio::time::Instant> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let ms: u64 = std::env::var("SPAWNPROF_TEST_PANIC_AFTER_MS")
        .ok()?
        .parse()
        .ok()?;
    Some(tokio::time::Instant::now() + Duration::from_millis(ms))
}

impl RecordOptions {
    fn target_is_pid(&self) -> bool {
        matches!(self.target, Target::Pid(_))
    }
}

/// The traced process as the probes know it: by its host pid, which in a
/// PID namespace is learnt only once a probe has run in it.
struct RootResolver {
    /// Its pid as spawnprof knows it, until the host pid is known.
    pending: Option<u32>,
    /// It is the recorded command, the root of the correlator's records.
    is_command: bool,
}

impl RootResolver {
    /// Sets the correlator's root once the host pid is known (at once
    /// outside a PID namespace).
    fn resolve(&mut self, session: &mut Session, correlator: &mut Correlator) -> Result<()> {
        if let Some(pid) = self.pending
            && let Some(host) = session.host_tgid(pid)?
        {
            if self.is_command {
                correlator.set_root(host);
            }
            self.pending = None;
        }
        Ok(())
    }
}

fn flush(
    c: &mut Correlator,
    w: &mut SpawnWriter,
    keep: &mut Vec<SpawnRecord>,
    stats: &mut analysis::Accumulator,
) {
    for r in c.drain_finished() {
        w.write(&r);
        stats.add(&r);
        if keep.len() < RECORDS_KEPT {
            keep.push(r);
        }
    }
    w.flush_if_due();
    if let Some(failure) = w.new_failure() {
        crate::say!(
            "spawnprof: error: {failure}; recording goes on, but from now on spawns are only \
             counted for the report below, not saved (free space, or record into another \
             directory with -o)"
        );
    }
}

/// Moves every mark from the ring buffer into the reorder window and
/// returns how many there were. With `maps`, the memory maps of each
/// process that just exec'd are snapshotted while it (probably) still runs,
/// to symbolize its stacks later.
fn drain_ring(
    ring: &mut RingBuf<MapData>,
    reorder: &mut Reorder,
    mut maps: Option<&mut MapsCache>,
) -> usize {
    // SPAWNPROF_DEBUG_MARKS=1 prints every mark as it arrives (for debugging
    // probes). Looked up once: getenv locks and scans the environment, and
    // this runs up to 100 times a second (with stack sampling).
    static DEBUG: LazyLock<bool> =
        LazyLock::new(|| std::env::var_os("SPAWNPROF_DEBUG_MARKS").is_some());
    let debug = *DEBUG;
    let mut marks = 0;
    while let Some(item) = ring.next() {
        marks += 1;
        match decode(&item) {
            Ok(e) => {
                if debug {
                    let m = &e.mark;
                    crate::say!(
                        "mark {} {:<18} cpu{} tid={} tgid={} a={:#x} b={:#x} c={:#x} {}",
                        m.ts_ns,
                        crate::correlate::mark_kind_name(m.kind),
                        m.cpu,
                        m.tid,
                        m.tgid,
                        m.a,
                        m.b,
                        m.c,
                        e.text.as_deref().unwrap_or("")
                    );
                }
                if let Some(maps) = maps.as_deref_mut() {
                    match e.mark.kind {
                        spawnprof_common::kind::EXEC_DONE => maps.observe(e.mark.tgid),
                        spawnprof_common::kind::EXIT => maps.exited(e.mark.tgid),
                        _ => {}
                    }
                }
                reorder.push(e)
            }
            Err(err) => crate::say!("spawnprof: skipping a malformed mark: {err:#}"),
        }
    }
    marks
}

/// What the recording holds about arguments and environments, for the summary.
fn captured(opts: &SessionOptions) -> Vec<String> {
    let mut out =
        vec!["exec paths, task names, argument and environment counts and sizes".to_string()];
    if opts.capture_args {
        out.push("argument strings (--capture-args, first 256 bytes per exec)".into());
    } else {
        out.push("no argument strings (pass --capture-args to record them)".into());
    }
    if opts.capture_env {
        out.push("environment strings (--capture-env, first 256 bytes per exec)".into());
    } else {
        out.push("no environment strings (pass --capture-env to record them)".into());
    }
    out
}

fn pid_alive(pid: u32) -> bool {
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
fn tgid_of(pid: u32) -> Result<u32> {
    if pid == 0 {
        bail!("pid 0 is not a process; pass the pid of a running process to -p");
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("no process with pid {pid} (check `ps -p {pid}`)"))?;
    if is_kernel_thread(&status) {
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("")
            .trim();
        bail!(
            "pid {pid} ({name}) is a kernel thread: the threads it starts are made inside the \
             kernel, with no clone syscall and no exec, which is not what spawnprof traces; \
             give the pid of a user-space process"
        );
    }
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    if field("State:").is_some_and(|s| s.starts_with('Z')) {
        bail!(
            "pid {pid} has already exited: it is a zombie, waiting for its parent (pid {}) to \
             reap it, and will spawn nothing; give the pid of a running process",
            field("PPid:").unwrap_or("?")
        );
    }
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("cannot read the thread group of pid {pid}"))
}

/// Whether a /proc/PID/status describes a kernel thread: its `Kthread:`
/// line (6.2+), or else no memory of its own (no `VmSize:` line) while not
/// a zombie (which has lost its memory too).
fn is_kernel_thread(status: &str) -> bool {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    match field("Kthread:") {
        Some(v) => v == "1",
        None => field("VmSize:").is_none() && !field("State:").is_some_and(|s| s.starts_with('Z')),
    }
}

/// A child forked and held before its exec until it has been added to the
/// traced set, so its exec is seen. (std's Command cannot do this: its spawn
/// waits for the exec itself.)
struct GatedChild {
    pid: u32,
    /// argv[0], for the message when the exec fails.
    command: String,
    gate: OwnedFd,
    exec_status: OwnedFd,
}

impl GatedChild {
    fn spawn(argv: &[String], stdout: Option<&std::fs::File>) -> Result<Self> {
        let stdout_fd = stdout.map(|f| f.as_raw_fd());
        let cargs: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<_, _>>()
            .context("the command contains a NUL byte")?;
        let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        let gate = pipe()?;
        let status = pipe()?;
        let memlock = crate::session::memlock_limit_to_restore();
        // SAFETY: the child only calls async-signal-safe functions (read,
        // execvp, write, _exit) on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            bail!("fork failed: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            unsafe {
                // Drop our copies of the parent's ends, so a parent that dies
                // gives us EOF instead of a wait forever.
                libc::close(gate.1.as_raw_fd());
                libc::close(status.0.as_raw_fd());
                let mut byte = 0u8;
                if libc::read(gate.0.as_raw_fd(), (&raw mut byte).cast(), 1) != 1 {
                    libc::_exit(127);
                }
                if let Some(fd) = stdout_fd
                    && libc::dup2(fd, 1) < 0
                {
                    libc::_exit(127);
                }
                // The command runs with the limits it was given, not ours.
                if let Some(limit) = &memlock {
                    libc::setrlimit(libc::RLIMIT_MEMLOCK, limit);
                }
                libc::execvp(ptrs[0], ptrs.as_ptr());
                let errno = *libc::__errno_location();
                libc::write(status.1.as_raw_fd(), (&raw const errno).cast(), 4);
                libc::_exit(exec_failure_status(errno));
            }
        }
        drop(gate.0);
        drop(status.1);
        Ok(Self {
            pid: pid as u32,
            command: argv[0].clone(),
            gate: gate.1,
            exec_status: status.0,
        })
    }

    /// Lets the child exec; the receiver yields its exit code
    /// (128+signal when killed).
    fn release(self) -> Result<oneshot::Receiver<Option<i32>>> {
        let byte = 1u8;
        // SAFETY: writing one byte from a valid buffer to our pipe end.
        unsafe { libc::write(self.gate.as_raw_fd(), (&raw const byte).cast(), 1) };
        drop(self.gate);
        let pid = self.pid;
        let command = self.command;
        let status_fd = self.exec_status;
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("spawnprof-wait".into())
            .spawn(move || {
                let mut errno = 0i32;
                // EOF (0 bytes): the exec succeeded and closed the pipe.
                let n = unsafe { libc::read(status_fd.as_raw_fd(), (&raw mut errno).cast(), 4) };
                if n == 4 {
                    crate::say!("spawnprof: {}", exec_failure_message(&command, errno));
                }
                let mut status = 0;
                let rc = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
                let code = (rc == pid as i32).then(|| {
                    if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    }
                });
                let _ = tx.send(code);
            })?;
        Ok(rx)
    }
}

/// The exit status of a command whose exec failed, as POSIX shells, `env`
/// and `timeout` give it: 127 when it was not found, 126 when it was found
/// but could not be run.
fn exec_failure_status(errno: i32) -> i32 {
    match errno {
        libc::ENOENT | libc::ENOTDIR => 127,
        _ => 126,
    }
}

/// Why CMD did not run, with what to check.
fn exec_failure_message(command: &str, errno: i32) -> String {
    let why = match errno {
        libc::ENOENT | libc::ENOTDIR if command.contains('/') => {
            "no such file (check the path)".to_string()
        }
        libc::ENOENT | libc::ENOTDIR => "command not found (check the name and PATH)".into(),
        libc::EACCES => "permission denied (a directory, a file without execute permission \
             (`chmod +x`), or on a noexec mount)"
            .into(),
        _ => std::io::Error::from_raw_os_error(errno).to_string(),
    };
    format!("cannot run {command}: {why}")
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe2 failed: {}", std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::is_kernel_thread;

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
