//! The on-disk recording, the one format every other part reads and writes.
//!
//! ```text
//! DIR/spawns.jsonl   one model::SpawnRecord per line, appended as spawns end
//! DIR/summary.json   Summary: target, node, attach plan, counts, statistics
//! ```
//!
//! Writing: [`Recording::create`] checks the directory before any probe
//! loads; [`NewRecording::start`] opens `spawns.jsonl` under a lock and
//! writes a provisional summary; [`RecordingWriter::append`] adds spawns
//! and [`RecordingWriter::finish`] writes the final summary. Reading:
//! [`Recording::open`], [`Recording::summary`] (rebuilt by [`recover`] when
//! spawnprof was killed mid-recording) and [`Recording::records`].
mod convert;
pub mod light;
mod lock;
mod out_dir;
pub mod raw;
mod reader;
pub mod recover;
mod summary;
pub mod synthetic;
mod writer;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

pub use lock::RecordingLock;
pub use out_dir::{OutputDir, ensure_writable, prepare_out_dir};
pub use reader::{for_each_record, load_recording, parse_recording, read_summary};
pub use summary::{ProbeCost, ProgramCost, SCHEMA_VERSION, Summary};
pub use writer::{FLUSH_INTERVAL, SpawnWriter, write_summary};

pub use convert::{Converted, Folding, convert, convert_into};
pub use raw::{RAW_FILE, RawWriter};

use crate::model::{FaultCoverage, SpawnRecord};

pub const SPAWNS_FILE: &str = "spawns.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";

/// A recording directory on disk.
#[derive(Debug)]
pub struct Recording {
    dir: PathBuf,
    /// What the directory held before this process wrote into it.
    out: OutputDir,
}

impl Recording {
    /// Checks (or creates) `dir` for a new recording before any probe is
    /// loaded, so a bad `-o` fails fast; refuses to overwrite a recording
    /// unless `force`.
    pub fn create(dir: &Path, force: bool) -> Result<NewRecording> {
        let out = prepare_out_dir(dir, force)?;
        Ok(NewRecording {
            rec: Recording {
                dir: dir.to_path_buf(),
                out,
            },
        })
    }

    /// A saved recording (or bench) directory, to read and to write
    /// reports into.
    pub fn open(dir: &Path) -> Recording {
        Recording {
            dir: dir.to_path_buf(),
            out: OutputDir::before_writing(dir),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The summary; a recording spawnprof did not finish is rebuilt from
    /// its spawns (see [`recover::summary`]).
    pub fn summary(&self) -> Result<Summary> {
        recover::summary(&self.dir)
    }

    /// Calls `f` with each spawn in order until it returns `false`.
    pub fn records(&self, f: impl FnMut(&SpawnRecord) -> Result<bool>) -> Result<u64> {
        for_each_record(&self.dir, f)
    }

    /// When run through sudo, gives what spawnprof created here to the
    /// invoking user.
    pub fn hand_to_invoking_user(&self) -> Result<()> {
        self.out.hand_to_invoking_user()
    }
}

/// A checked output directory with nothing written yet.
pub struct NewRecording {
    rec: Recording,
}

impl NewRecording {
    /// Removes the directory again if it was created for this recording
    /// and is still empty (the recording stopped before it began).
    pub fn discard(self) {
        self.rec.out.discard_if_untouched();
    }

    /// Opens `spawns.jsonl` under the recording lock and writes the
    /// provisional summary, so a spawnprof killed from here on still
    /// leaves a recording `spawnprof report` can rebuild. A failure to
    /// write that summary is only a warning: the recording goes on.
    pub fn start(self, provisional: &Summary, end: Ending) -> Result<RecordingWriter> {
        let dir = &self.rec.dir;
        let spawns = SpawnWriter::create(dir)?;
        let raw = RawWriter::create(dir)?;
        // Held until the final summary is written: `spawnprof report` must
        // not rebuild this recording while it is being written.
        let lock = RecordingLock::try_take(dir)?.with_context(|| {
            format!(
                "{} is being recorded into by another spawnprof; choose another -o directory",
                dir.display()
            )
        })?;
        if let Err(e) = write_summary(dir, provisional) {
            crate::say!("spawnprof: warning: {e:#}; the recording goes on");
        }
        Ok(RecordingWriter {
            rec: self.rec,
            spawns,
            raw,
            end,
            memory: None,
            _lock: lock,
        })
    }
}

/// A recording being written.
pub struct RecordingWriter {
    rec: Recording,
    spawns: SpawnWriter,
    raw: RawWriter,
    end: Ending,
    /// Spawns that could not be saved (a full disk), counted here instead
    /// so the statistics stay whole.
    memory: Option<Folding>,
    _lock: RecordingLock,
}

/// How a recording's raw records turn into spawns.
#[derive(Clone, Copy)]
pub struct Ending {
    /// The kernel's clock at the start, ns.
    pub t0: u64,
    pub coverage: FaultCoverage,
    /// How many spawns to keep in memory for the terminal.
    pub keep: usize,
}

impl RecordingWriter {
    pub fn dir(&self) -> &Path {
        &self.rec.dir
    }

    /// Appends one raw kernel record (buffered; see [`Self::checkpoint`]).
    pub fn append(&mut self, record: &[u8]) {
        let unsaved = self.raw.append(record);
        count_in_memory(&mut self.memory, &mut self.spawns, self.end, unsaved);
    }

    /// Writes out what is buffered once a second; returns the first write
    /// failure, once, for a warning.
    pub fn checkpoint(&mut self) -> Option<String> {
        let (unsaved, failure) = self.raw.checkpoint();
        count_in_memory(&mut self.memory, &mut self.spawns, self.end, unsaved);
        failure
    }

    /// Converts the raw records into spawns.jsonl, fills the summary's
    /// counts and statistics, writes it, and releases the lock. Returns the
    /// recording, its first spawns, and what could not be written (a full
    /// disk), one message each.
    pub fn finish(self, summary: &mut Summary) -> (Recording, Vec<SpawnRecord>, Vec<String>) {
        let RecordingWriter {
            rec,
            mut spawns,
            raw,
            end,
            mut memory,
            _lock,
        } = self;
        let (unsaved, raw_failed) = raw.finish();
        count_in_memory(&mut memory, &mut spawns, end, unsaved);
        let dir = rec.dir.clone();
        let folding = memory.unwrap_or_else(|| Folding::new(end.t0, end.coverage, end.keep));
        let (kept, converted) = match convert_into(&dir, &mut spawns, folding) {
            Ok(mut c) => {
                summary.counts = c.stats.counts();
                summary.stages = c.stats.stage_stats();
                summary.placement = c.stats.placement();
                summary.spawn_time = c.stats.spawn_time();
                summary.hidden_costs = Some(c.stats.hidden_costs());
                summary.assembly = c.assembly;
                (std::mem::take(&mut c.kept), Ok(()))
            }
            Err(e) => (Vec::new(), Err(format!("converting {RAW_FILE}: {e:#}"))),
        };
        let written = spawns.finish().map_err(|e| format!("{e:#}"));
        let mut problems: Vec<String> = raw_failed.into_iter().collect();
        if converted.is_ok() && written.is_ok() {
            // Every saved record is in spawns.jsonl now.
            let _ = std::fs::remove_file(dir.join(RAW_FILE));
        } else {
            problems.extend(converted.err());
            problems.extend(written.err());
            problems.push(format!(
                "{RAW_FILE} keeps the records saved while recording: free space there and run \
                 `spawnprof report {}` to convert them",
                dir.display()
            ));
        }
        summary.spawns_incomplete = (!problems.is_empty()).then(|| problems.join("; "));
        if let Err(e) = write_summary(&dir, summary) {
            problems.push(format!("{e:#}"));
        }
        (rec, kept, problems)
    }
}

/// Counts records that could not be saved (length-prefixed, as the raw
/// writer hands them back) in memory, so the statistics stay whole.
fn count_in_memory(
    memory: &mut Option<Folding>,
    spawns: &mut SpawnWriter,
    end: Ending,
    records: Option<Vec<u8>>,
) {
    let Some(records) = records else {
        return;
    };
    let memory = memory.get_or_insert_with(|| Folding::new(end.t0, end.coverage, end.keep));
    let _ = raw::for_each_in(&records[..], |r| {
        if memory.feed(r).is_some() {
            spawns.missed(1);
        }
        Ok(())
    });
}
