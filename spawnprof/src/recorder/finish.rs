//! Phase 4: the last marks, the detach, and everything written out.
use anyhow::Result;

use super::{RecordOptions, Recorded, Stop, interrupt::Interrupts, pump::drain_ring, start::Live};
use crate::{
    report::export,
    sys::clock::mono_ns,
    trace::stacks::{self, KernelSymbols},
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
        // What could not be saved (a full disk): the recording still ends
        // normally, and the report is still printed from memory.
        let mut unsaved = self
            .write_stacks(opts)
            .err()
            .into_iter()
            .collect::<Vec<_>>();
        let Live {
            ring,
            session,
            writer,
            correlator,
            records,
            mut stats,
            mut summary,
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
        summary.unfinished = None;
        let (recording, not_written) = writer.finish(&mut summary);
        unsaved.extend(not_written);
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

    /// Symbolizes and folds the stack samples into stacks.svg.
    fn write_stacks(&mut self, opts: &RecordOptions) -> Result<(), String> {
        if !self.sampling.active {
            return Ok(());
        }
        let samples = self.session.stack_samples().unwrap_or_default();
        self.summary.stack_samples = samples.iter().map(|s| s.count).sum();
        let lines = stacks::fold(&samples, &self.maps, &KernelSymbols::load());
        stacks::write(self.writer.dir(), &lines, opts.sample_hz).map_err(|e| format!("{e:#}"))
    }
}
