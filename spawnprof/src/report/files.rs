//! The recording directory: `spawns.jsonl` (one [`SpawnRecord`] per line,
//! written as spawns complete) and `summary.json`.
use std::{
    collections::HashSet,
    ffi::OsString,
    fs::{self, File},
    io::{BufRead as _, BufReader, BufWriter, Write as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use super::Summary;
use crate::model::SpawnRecord;

pub const SPAWNS_FILE: &str = "spawns.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";

/// Creates (or checks) the output directory before any tracing starts, so a
/// bad `-o` fails fast instead of after a long recording. Returns what the
/// directory held before, for [`OutputDir::hand_to_invoking_user`].
pub fn prepare_out_dir(dir: &Path, force: bool) -> Result<OutputDir> {
    if dir.join(SPAWNS_FILE).exists() {
        if !force {
            bail!(
                "{} already holds a recording; choose another -o directory or pass --force to overwrite it",
                dir.display()
            );
        }
        if RecordingLock::try_take(dir)?.is_none() {
            bail!(
                "{} is being recorded into right now by another spawnprof; choose another -o directory",
                dir.display()
            );
        }
    }
    let out = OutputDir::before_writing(dir);
    fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create output directory {} (choose a writable -o DIR)",
            dir.display()
        )
    })?;
    ensure_writable(dir, "choose a writable -o DIR")?;
    Ok(out)
}

/// Fails, naming `remedy`, unless a file can be created in `dir`.
pub fn ensure_writable(dir: &Path, remedy: &str) -> Result<()> {
    let probe = dir.join(".spawnprof-write-test");
    File::create(&probe)
        .with_context(|| format!("{} is not writable ({remedy})", dir.display()))?;
    let _ = fs::remove_file(probe);
    Ok(())
}

/// An output directory as it was before spawnprof wrote into it. When run
/// through sudo, only what spawnprof created is handed to the invoking
/// user: `-o /tmp` or `-o .` must not give away everything else in there.
#[derive(Debug)]
pub struct OutputDir {
    path: PathBuf,
    /// spawnprof creates the directory itself, so all of it is its output.
    created: bool,
    /// Entries already there; files spawnprof overwrites keep their owner.
    existing: HashSet<OsString>,
}

impl OutputDir {
    /// Removes the directory again if spawnprof created it and left it
    /// empty (a recording stopped before it wrote anything).
    pub fn discard_if_untouched(&self) {
        if self.created {
            // Fails, as it should, on a directory that holds anything.
            let _ = fs::remove_dir(&self.path);
        }
    }

    /// Notes what `dir` holds now (nothing, if it does not exist yet).
    pub fn before_writing(dir: &Path) -> OutputDir {
        let existing = fs::read_dir(dir).ok().map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect()
        });
        OutputDir {
            path: dir.to_path_buf(),
            created: existing.is_none(),
            existing: existing.unwrap_or_default(),
        }
    }

    /// When run through sudo, gives what spawnprof created back to the
    /// user who asked for it (SUDO_UID/SUDO_GID), so it is not left owned
    /// by root: the whole directory if spawnprof created it, else only the
    /// entries that were not there before.
    pub fn hand_to_invoking_user(&self) -> Result<()> {
        let id = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<u32>().ok());
        let (Some(uid), Some(gid)) = (id("SUDO_UID"), id("SUDO_GID")) else {
            return Ok(());
        };
        let hand = |path: &Path| {
            chown_tree(path, uid, gid)
                .with_context(|| format!("handing {} back to uid {uid} (SUDO_UID)", path.display()))
        };
        if self.created {
            return hand(&self.path);
        }
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            if !self.existing.contains(&entry.file_name()) {
                hand(&entry.path())?;
            }
        }
        Ok(())
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if path.is_dir() && !path.is_symlink() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

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

/// Held by `spawnprof record` while it writes a recording (an advisory lock
/// on its spawns.jsonl, which the kernel drops when spawnprof dies however
/// it dies): `spawnprof report` must not rebuild a recording that is still
/// being written.
pub struct RecordingLock {
    _held: File,
}

impl RecordingLock {
    /// Locks the recording in `dir`; `Ok(None)` when another process holds it.
    pub fn try_take(dir: &Path) -> Result<Option<Self>> {
        use std::os::fd::AsRawFd as _;
        let path = dir.join(SPAWNS_FILE);
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: a valid descriptor; flock takes no pointers.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(Self { _held: file }));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        Err(e).with_context(|| format!("locking {}", path.display()))
    }
}

/// Reads `summary.json` of a recording.
pub fn read_summary(dir: &Path) -> Result<Summary> {
    let summary_path = dir.join(SUMMARY_FILE);
    let text = fs::read_to_string(&summary_path).with_context(|| {
        format!(
            "{} is not a spawnprof recording (no {SUMMARY_FILE})",
            dir.display()
        )
    })?;
    parse_summary(&text, &summary_path)
}

/// Calls `f` with each record of `spawns.jsonl` in order, one at a time
/// (a recording may hold millions), until `f` returns `false`. Returns how
/// many records were read.
pub fn for_each_record(dir: &Path, f: impl FnMut(&SpawnRecord) -> Result<bool>) -> Result<u64> {
    let spawns_path = dir.join(SPAWNS_FILE);
    let file =
        File::open(&spawns_path).with_context(|| format!("opening {}", spawns_path.display()))?;
    each_spawn(
        BufReader::with_capacity(1 << 20, file).lines(),
        &spawns_path,
        f,
    )
}

/// Reads a whole recording back (tests, small recordings). A corrupt line
/// is an error naming the file and line.
pub fn load_recording(dir: &Path) -> Result<(Summary, Vec<SpawnRecord>)> {
    let summary = read_summary(dir)?;
    let mut records = Vec::new();
    for_each_record(dir, |r| {
        records.push(r.clone());
        Ok(true)
    })?;
    Ok((summary, records))
}

/// [`load_recording`] on the contents of the two files (fuzzing, tests):
/// the same parsing and checks, with errors naming the bare file names.
pub fn parse_recording(summary: &str, spawns: &str) -> Result<(Summary, Vec<SpawnRecord>)> {
    let summary = parse_summary(summary, Path::new(SUMMARY_FILE))?;
    let lines = spawns.lines().map(|l| Ok(l.to_string()));
    let records = parse_spawns(lines, Path::new(SPAWNS_FILE))?;
    Ok((summary, records))
}

fn parse_summary(text: &str, summary_path: &Path) -> Result<Summary> {
    serde_json::from_str(text).with_context(|| {
        format!(
            "{} is corrupt or from another version",
            summary_path.display()
        )
    })
}

/// One [`SpawnRecord`] per non-blank line of `spawns_path`.
fn parse_spawns(
    lines: impl Iterator<Item = std::io::Result<String>>,
    spawns_path: &Path,
) -> Result<Vec<SpawnRecord>> {
    let mut records = Vec::new();
    each_spawn(lines, spawns_path, |r| {
        records.push(r.clone());
        Ok(true)
    })?;
    Ok(records)
}

/// Parses lines into records and hands each to `f` until it returns false.
fn each_spawn(
    lines: impl Iterator<Item = std::io::Result<String>>,
    spawns_path: &Path,
    mut f: impl FnMut(&SpawnRecord) -> Result<bool>,
) -> Result<u64> {
    let mut n = 0;
    for (i, line) in lines.enumerate() {
        let line = line.with_context(|| format!("reading {}", spawns_path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let r: SpawnRecord = serde_json::from_str(&line).with_context(|| {
            format!(
                "{}:{} is not a valid spawn record (truncated or corrupt recording)",
                spawns_path.display(),
                i + 1
            )
        })?;
        n += 1;
        if !f(&r)? {
            break;
        }
    }
    Ok(n)
}
