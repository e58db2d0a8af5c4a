//! `spawns.raw`: the kernel's records as they came, each behind its length
//! (a native-endian u32), while a recording runs. Appending one is a copy;
//! decoding, joining, statistics and JSON wait for the end (see
//! [`super::convert`]), so the recording does not compete with the
//! workload it measures. A spawnprof killed mid-recording leaves this file,
//! which `spawnprof report` converts.
use std::{
    fs::File,
    io::BufReader,
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result};

use super::FLUSH_INTERVAL;

pub const RAW_FILE: &str = "spawns.raw";

/// Buffered records are written out at this size, or once a second.
const BUFFER: usize = 1 << 20;

/// Appends raw records. The file only ever holds whole records: a write
/// that fails (a full disk) is cut back to the last one, and from then on
/// every record is handed back to the caller unsaved, which counts it in
/// memory instead.
pub struct RawWriter {
    path: PathBuf,
    file: File,
    /// Records not yet written, length-prefixed.
    buf: Vec<u8>,
    /// Bytes of whole records in the file.
    saved: u64,
    /// Records in the file or on their way to it.
    records: u64,
    failure: Option<std::io::Error>,
    failure_reported: bool,
    last_flush: Instant,
}

impl RawWriter {
    pub fn create(dir: &Path) -> Result<Self> {
        let path = dir.join(RAW_FILE);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            path,
            file,
            buf: Vec::with_capacity(BUFFER + 4096),
            saved: 0,
            records: 0,
            failure: None,
            failure_reported: false,
            last_flush: Instant::now(),
        })
    }

    /// Appends one record. Returns the records that could not be saved
    /// (length-prefixed, as [`for_each_in`] reads them) once writing failed.
    pub fn append(&mut self, record: &[u8]) -> Option<Vec<u8>> {
        let start = self.buf.len();
        self.buf
            .extend_from_slice(&(record.len() as u32).to_ne_bytes());
        self.buf.extend_from_slice(record);
        if self.failure.is_some() {
            return Some(self.buf.split_off(start));
        }
        self.records += 1;
        (self.buf.len() >= BUFFER)
            .then(|| self.write_out())
            .flatten()
    }

    /// Writes the buffer. On a failure the whole records that reached the
    /// file stay (a disk that fills mid-buffer keeps what it took), the
    /// file is cut after them, and the rest come back, unsaved.
    fn write_out(&mut self) -> Option<Vec<u8>> {
        self.last_flush = Instant::now();
        let mut done = 0;
        let failure = loop {
            if done == self.buf.len() {
                self.saved += done as u64;
                self.buf.clear();
                return None;
            }
            match self
                .file
                .write_at(&self.buf[done..], self.saved + done as u64)
            {
                Ok(0) => break std::io::Error::from(std::io::ErrorKind::WriteZero),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break e,
            }
        };
        let whole = whole_records_len(&self.buf[..done]);
        self.saved += whole as u64;
        let _ = self.file.set_len(self.saved);
        let unsaved = self.buf.split_off(whole);
        self.records -= records_in(&unsaved);
        self.buf.clear();
        self.failure = Some(failure);
        Some(unsaved)
    }

    /// Writes out what is buffered once a second, so a kill that no handler
    /// sees loses at most that much. Returns records that could not be
    /// saved, and the first write failure, once, for a warning.
    pub fn checkpoint(&mut self) -> (Option<Vec<u8>>, Option<String>) {
        let unsaved = (self.failure.is_none() && self.last_flush.elapsed() >= FLUSH_INTERVAL)
            .then(|| self.write_out())
            .flatten();
        (unsaved, self.new_failure())
    }

    fn new_failure(&mut self) -> Option<String> {
        if self.failure_reported {
            return None;
        }
        let e = self.failure.as_ref()?;
        self.failure_reported = true;
        Some(format!("writing {}: {e}", self.path.display()))
    }

    /// Writes out the rest. Returns records that could not be saved, and
    /// whether any failed to be.
    pub fn finish(mut self) -> (Option<Vec<u8>>, Option<String>) {
        let unsaved = if self.failure.is_none() && !self.buf.is_empty() {
            self.write_out()
        } else {
            None
        };
        let failed = self.failure.as_ref().map(|e| {
            format!(
                "writing {} failed after {} records were saved ({e}); the rest were counted in memory",
                self.path.display(),
                self.records
            )
        });
        (unsaved, failed)
    }
}

/// A panic unwinding through the recording still saves what is buffered,
/// for `spawnprof report` to convert.
impl Drop for RawWriter {
    fn drop(&mut self) {
        if self.failure.is_none() && !self.buf.is_empty() {
            let _ = self.write_out();
        }
    }
}

/// Calls `f` with each record of `spawns.raw` in order. A record cut short
/// at the end (a kill mid-write) is left out; returns (records read, bytes
/// left out).
pub fn for_each_raw(dir: &Path, f: impl FnMut(&[u8]) -> Result<()>) -> Result<(u64, u64)> {
    let path = dir.join(RAW_FILE);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    for_each_in(BufReader::with_capacity(1 << 20, file), f)
}

/// [`for_each_raw`] on any reader of length-prefixed records.
pub fn for_each_in(
    mut input: impl std::io::Read,
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<(u64, u64)> {
    let (mut n, mut buf) = (0u64, Vec::with_capacity(1024));
    loop {
        let mut len = [0u8; 4];
        match read_full(&mut input, &mut len)? {
            0 => return Ok((n, 0)),
            4 => {}
            cut => return Ok((n, cut as u64)),
        }
        let len = u32::from_ne_bytes(len) as usize;
        buf.resize(len, 0);
        let got = read_full(&mut input, &mut buf)?;
        if got < len {
            return Ok((n, 4 + got as u64));
        }
        f(&buf)?;
        n += 1;
    }
}

/// The length of the whole length-prefixed records at the start of `buf`.
fn whole_records_len(buf: &[u8]) -> usize {
    let mut at = 0;
    while let Some(prefix) = buf.get(at..at + 4) {
        let next = at + 4 + u32::from_ne_bytes(prefix.try_into().unwrap_or([0; 4])) as usize;
        if next > buf.len() {
            break;
        }
        at = next;
    }
    at
}

/// How many length-prefixed records `buf` holds.
fn records_in(buf: &[u8]) -> u64 {
    for_each_in(buf, |_| Ok(())).map_or(0, |(n, _)| n)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl std::io::Read, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..])? {
            0 => break,
            k => got += k,
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spawnprof-raw-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn records_read_back_in_order_and_a_cut_one_is_left_out() {
        let dir = temp_dir("order");
        let mut w = RawWriter::create(&dir).unwrap();
        for i in 0..100u8 {
            assert!(w.append(&vec![i; usize::from(i) + 1]).is_none());
        }
        assert_eq!(w.finish(), (None, None));
        let mut seen = Vec::new();
        let (n, cut) = for_each_raw(&dir, |r| {
            seen.push((r[0], r.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!((n, cut), (100, 0));
        assert!(
            seen.iter()
                .enumerate()
                .all(|(i, &(b, len))| b as usize == i && len == i + 1)
        );
        // A kill mid-write: the last record's length says more than is there.
        let path = dir.join(RAW_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 7).unwrap();
        let (n, cut) = for_each_raw(&dir, |_| Ok(())).unwrap();
        assert_eq!(n, 99);
        assert_eq!(cut, 4 + 100 - 7);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn whole_records_are_told_from_a_cut_one() {
        let mut buf = Vec::new();
        for r in [&b"ab"[..], b"cde"] {
            buf.extend_from_slice(&(r.len() as u32).to_ne_bytes());
            buf.extend_from_slice(r);
        }
        assert_eq!(whole_records_len(&buf), 13);
        assert_eq!(whole_records_len(&buf[..12]), 6);
        assert_eq!(whole_records_len(&buf[..5]), 0);
        assert_eq!(records_in(&buf), 2);
    }

    #[test]
    fn a_failed_write_hands_back_every_unsaved_record_and_leaves_whole_ones() {
        let dir = temp_dir("full");
        let mut w = RawWriter::create(&dir).unwrap();
        assert!(w.append(b"first").is_none());
        assert_eq!(w.write_out(), None);
        // A file that can no longer be written (as on a full disk).
        w.file = File::open(dir.join(RAW_FILE)).unwrap();
        assert!(w.append(b"second").is_none());
        let unsaved = w.write_out().expect("the buffer comes back");
        let mut back = Vec::new();
        for_each_in(&unsaved[..], |r| {
            back.push(r.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(back, [b"second".to_vec()]);
        let after = w.append(b"third").expect("from now on, handed back");
        assert_eq!(after.len(), 4 + 5);
        assert!(w.checkpoint().1.is_some(), "the failure is reported once");
        assert!(w.checkpoint().1.is_none());
        let mut kept = Vec::new();
        for_each_raw(&dir, |r| {
            kept.push(r.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(kept, [b"first".to_vec()]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
