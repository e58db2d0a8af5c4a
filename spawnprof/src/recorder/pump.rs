//! Phase 3: the kernel's records from the ring buffer into the recording,
//! as they come, until the target exits, the duration ends or a signal
//! arrives. Each spawn arrives whole; turning records into spawns waits for
//! the end (`finish`), so the loop does little more than copy.
use std::{sync::LazyLock, time::Duration};

use anyhow::Result;
use aya::maps::{MapData, RingBuf};
use tokio::time::Instant;

use super::{
    RecordOptions, Stop, Target,
    interrupt::{self, Interrupts},
    live::LiveCount,
    start::Live,
};
use spawnprof_common::rec;

use crate::{
    recording::RecordingWriter,
    sys::procfs::pid_alive,
    trace::{
        decode::{Record, decode, kind_of},
        stacks::MapsCache,
    },
};

/// How often records are collected from the ring buffer when the probes have
/// not asked for an early wake-up. Each wake-up of the reader costs 100–250
/// µs of CPU on the development VM, more than the records it collects at a
/// thousand spawns a second: at 200 ms instead of 40 ms spawnprof's CPU per
/// extra spawn fell from 3.3 to 1.3 µs (serial posix_spawn); the average
/// over a 3,000-spawn run went from 2.3 µs at 200 ms to 1.6 at 500 ms and
/// 1.3–1.5 at 1 s. Nothing waits on this timer: the command's exit, the
/// duration and signals end the loop at once, and the fork-only probes are
/// parked and brought back on the probes' own wake-ups. A burst that fills
/// half the ring (some 18,000 records of /bin/true at the default 16 MiB)
/// wakes the reader at once, so the ring is not at risk.
const DRAIN_INTERVAL: Duration = Duration::from_millis(1000);
/// The interval while something needs a faster tick: the live count on a
/// terminal, or `-p`'s check that its target lives (the recording ends
/// within this of the target's exit).
const DRAIN_INTERVAL_WATCHING: Duration = Duration::from_millis(200);
/// With stack sampling, the memory maps of each process that just exec'd
/// are read while draining; short-lived processes must still be there.
const DRAIN_INTERVAL_SAMPLING: Duration = Duration::from_millis(10);
/// While drains come back empty the interval doubles up to this, so an idle
/// recording rarely wakes; the first records after a lull wait at most this
/// long.
const IDLE_DRAIN_INTERVAL: Duration = Duration::from_millis(2000);
/// The same with the live count or `-p` (the end within this of the
/// target's exit).
const IDLE_DRAIN_INTERVAL_WATCHING: Duration = Duration::from_millis(400);
/// How often `-p` checks that its target is still alive.
const ALIVE_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// How often the memory-map snapshots of processes that ended unsampled
/// are dropped (each prune walks the kernel's sample map).
const MAPS_PRUNE_INTERVAL: Duration = Duration::from_secs(10);
/// How often the live count is redrawn.
const LIVE_UPDATE_INTERVAL: Duration = Duration::from_millis(250);

/// What woke the loop.
enum Wake {
    /// The probes asked for an early drain (the ring is half full).
    Drained,
    Tick,
    Signal(interrupt::Stop),
    Stop(Stop),
}

/// The loop's timers and the periodic chores of its tick.
struct Chores {
    busy_interval: Duration,
    idle_interval: Duration,
    drain_every: Duration,
    alive_checked: Instant,
    maps_pruned: Instant,
    /// The live count, drawn on a terminal (see [`LiveCount`]).
    live: Option<LiveCount>,
    live_shown: Instant,
    started: Instant,
    panic_at: Option<Instant>,
}

impl Live {
    pub async fn pump(
        &mut self,
        opts: &RecordOptions,
        interrupts: &mut Interrupts,
    ) -> Result<Stop> {
        if self.gone_before_tracing {
            return Ok(Stop::TargetExited(None));
        }
        if let Some(cost) = &mut self.cost {
            cost.tracing_started(&self.session);
        }
        let mut chores = Chores::new(self, opts);
        let deadline = opts.duration.map(|d| Instant::now() + d);
        let tick = tokio::time::sleep(chores.drain_every);
        tokio::pin!(tick);
        let stop = loop {
            let wake = self.wait(&mut tick, deadline, interrupts).await?;
            match wake {
                Wake::Stop(stop) => break stop,
                Wake::Signal(signal) => {
                    self.pass_on(signal, opts);
                    break Stop::Interrupted;
                }
                Wake::Drained => chores.drain_every = chores.busy_interval,
                Wake::Tick => {
                    if let Some(stop) = self.tick(&mut chores, opts) {
                        break stop;
                    }
                    tick.as_mut().reset(Instant::now() + chores.drain_every);
                }
            }
            self.feed_ready()?;
        };
        if let Some(live) = chores.live {
            live.finish();
        }
        Ok(stop)
    }

    /// Waits for the next thing to do. Marks the probes pushed early are
    /// collected right here.
    async fn wait(
        &mut self,
        tick: &mut std::pin::Pin<&mut tokio::time::Sleep>,
        deadline: Option<Instant>,
        interrupts: &mut Interrupts,
    ) -> Result<Wake> {
        let Live {
            ring,
            writer,
            spawns,
            maps,
            sampling,
            child_exit,
            ..
        } = self;
        Ok(tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let maps = sampling.snapshot_maps.then_some(maps);
                *spawns += drain_ring(guard.get_inner_mut(), writer, maps).spawns;
                guard.clear_ready();
                Wake::Drained
            }
            status = async { child_exit.as_mut().expect("guarded").await }, if child_exit.is_some() => {
                Wake::Stop(Stop::TargetExited(status.ok().flatten()))
            }
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                Wake::Stop(Stop::Duration)
            }
            signal = interrupts.recv() => Wake::Signal(signal),
            _ = tick.as_mut() => Wake::Tick,
        })
    }

    /// Unlike Ctrl-C, SIGTERM (or SIGHUP sent with kill) reaches only us:
    /// pass SIGTERM on so the command does not outlive its recording. A
    /// command of our own (the bench's spawner) ends on any of them.
    fn pass_on(&self, signal: interrupt::Stop, opts: &RecordOptions) {
        let end_command = signal != interrupt::Stop::CtrlC || opts.owns_command;
        if end_command && matches!(opts.target, Target::Command(_)) {
            // SAFETY: signalling the child we started.
            unsafe { libc::kill(self.root_pid as i32, libc::SIGTERM) };
        }
    }

    /// The timer's chores: collect records, redraw the live count, prune map
    /// snapshots, and check that `-p`'s target still lives.
    fn tick(&mut self, chores: &mut Chores, opts: &RecordOptions) -> Option<Stop> {
        let drained = self.drain();
        chores.drain_every = if drained.records == 0 {
            (chores.drain_every * 2).min(chores.idle_interval)
        } else {
            chores.busy_interval
        };
        let now = Instant::now();
        if let Some(live) = &mut chores.live
            && now - chores.live_shown >= LIVE_UPDATE_INTERVAL
        {
            chores.live_shown = now;
            live.show(now - chores.started, self.spawns);
        }
        if self.sampling.snapshot_maps && now - chores.maps_pruned >= MAPS_PRUNE_INTERVAL {
            chores.maps_pruned = now;
            self.maps.prune(&self.session.sampled_tgids());
        }
        if chores.panic_at.is_some_and(|at| now >= at) {
            panic!("SPAWNPROF_TEST_PANIC_AFTER_MS: a panic while recording, on request");
        }
        if opts.target_is_pid() && now - chores.alive_checked >= ALIVE_CHECK_INTERVAL {
            chores.alive_checked = now;
            if !pid_alive(self.root_pid) {
                if let Some(live) = chores.live.take() {
                    live.finish();
                }
                if opts.announce {
                    crate::say!(
                        "spawnprof: {} exited; stopping",
                        crate::units::elide(&self.summary.target, crate::units::SHOWN_COMMAND)
                    );
                }
                return Some(Stop::TargetExited(None));
            }
        }
        None
    }

    /// Moves what the ring buffer holds into the recording.
    pub fn drain(&mut self) -> Drained {
        let maps = self.sampling.snapshot_maps.then_some(&mut self.maps);
        let drained = drain_ring(self.ring.get_mut(), &mut self.writer, maps);
        self.spawns += drained.spawns;
        drained
    }

    /// Between ticks: the resolution of a root in a PID namespace, the
    /// fork-only probes parked or brought back, the finished spawns the
    /// kernel kept for lack of room in the ring buffer, and the
    /// once-a-second flush of the recording.
    fn feed_ready(&mut self) -> Result<()> {
        self.root.resolve(&mut self.session)?;
        self.session.keep_fork_probes()?;
        let (collected, seen) = self.session.collect_deferred(self.deferred);
        self.deferred = seen;
        for r in &collected {
            self.writer.append(r);
        }
        self.spawns += collected.len() as u64;
        if let Some(failure) = self.writer.checkpoint() {
            crate::say!(
                "spawnprof: error: {failure}; recording goes on, but from now on spawns are only \
                 counted, not saved (free space, or record into another directory with -o)"
            );
        }
        Ok(())
    }
}

impl Chores {
    fn new(live: &Live, opts: &RecordOptions) -> Self {
        // The probes wake us only when the ring buffer is half full;
        // otherwise records are collected on this timer (spawnprof-ebpf emit.rs).
        let live_count = LiveCount::for_recording(opts);
        let watching = live_count.is_some() || opts.target_is_pid();
        let busy_interval = match (live.sampling.active, watching) {
            (true, _) => DRAIN_INTERVAL_SAMPLING,
            (false, true) => DRAIN_INTERVAL_WATCHING,
            (false, false) => DRAIN_INTERVAL,
        };
        let now = Instant::now();
        Self {
            busy_interval,
            idle_interval: if watching {
                IDLE_DRAIN_INTERVAL_WATCHING
            } else {
                IDLE_DRAIN_INTERVAL
            },
            drain_every: busy_interval,
            alive_checked: now,
            maps_pruned: now,
            live: live_count,
            live_shown: now,
            started: now,
            panic_at: test_panic_deadline(),
        }
    }
}

/// What a drain of the ring buffer moved.
pub(super) struct Drained {
    pub records: u64,
    pub spawns: u64,
}

/// Moves every record from the ring buffer into the recording. With
/// `maps`, the memory maps of each process that just exec'd are
/// snapshotted while it (probably) still runs, to symbolize its stacks later.
pub(super) fn drain_ring(
    ring: &mut RingBuf<MapData>,
    writer: &mut RecordingWriter,
    mut maps: Option<&mut MapsCache>,
) -> Drained {
    // SPAWNPROF_DEBUG_RECORDS=1 prints every record as it arrives (for
    // debugging probes). Looked up once: getenv locks and scans the
    // environment, and this runs up to 100 times a second.
    static DEBUG: LazyLock<bool> =
        LazyLock::new(|| std::env::var_os("SPAWNPROF_DEBUG_RECORDS").is_some());
    let mut d = Drained {
        records: 0,
        spawns: 0,
    };
    while let Some(item) = ring.next() {
        d.records += 1;
        if *DEBUG {
            crate::say!("record {:?}", decode(&item));
        }
        match kind_of(&item) {
            // Its work is the wake-up itself (see `Session::keep_fork_probes`).
            Some(rec::NOTICE_FORK) => {}
            Some(rec::NOTICE_EXEC | rec::NOTICE_EXIT) => {
                if let (Some(maps), Ok(Record::Notice(n))) = (maps.as_deref_mut(), decode(&item)) {
                    match n.kind {
                        rec::NOTICE_EXEC => maps.observe(n.tgid),
                        _ => maps.exited(n.tgid),
                    }
                }
            }
            kind => {
                d.spawns += u64::from(kind == Some(rec::SPAWN));
                writer.append(&item);
            }
        }
    }
    d
}

/// `SPAWNPROF_TEST_PANIC_AFTER_MS=N` panics in the recording loop N ms in,
/// to prove that a panic still detaches every probe and keeps the spawns
/// written so far.
fn test_panic_deadline() -> Option<Instant> {
    super::test_hook_ms("SPAWNPROF_TEST_PANIC_AFTER_MS").map(|d| Instant::now() + d)
}
