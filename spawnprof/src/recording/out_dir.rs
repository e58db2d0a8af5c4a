//! The output directory: checked before any probe loads, removed again if
//! nothing was written, and handed to the sudo user (only what spawnprof
//! created) at the end.
use std::{
    collections::HashSet,
    ffi::OsString,
    fs::{self, File},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use super::{SPAWNS_FILE, lock::RecordingLock};

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
