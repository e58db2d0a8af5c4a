//! The spawnprof binaries the guest runs, taken from target/.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow};

use super::options::{Paths, Profile};
use crate::cmd;

pub struct Binaries {
    pub spawnprof: PathBuf,
    /// The reference workload, when it is built and understands its flags.
    pub spawner: Option<PathBuf>,
}

pub fn locate_binaries(paths: &Paths, profile: Profile) -> Result<Binaries> {
    let dir = match newest_build(&paths.target, profile) {
        Some(dir) => dir,
        None => {
            // The callers normally build first; this keeps a bare
            // `cargo xtask vm-test` on a fresh checkout working too.
            println!("vm-test: spawnprof is not built; running cargo build -p spawnprof");
            let mut build = cmd::cargo(["build", "-p", "spawnprof"]);
            if matches!(profile, Profile::Release) {
                build.arg("--release");
            }
            cmd::run(&mut build).context("building spawnprof for the VM")?;
            newest_build(&paths.target, profile).ok_or_else(|| {
                anyhow!(
                    "cargo build -p spawnprof left no spawnprof in {}",
                    paths.target.display()
                )
            })?
        }
    };
    let spawnprof = dir.join("spawnprof");
    let spawner = Some(dir.join("spawnprof-spawner")).filter(|p| spawner_is_usable(p));
    println!(
        "vm-test: testing {}{}",
        spawnprof.display(),
        match &spawner {
            Some(p) => format!(" with workload {}", p.display()),
            None => " (spawnprof-spawner not usable yet: busybox loop workload)".to_string(),
        }
    );
    Ok(Binaries { spawnprof, spawner })
}

/// Of the profile directories allowed, the one whose spawnprof was built
/// last: a stale release build must not stand in for the debug build just
/// made (or the reverse).
fn newest_build(target: &Path, profile: Profile) -> Option<PathBuf> {
    let dirs: &[&str] = match profile {
        Profile::Auto => &["release", "debug"],
        Profile::Debug => &["debug"],
        Profile::Release => &["release"],
    };
    dirs.iter()
        .map(|d| target.join(d))
        .filter_map(|dir| {
            let built = std::fs::metadata(dir.join("spawnprof"))
                .ok()
                .filter(|m| m.is_file())?
                .modified()
                .ok()?;
            Some((built, dir))
        })
        .max_by_key(|(built, _)| *built)
        .map(|(_, dir)| dir)
}

/// The spawner may still be a stub that accepts anything and does nothing; a
/// usable one documents `--method` in its help.
fn spawner_is_usable(path: &Path) -> bool {
    path.is_file()
        && Command::new(path)
            .arg("--help")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|out| {
                out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--method")
            })
}
