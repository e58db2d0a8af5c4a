//! A live recording, in four phases:
//!
//! ```text
//! prepare  check the target, the host and the output directory; load and
//!          attach the probes; start stack sampling
//! start    open the recording, start (or adopt) the target, announce
//! pump     ring buffer → decode → reorder → correlate → spawns.jsonl,
//!          until the target exits, the duration ends or a signal arrives
//! finish   drain what is left, detach, write the summary and the reports
//! ```
//!
//! Each phase undoes itself on the way out: dropping the session detaches
//! every probe, and a recording interrupted before it started removes its
//! empty directory. Nothing recorded is dropped on an interrupt: the
//! summary says `"interrupted": true`.
mod cost;
mod finish;
pub mod interrupt;
mod live;
mod prepare;
mod pump;
mod start;
mod target;

use std::{path::PathBuf, time::Duration};

use anyhow::{Result, bail};

pub use target::Target;

use crate::{model::SpawnRecord, probe::SessionOptions, recording::Summary};

/// Spawn records kept in memory for the terminal table. The rest go only to
/// `spawns.jsonl` and the statistics, so a long recording stays small.
pub const RECORDS_KEPT: usize = 1000;

#[derive(Clone, Debug)]
pub struct RecordOptions {
    pub target: Target,
    pub out_dir: PathBuf,
    pub duration: Option<Duration>,
    pub session: SessionOptions,
    pub force: bool,
    /// Send the command's stdout to this file (the bench reads the
    /// spawner's result line from it).
    pub command_stdout: Option<PathBuf>,
    /// Print the 'tracing' line when the probes are attached.
    pub announce: bool,
    /// Draw the live count on a terminal (with `announce`).
    pub live: bool,
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
            command_stdout: None,
            announce: true,
            live: true,
            sample_hz: 0,
            probe_cost: false,
            owns_command: false,
        }
    }

    fn target_is_pid(&self) -> bool {
        matches!(self.target, Target::Pid(_))
    }
}

/// The outcome of a recording.
pub struct Recorded {
    /// The first [`RECORDS_KEPT`] spawns, for the terminal table; all of them
    /// are in `spawns.jsonl`.
    pub records: Vec<SpawnRecord>,
    pub summary: Summary,
    /// What could not be written to the output directory (a full disk),
    /// one message each; the summary above is whole either way.
    pub unsaved: Vec<String>,
}

impl Recorded {
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
pub async fn record(opts: RecordOptions) -> Result<Recorded> {
    let target = prepare::check_target(&opts)?;
    // Caught from here on: a Ctrl-C while the probes load is seen once they
    // are ready, instead of killing us with the output directory half made.
    let mut interrupts = interrupt::Interrupts::catch()?;
    let probes = prepare::load(&opts)?;
    let mut live = start::Live::start(probes, target, &opts, &mut interrupts).await?;
    let stop = live.pump(&opts, &mut interrupts).await?;
    live.finish(stop, &opts, interrupts).await
}

/// A test hook's duration, from the environment variable `name` (N ms);
/// always `None` in release builds, whatever the environment says. Only
/// the integration tests' debug binaries obey them.
fn test_hook_ms(name: &str) -> Option<std::time::Duration> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let ms: u64 = std::env::var(name).ok()?.parse().ok()?;
    Some(std::time::Duration::from_millis(ms))
}
