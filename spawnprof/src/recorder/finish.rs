//! Phase 4: the last marks, the detach, and everything written out.
use std::{
    collections::{HashMap, HashSet},
    path::Path,
};

use anyhow::Result;

use super::{RecordOptions, Recorded, Stop, interrupt::Interrupts, pump::drain_ring, start::Live};
use crate::{
    probe::RawSample,
    recording::{SPAWNS_FILE, light},
    report::export,
    sys::clock::mono_ns,
    trace::stacks::{self, KernelSymbols, MapsCache},
};

impl Live {
    pub async fn finish(
        mut self,
        stop: Stop,
        opts: &RecordOptions,
        mut interrupts: Interrupts,
    ) -> Result<Recorded> {
        // A Ctrl-C at the terminal also ends the command, and its exit can
        // win the race to the loop: the signal still makes this an interrupt.
        let interrupted = matches!(stop, Stop::Interrupted) || interrupts.arrived().await.is_some();
        if interrupted {
            crate::say!(
                "spawnprof: interrupted; writing what was recorded (Ctrl-C again to quit at once)"
            );
        }
        // What follows is synchronous: from here a signal is noted, and the
        // next one (after an interrupt, the very next) ends the process at once.
        interrupts.writing(interrupted);
        self.drain_all()?;
        self.summary.interrupted = interrupted;
        self.summary.exit_code = match stop {
            Stop::TargetExited(code) => code,
            _ => None,
        };
        self.summary.lost_marks = self.session.lost().unwrap_or_default();
        self.summary.lost_marks_total = self.summary.lost_marks.values().sum();
        // Measured before the stacks are symbolized: that is after-the-fact
        // work, like writing the reports.
        let spawns = self.stats.counts().spawns;
        self.summary.probe_cost = self.cost.take().map(|m| m.finish(&self.session, spawns));
        // Read before the probes are detached; folded once the recording
        // is written, which names the program each sampled process ran.
        let samples = self.stack_samples();
        let Live {
            ring,
            session,
            writer,
            correlator,
            records,
            mut stats,
            mut summary,
            maps,
            t0,
            ..
        } = self;
        drop(ring);
        drop(session); // detaches every probe
        summary.duration_ns = mono_ns() - t0;
        summary.counts = stats.counts();
        summary.correlation = correlator.stats();
        summary.stages = stats.stage_stats();
        summary.placement = stats.placement();
        summary.spawn_time = stats.spawn_time();
        summary.unfinished = None;
        let (recording, mut unsaved) = writer.finish(&mut summary);
        // What could not be saved (a full disk): the recording still ends
        // normally, and the report is still printed from memory.
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

    /// Whatever is still in the ring buffer, then the whole window; every
    /// spawn still open is finished with the reasons it is incomplete.
    fn drain_all(&mut self) -> Result<()> {
        drain_ring(self.ring.get_mut(), &mut self.reorder, None);
        self.root.resolve(&mut self.session, &mut self.correlator)?;
        for e in self.reorder.drain() {
            self.correlator.feed(&e);
        }
        self.correlator.finish_all();
        self.flush();
        Ok(())
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
