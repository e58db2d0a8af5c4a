//! Phase 2: open the recording, start or adopt the target, announce.
use anyhow::{Context as _, Result, anyhow};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::oneshot,
};

use super::{
    RECORDS_KEPT, RecordOptions, Target,
    cost::CostMeter,
    interrupt::{InterruptedBeforeTracing, Interrupts},
    prepare::{CheckedTarget, Probes, Sampling},
    target::{GatedChild, RootResolver},
};
use crate::{
    probe::{Host, Session, SessionOptions},
    recording::{Ending, RecordingWriter, Summary, recover},
    sys::{
        clock::{mono_ns, unix_seconds_now},
        node::NodeFacts,
        procfs::{descendants, pid_alive},
    },
    trace::stacks::MapsCache,
};

/// A recording in progress: what the loop feeds and the end writes out.
pub(super) struct Live {
    pub session: Session,
    pub ring: AsyncFd<RingBuf<MapData>>,
    pub writer: RecordingWriter,
    /// Spawn records taken so far (the live count, and the denominator of
    /// the per-spawn costs).
    pub spawns: u64,
    /// Finished spawns the kernel kept for lack of room in the ring, as
    /// counted when last collected.
    pub deferred: u64,
    pub maps: MapsCache,
    pub sampling: Sampling,
    pub cost: Option<CostMeter>,
    pub root: RootResolver,
    /// The command's pid, or the adopted process's thread group.
    pub root_pid: u32,
    /// The command's exit status, once it has one.
    pub child_exit: Option<oneshot::Receiver<Option<i32>>>,
    /// `-p`'s process ended while the probes loaded: nothing to record.
    pub gone_before_tracing: bool,
    /// The provisional summary, completed at the end.
    pub summary: Summary,
    pub t0: u64,
}

impl Live {
    pub async fn start(
        probes: Probes,
        target: CheckedTarget,
        opts: &RecordOptions,
        interrupts: &mut Interrupts,
    ) -> Result<Live> {
        let Probes {
            host,
            out,
            mut session,
            session_opts,
            cost,
            sampling,
        } = probes;
        let ring = session.take_records()?;
        // SAFETY: the ring buffer owns its map fd and keeps it open (and the
        // same) until it is dropped, which happens after the AsyncFd is gone.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| anyhow!("polling the ring buffer: {e}"))?;
        if interrupts.arrived().await.is_some() {
            drop(ring);
            drop(session); // detaches every probe
            out.discard();
            return Err(InterruptedBeforeTracing.into());
        }
        let t0 = mono_ns();
        let summary = provisional_summary(&host, &session, &session_opts, &target, &sampling, t0);
        // On disk before the first spawn: should spawnprof be killed where
        // no handler runs (SIGKILL, the OOM killer), `spawnprof report`
        // rebuilds the rest from the raw records (recording::recover).
        let end = Ending {
            t0,
            coverage: session.fault_coverage(),
            keep: RECORDS_KEPT,
        };
        let writer = out.start(&summary, end)?;
        // Freeing the kernel's parsed BTF takes milliseconds of CPU: done
        // before the target runs, it does not compete with its first spawns.
        // glibc merges the freed chunks only at the next large allocation;
        // trimming now does that before the command's fork, whose
        // write-protected pages would fault at every chunk touched.
        let in_pid_ns = host.pid_ns.is_some();
        drop(host);
        #[cfg(target_env = "gnu")]
        // SAFETY: plain call into the allocator; nothing is borrowed.
        unsafe {
            libc::malloc_trim(0);
        }
        let (root_pid, child_exit) = start_target(&mut session, opts, &target)?;
        let mut live = Live {
            session,
            ring,
            writer,
            spawns: 0,
            deferred: 0,
            maps: MapsCache::default(),
            sampling,
            cost,
            root: RootResolver {
                pending: Some(root_pid),
            },
            root_pid,
            child_exit,
            // A pid that ended while the probes loaded leaves nothing to wait for.
            gone_before_tracing: opts.target_is_pid() && !pid_alive(root_pid),
            summary,
            t0,
        };
        live.root.resolve(&mut live.session)?;
        live.announce(in_pid_ns, opts, &target.desc);
        Ok(live)
    }

    /// The line tools and tests wait for before starting the workload.
    fn announce(&self, in_pid_ns: bool, opts: &RecordOptions, desc: &str) {
        let desc = crate::units::elide(desc, crate::units::SHOWN_COMMAND);
        if self.gone_before_tracing {
            crate::say!(
                "spawnprof: {desc} exited while the probes were loading: nothing was recorded (the empty recording is kept)"
            );
            return;
        }
        if !opts.announce {
            return;
        }
        if in_pid_ns {
            crate::say!(
                "spawnprof: running in a PID namespace (a container): the recording shows pids \
                 as the host numbers them"
            );
        }
        match &opts.target {
            Target::Command(_) => crate::say!(
                "spawnprof: tracing {desc} (pid {}); Ctrl-C to stop",
                self.root_pid
            ),
            Target::Pid(_) => crate::say!("spawnprof: tracing {desc}; Ctrl-C to stop"),
        }
    }
}

/// Starts the command, held before its exec until it is traced, or adopts
/// the running process. Returns its pid and, for a command, its exit.
fn start_target(
    session: &mut Session,
    opts: &RecordOptions,
    target: &CheckedTarget,
) -> Result<(u32, Option<oneshot::Receiver<Option<i32>>>)> {
    match &opts.target {
        Target::Command(argv) => {
            let stdout = match &opts.command_stdout {
                Some(path) => Some(std::fs::File::create(path).with_context(|| {
                    format!("creating {} for the command's output", path.display())
                })?),
                None => None,
            };
            let child = GatedChild::spawn(argv, stdout.as_ref())?;
            session.trace(child.pid, true, true)?;
            let pid = child.pid;
            Ok((pid, Some(child.release()?)))
        }
        Target::Pid(_) => {
            let tgid = target.existing_pid.expect("checked with the target");
            session.trace(tgid, true, false)?;
            if opts.session.follow {
                // Descendants forked before the probes attached: their own
                // spawns are the target's descendants' too.
                for pid in descendants(tgid) {
                    session.trace(pid, true, false)?;
                }
            }
            Ok((tgid, None))
        }
    }
}

/// What is known as tracing starts: target, node, plan.
fn provisional_summary(
    host: &Host,
    session: &Session,
    session_opts: &SessionOptions,
    target: &CheckedTarget,
    sampling: &Sampling,
    t0: u64,
) -> Summary {
    Summary {
        node: Some(NodeFacts::collect()),
        start_monotonic_ns: t0,
        start_unix_s: unix_seconds_now().unwrap_or(0),
        fault_coverage: Some(session.fault_coverage()),
        plan: session.plan.clone(),
        captured: captured(session_opts),
        stack_sampling: sampling.note.clone(),
        unfinished: Some(recover::WHILE_RECORDING.into()),
        ..Summary::new(target.desc.clone(), host.kernel_release.clone())
    }
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
