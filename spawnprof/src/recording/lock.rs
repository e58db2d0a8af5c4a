//! The lock a recording holds while it is written.
use std::fs::File;
use std::path::Path;

use anyhow::{Context as _, Result};

use super::SPAWNS_FILE;

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
