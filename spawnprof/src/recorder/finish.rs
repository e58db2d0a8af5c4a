//! Phase 4: the last records, the detach, and everything written out.
use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::Duration,
};

use anyhow::Result;

use super::{
    RecordOptions, Recorded, Stop, Target, interrupt::Interrupts, pump::drain_ring, start::Live,
};
use crate::{
    probe::RawSample,
    recording::{RecordingWriter, SPAWNS_FILE, Summary, light},
    report::export,
    sys::clock::mono_ns,
    trace::stacks::{self, KernelSymbols, MapsCache},
};

/// How long a command ended by spawnprof (SIGTERM) gets to exit, so its
/// exit is in the recording.
const COMMAND_GRACE: Duration = Duration::from_secs(2);
/// How long an interrupt waits for the command to end by itself (a Ctrl-C
/// at the terminal reaches it too) before spawnprof sends SIGTERM.
const CTRL_C_GRACE: Duration = Duration::from_millis(300);

impl Live {
    /// Ends the command, takes the last records with the probes stopped,
    /// and writes everything out.
    pub async fn finish(
        mut self,
        stop: Stop,
        opts: &RecordOptions,
        mut interrupts: Interrupts,
    ) -> Result<Recorded> {
        let interrupted = self.settle(&stop, opts, &mut interrupts).await;
        // What follows is synchronous: from here a signal is noted, and the
        // next one (after an interrupt, the very next) ends the process at once.
        interrupts.writing(interrupted);
        // `SPAWNPROF_TEST_WRITE_DELAY_MS`: a writing phase long enough for
        // the tests to signal it (it takes some 40 ms for a small recording).
        if let Some(delay) = super::test_hook_ms("SPAWNPROF_TEST_WRITE_DELAY_MS") {
            std::thread::sleep(delay);
        }
        self.last_records().write_out(opts)
    }

    /// Closes the recording's time, then ends the command if it still
    /// runs. Returns whether the recording was interrupted.
    async fn settle(
        &mut self,
        stop: &Stop,
        opts: &RecordOptions,
        interrupts: &mut Interrupts,
    ) -> bool {
        // The recording covers the time until the loop stopped, not the
        // time it takes to end the command and write the files.
        self.summary.duration_ns = mono_ns().saturating_sub(self.t0);
        // A Ctrl-C at the terminal also ends the command, and its exit can
        // win the race to the loop: the signal still makes this an interrupt.
        let interrupted = matches!(stop, Stop::Interrupted) || interrupts.arrived().await.is_some();
        self.summary.interrupted = interrupted;
        self.summary.exit_code = match stop {
            Stop::TargetExited(code) => *code,
            _ => self.end_command(stop, opts).await,
        };
        if interrupted {
            crate::say!(
                "spawnprof: interrupted; writing what was recorded (Ctrl-C again to quit at once)"
            );
        }
        interrupted
    }

    /// Stops the probes and takes every record still in the kernel: the
    /// ring's, then the spawns not sent before the stop.
    fn last_records(mut self) -> LastRecords {
        self.drain();
        self.summary.fork_probes = self.session.park_counts();
        // Measured before the stacks are symbolized: that is after-the-fact
        // work, like writing the reports.
        self.summary.probe_cost = self
            .cost
            .take()
            .map(|m| m.finish(&self.session, self.spawns));
        // Read before the probes are detached; folded once the recording
        // is written, which names the program each sampled process ran.
        let samples = self.stack_samples();
        let Live {
            session,
            mut ring,
            mut writer,
            mut summary,
            maps,
            ..
        } = self;
        // Stopped first: then nothing is sent after the last drain, and
        // the sweep finds every spawn not sent before the stop.
        let mut kernel = session.stop();
        drain_ring(ring.get_mut(), &mut writer, None);
        drop(ring);
        for r in kernel.sweep() {
            writer.append(&r);
        }
        let lost = kernel.lost();
        (summary.lost, summary.lost_spawns) = (lost.by_reason, lost.spawns);
        summary.unfinished = None;
        LastRecords {
            writer,
            summary,
            samples,
            maps,
        }
    }

    /// Ends a command the recording started that is still running, as
    /// `timeout` does: SIGTERM, then its exit is waited for a moment.
    /// After an interrupt it first gets the chance to end by itself.
    async fn end_command(&mut self, stop: &Stop, opts: &RecordOptions) -> Option<i32> {
        let Target::Command(argv) = &opts.target else {
            return None;
        };
        let exit = self.child_exit.as_mut()?;
        if matches!(stop, Stop::Interrupted)
            && let Ok(status) = tokio::time::timeout(CTRL_C_GRACE, &mut *exit).await
        {
            return status.ok().flatten();
        }
        let why = match (stop, opts.duration) {
            (Stop::Duration, Some(d)) => format!(
                "--duration {} reached",
                crate::units::format_ns(d.as_nanos() as u64)
            ),
            _ => "interrupted".to_string(),
        };
        crate::say!(
            "spawnprof: {why}: sent SIGTERM to {} (pid {}), as timeout does",
            argv[0],
            self.root_pid
        );
        self.summary.timed_out = matches!(stop, Stop::Duration);
        // SAFETY: signalling the child we started.
        unsafe { libc::kill(self.root_pid as i32, libc::SIGTERM) };
        tokio::time::timeout(COMMAND_GRACE, exit)
            .await
            .ok()?
            .ok()
            .flatten()
    }

    /// The stack samples the kernel holds (`None` without sampling).
    fn stack_samples(&mut self) -> Option<Vec<RawSample>> {
        if !self.sampling.active {
            return None;
        }
        let samples = self.session.stack_samples().unwrap_or_default();
        self.summary.stack_samples = samples.iter().map(|s| s.count).sum();
        Some(samples)
    }
}

/// Everything recorded, the probes stopped: what is left is writing it.
struct LastRecords {
    writer: RecordingWriter,
    summary: Summary,
    samples: Option<Vec<RawSample>>,
    maps: MapsCache,
}

impl LastRecords {
    /// Writes the recording, then its stacks and reports. What could not
    /// be saved (a full disk) is listed: the recording still ends normally,
    /// and the report is still printed from memory.
    fn write_out(self, opts: &RecordOptions) -> Result<Recorded> {
        let LastRecords {
            writer,
            mut summary,
            samples,
            maps,
        } = self;
        let (recording, records, mut unsaved) = writer.finish(&mut summary);
        if let Some(samples) = samples
            && let Err(e) = write_stacks(recording.dir(), &samples, &maps, opts.sample_hz)
        {
            unsaved.push(e);
        }
        if unsaved.is_empty() {
            // The recording itself is safe on disk by now; a failed picture
            // must not lose it.
            if let Err(e) = export::write_all_from_recording(recording.dir()) {
                crate::say!(
                    "spawnprof: the recording is saved, but writing its reports failed: {e:#}"
                );
            }
        }
        recording.hand_to_invoking_user()?;
        Ok(Recorded {
            records,
            summary,
            unsaved,
        })
    }
}

/// Symbolizes and folds the stack samples into stacks.svg, each process
/// under the program it exec'd.
fn write_stacks(
    dir: &Path,
    samples: &[RawSample],
    maps: &MapsCache,
    hz: u64,
) -> Result<(), String> {
    let sampled: HashSet<u32> = samples.iter().map(|s| s.tgid).collect();
    // Without the programs the stacks still fold, under process names alone.
    let exes = exec_paths(dir, &sampled).unwrap_or_default();
    let lines = stacks::fold(samples, maps, &KernelSymbols::load(), &exes);
    stacks::write(dir, &lines, hz).map_err(|e| format!("{e:#}"))
}

/// The program each of `pids` exec'd, from the recording's spawns.
fn exec_paths(dir: &Path, pids: &HashSet<u32>) -> anyhow::Result<HashMap<u32, String>> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    light::fold(
        &dir.join(SPAWNS_FILE),
        workers,
        |acc: &mut HashMap<u32, String>, r| {
            if let (Some(pid), Some(path)) = (r.child_pid, &r.exec_path)
                && pids.contains(&pid)
            {
                acc.insert(pid, path.0.to_string());
            }
        },
        |acc, other| acc.extend(other),
    )
}
