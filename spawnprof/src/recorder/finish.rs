//! Phase 4: the last records, the detach, and everything written out.
use std::time::Duration;

use anyhow::Result;

use super::{
    RecordOptions, Recorded, Stop, Target, interrupt::Interrupts, pump::drain_ring, start::Live,
};
use crate::{
    report::export,
    sys::clock::mono_ns,
    trace::stacks::{self, KernelSymbols},
};

/// How long a command ended by spawnprof (SIGTERM) gets to exit, so its
/// exit is in the recording.
const COMMAND_GRACE: Duration = Duration::from_secs(2);
/// How long an interrupt waits for the command to end by itself (a Ctrl-C
/// at the terminal reaches it too) before spawnprof sends SIGTERM.
const CTRL_C_GRACE: Duration = Duration::from_millis(300);

impl Live {
    pub async fn finish(
        mut self,
        stop: Stop,
        opts: &RecordOptions,
        mut interrupts: Interrupts,
    ) -> Result<Recorded> {
        // The recording covers the time until the loop stopped, not the
        // time it takes to end the command and write the files.
        self.summary.duration_ns = mono_ns().saturating_sub(self.t0);
        // A Ctrl-C at the terminal also ends the command, and its exit can
        // win the race to the loop: the signal still makes this an interrupt.
        let interrupted = matches!(stop, Stop::Interrupted) || interrupts.arrived().await.is_some();
        self.summary.interrupted = interrupted;
        self.summary.exit_code = match stop {
            Stop::TargetExited(code) => code,
            _ => self.end_command(&stop, opts).await,
        };
        if interrupted {
            crate::say!(
                "spawnprof: interrupted; writing what was recorded (Ctrl-C again to quit at once)"
            );
        }
        // What follows is synchronous: from here a signal is noted, and the
        // next one (after an interrupt, the very next) ends the process at once.
        interrupts.writing(interrupted);
        self.drain();
        // Measured before the stacks are symbolized: that is after-the-fact
        // work, like writing the reports.
        self.summary.probe_cost = self
            .cost
            .take()
            .map(|m| m.finish(&self.session, self.spawns));
        // What could not be saved (a full disk): the recording still ends
        // normally, and the report is still printed from memory.
        let mut unsaved: Vec<String> = self.write_stacks(opts).err().into_iter().collect();
        let Live {
            session,
            mut ring,
            mut writer,
            mut summary,
            ..
        } = self;
        // Detached first: then nothing changes under the last drain and the
        // sweep, and no record sent before the detach is left behind.
        let mut kernel = session.detach();
        drain_ring(ring.get_mut(), &mut writer, None);
        drop(ring);
        for r in kernel.sweep() {
            writer.append(&r);
        }
        let lost = kernel.lost();
        (summary.lost, summary.lost_spawns) = (lost.by_reason, lost.spawns);
        summary.unfinished = None;
        let (recording, records, not_written) = writer.finish(&mut summary);
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
