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
pub mod light;
mod lock;
mod out_dir;
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

use crate::model::SpawnRecord;

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
    pub fn start(self, provisional: &Summary) -> Result<RecordingWriter> {
        let dir = &self.rec.dir;
        let spawns = SpawnWriter::create(dir)?;
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
            _lock: lock,
        })
    }
}

/// A recording being written.
pub struct RecordingWriter {
    rec: Recording,
    spawns: SpawnWriter,
    _lock: RecordingLock,
}

impl RecordingWriter {
    pub fn dir(&self) -> &Path {
        &self.rec.dir
    }

    /// Appends one finished spawn (buffered; see [`Self::checkpoint`]).
    pub fn append(&mut self, r: &SpawnRecord) {
        self.spawns.write(r);
    }

    /// Writes out what is buffered once a second; returns the first write
    /// failure, once, for a warning.
    pub fn checkpoint(&mut self) -> Option<String> {
        self.spawns.flush_if_due();
        self.spawns.new_failure()
    }

    /// Flushes the spawns, notes in `summary` what could not be saved,
    /// writes it, and releases the lock. Returns the recording and what
    /// could not be written (a full disk), one message each.
    pub fn finish(self, summary: &mut Summary) -> (Recording, Vec<String>) {
        let mut unsaved = Vec::new();
        summary.spawns_incomplete = self.spawns.finish().err().map(|e| format!("{e:#}"));
        unsaved.extend(summary.spawns_incomplete.clone());
        if let Err(e) = write_summary(&self.rec.dir, summary) {
            unsaved.push(format!("{e:#}"));
        }
        (self.rec, unsaved)
    }
}
