//! Writing a recording: `spawns.jsonl` appended as spawns complete, and
//! `summary.json` replaced whole.
use std::{
    fs::{self, File},
    io::{BufReader, BufWriter, Write as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use super::{SPAWNS_FILE, SUMMARY_FILE, Summary};
use crate::model::SpawnRecord;

/// Space set aside in the output directory while recording, released just
/// before `summary.json` is written: a disk that fills during a recording
/// still takes the summary that makes the saved records readable.
pub(super) const SUMMARY_RESERVE_FILE: &str = ".spawnprof-summary-reserve";
const SUMMARY_RESERVE_BYTES: i64 = 1 << 20;

/// Appends spawn records to `spawns.jsonl` as they complete.
///
/// A failed write (a full disk, a quota) does not end the recording: the
/// statistics and the terminal report are built in memory and stay whole.
/// Writing stops at the first failure, the file is cut back to its last
/// complete record, and the failure is reported (see [`SpawnWriter::finish`]).
pub struct SpawnWriter {
    path: PathBuf,
    out: BufWriter<File>,
    written: u64,
    /// The first write error.
    failure: Option<std::io::Error>,
    /// Records not saved because of it.
    unsaved: u64,
    failure_reported: bool,
    reserve: SpaceReserve,
    last_flush: std::time::Instant,
}

/// How long finished spawns may wait in memory before they are written out:
/// what a recording loses when spawnprof is killed (SIGKILL, the OOM killer),
/// and how far `tail -f spawns.jsonl` lags.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl SpawnWriter {
    pub fn create(dir: &Path) -> Result<Self> {
        let path = dir.join(SPAWNS_FILE);
        // Readable too: after a failed write the file is read back to cut
        // it after its last complete record.
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let reserve = SpaceReserve::make(&dir.join(SUMMARY_RESERVE_FILE), SUMMARY_RESERVE_BYTES);
        Ok(Self {
            path,
            // Large writes: one syscall per ~100 records, not per four,
            // and at least every FLUSH_INTERVAL. Everything is flushed on
            // every way out but SIGKILL.
            out: BufWriter::with_capacity(256 << 10, file),
            written: 0,
            failure: None,
            unsaved: 0,
            failure_reported: false,
            reserve,
            last_flush: std::time::Instant::now(),
        })
    }

    /// Writes out what is buffered once [`FLUSH_INTERVAL`] has passed since
    /// the last time, so a kill that no handler sees loses at most that much.
    pub fn flush_if_due(&mut self) {
        if self.failure.is_some() || self.last_flush.elapsed() < FLUSH_INTERVAL {
            return;
        }
        self.last_flush = std::time::Instant::now();
        if let Err(e) = self.out.flush() {
            self.failure = Some(e);
        }
    }

    pub fn write(&mut self, record: &SpawnRecord) {
        if self.failure.is_some() {
            self.unsaved += 1;
            return;
        }
        let written = serde_json::to_writer(&mut self.out, record)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        match written {
            Ok(()) => self.written += 1,
            Err(e) => {
                self.failure = Some(e);
                self.unsaved += 1;
            }
        }
    }

    /// `n` records that were never offered (counted in memory while the
    /// disk was full): for the failure's message, which says how many of
    /// all the records the file keeps.
    pub fn missed(&mut self, n: u64) {
        self.unsaved += n;
    }

    /// The first write failure, once: for a warning while recording.
    pub fn new_failure(&mut self) -> Option<String> {
        if self.failure_reported {
            return None;
        }
        let e = self.failure.as_ref()?;
        self.failure_reported = true;
        Some(format!("writing {}: {e}", self.path.display()))
    }

    /// Flushes the records and releases the space kept for the summary.
    /// After a failed write, cuts the file back to its last complete record
    /// and returns an error saying how many records were not saved.
    pub fn finish(mut self) -> Result<u64> {
        if self.failure.is_none()
            && let Err(e) = self.out.flush()
        {
            self.failure = Some(e);
        }
        drop(self.reserve);
        let Some(e) = self.failure.take() else {
            return Ok(self.written);
        };
        // Drop the unwritten buffer instead of flushing it on drop, which
        // would append another partial line.
        let (file, _) = self.out.into_parts();
        let total = self.written + self.unsaved;
        let kept = match cut_to_last_line(&file) {
            Ok(kept) => format!("it keeps the first {kept} complete records of {total}"),
            Err(cut) => format!("its last line may be cut short ({cut})"),
        };
        bail!(
            "writing {} failed ({e}); {kept}. Free space there, or record into another directory \
             with -o",
            self.path.display(),
        )
    }
}

/// `bytes` set aside in a file of their own, freed when dropped (on every
/// way out of a recording, not only the normal one). Best effort: where the
/// file system cannot preallocate, there is no reserve.
struct SpaceReserve(Option<PathBuf>);

impl SpaceReserve {
    fn make(path: &Path, bytes: i64) -> Self {
        use std::os::fd::AsRawFd as _;
        let Ok(file) = File::create(path) else {
            return Self(None);
        };
        // SAFETY: a valid descriptor, and a range starting at 0.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, bytes) } != 0 {
            let _ = fs::remove_file(path);
            return Self(None);
        }
        Self(Some(path.to_path_buf()))
    }
}

impl Drop for SpaceReserve {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

/// Truncates `file` after its last newline; returns how many lines it keeps.
pub(super) fn cut_to_last_line(file: &File) -> std::io::Result<u64> {
    use std::io::{Read as _, Seek as _};
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader.rewind()?;
    let (mut pos, mut end, mut lines) = (0u64, 0u64, 0u64);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        for (i, _) in chunk[..n].iter().enumerate().filter(|(_, b)| **b == b'\n') {
            lines += 1;
            end = pos + i as u64 + 1;
        }
        pos += n as u64;
    }
    file.set_len(end)?;
    Ok(lines)
}

/// Writes `summary.json` whole or not at all (a new file renamed over the
/// old): a kill or a full disk mid-write leaves the previous summary, never
/// half of one.
pub fn write_summary(dir: &Path, summary: &Summary) -> Result<()> {
    let path = dir.join(SUMMARY_FILE);
    let tmp = dir.join(format!(".{SUMMARY_FILE}.tmp"));
    let text = serde_json::to_string_pretty(summary)? + "\n";
    fs::write(&tmp, text)
        .and_then(|()| fs::rename(&tmp, &path))
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
        .with_context(|| format!("writing {}", path.display()))
}
