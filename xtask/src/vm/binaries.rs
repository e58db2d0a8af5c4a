//! The spawnprof binaries the guests run: the host's build from target/, and
//! for other architectures a cross build with the same profile.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, ensure};

use super::guests::Arch;
use super::options::{Paths, Profile};
use crate::cmd;

#[derive(Clone)]
pub struct Binaries {
    pub arch: Arch,
    pub spawnprof: PathBuf,
    /// The reference workload, when it is built and understands its flags.
    pub spawner: Option<PathBuf>,
}

/// The host's binaries: of the allowed profiles, the one built last (a
/// stale release build must not stand in for the debug build just made, or
/// the reverse), building spawnprof when there is none.
pub fn host_binaries(paths: &Paths, profile: Profile) -> Result<Binaries> {
    let dir = match newest_build(&paths.target, profile) {
        Some(dir) => dir,
        None => {
            // The callers normally build first; this keeps a bare
            // `cargo xtask vm-test` on a fresh checkout working too.
            println!("vm-test: spawnprof is not built; running cargo build -p spawnprof");
            cargo_build(None, matches!(profile, Profile::Release))?;
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
    Ok(Binaries {
        arch: Arch::Amd64,
        spawnprof,
        spawner,
    })
}

/// `host` cross-built for `arch` with the same profile: the Rust target
/// through rustup, the linker from Debian (.cargo/config.toml names it).
pub fn cross_binaries(paths: &Paths, host: &Binaries, arch: Arch) -> Result<Binaries> {
    let Some(target) = arch.cross_target() else {
        return Ok(host.clone());
    };
    ensure_rust_target(target)?;
    let profile_dir = host
        .spawnprof
        .parent()
        .and_then(Path::file_name)
        .ok_or_else(|| anyhow!("{} is not in a profile dir", host.spawnprof.display()))?;
    println!(
        "vm-test: building spawnprof for {target} ({})",
        profile_dir.to_string_lossy()
    );
    cargo_build(Some(target), profile_dir == "release")?;
    let dir = paths.target.join(target).join(profile_dir);
    let spawner = dir.join("spawnprof-spawner");
    Ok(Binaries {
        arch,
        spawnprof: dir.join("spawnprof"),
        // It cannot run here to show its --help: the host's build stands for it.
        spawner: host.spawner.as_ref().map(|_| spawner),
    })
}

fn cargo_build(target: Option<&str>, release: bool) -> Result<()> {
    let mut build = cmd::cargo(["build", "-p", "spawnprof"]);
    if let Some(target) = target {
        build.args(["--target", target]);
    }
    if release {
        build.arg("--release");
    }
    cmd::run(&mut build).context("building spawnprof for the VM")
}

/// Adds the Rust standard library for `target` to the toolchain the
/// workspace builds with, unless it is there.
fn ensure_rust_target(target: &str) -> Result<()> {
    let installed = cmd::stdout_of("rustup", &["target", "list", "--installed"])
        .ok_or_else(|| anyhow!("`rustup target list` failed: is rustup installed?"))?;
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    println!("vm-test: rustup target add {target}");
    let mut add = Command::new("rustup");
    add.args(["target", "add", target])
        .current_dir(cmd::repo_root());
    cmd::run(&mut add)
}

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

/// Both binaries exist (a cross build that failed to link leaves none).
pub fn check_built(bins: &Binaries) -> Result<()> {
    for path in std::iter::once(&bins.spawnprof).chain(&bins.spawner) {
        ensure!(path.is_file(), "{} was not built", path.display());
    }
    Ok(())
}
