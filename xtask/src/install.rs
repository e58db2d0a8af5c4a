//! Installing spawnprof like a tool, for people who are not Rust
//! developers: `cargo xtask install` puts the two binaries into
//! /usr/local/bin, and `cargo xtask deb` makes a Debian package of them
//! with cargo-deb (installed at a pinned version when missing).
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;

/// The binaries a user runs: spawnprof finds the reference spawner next
/// to itself, so they are installed side by side.
pub const BINARIES: [&str; 2] = ["spawnprof", "spawnprof-spawner"];

/// The cargo-deb release `deb` uses (its options and metadata keys were
/// read at this version).
const CARGO_DEB_VERSION: &str = "3.8.0";

/// Builds the release binaries and copies them into `prefix/bin`.
pub fn install(prefix: &Path) -> Result<()> {
    crate::build(true, &["spawnprof"])?;
    let bin = prefix.join("bin");
    let release = cmd::target_dir().join("release");
    for name in BINARIES {
        let mut install = cmd::as_root("install")?;
        install
            .args(["-D", "-m", "755"])
            .arg(release.join(name))
            .arg(bin.join(name));
        cmd::run(&mut install)
            .with_context(|| format!("installing {name} into {}", bin.display()))?;
    }
    println!(
        "installed {} into {}; run `sudo spawnprof record -- CMD`. To remove them: sudo rm {}",
        BINARIES.join(" and "),
        bin.display(),
        BINARIES
            .map(|b| bin.join(b).display().to_string())
            .join(" ")
    );
    Ok(())
}

/// Builds the release binaries and packs them into a .deb; returns its path.
pub fn deb() -> Result<PathBuf> {
    ensure_cargo_deb()?;
    crate::build(true, &["spawnprof"])?;
    let out = cmd::target_dir().join("debian");
    let mut cargo = cmd::cargo([
        "deb",
        "-p",
        "spawnprof",
        "--no-build",
        "--strip",
        "--output",
    ]);
    cargo.arg(&out);
    let text = cmd::run_checked(&mut cargo).context("cargo deb")?;
    // cargo-deb prints the path of the package it wrote, last.
    let path = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .context("cargo deb did not say which .deb it wrote")?;
    println!("{}", path.display());
    println!(
        "install it with: sudo dpkg -i {}; remove it with: sudo dpkg -r spawnprof",
        path.display()
    );
    Ok(path)
}

/// Installs cargo-deb at [`CARGO_DEB_VERSION`] unless that is the one on
/// PATH.
fn ensure_cargo_deb() -> Result<()> {
    let have = cmd::stdout_of("cargo", &["deb", "--version"]).unwrap_or_default();
    if have
        .split_whitespace()
        .any(|w| w.trim_start_matches('v') == CARGO_DEB_VERSION)
    {
        return Ok(());
    }
    println!("deb: installing cargo-deb {CARGO_DEB_VERSION}");
    let mut install = Command::new("cargo");
    install.args([
        "install",
        &format!("cargo-deb@{CARGO_DEB_VERSION}"),
        "--locked",
    ]);
    cmd::run(&mut install).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}; install it by hand: cargo install cargo-deb@{CARGO_DEB_VERSION} --locked"
        )
    })?;
    if !cmd::stdout_of("cargo", &["deb", "--version"])
        .is_some_and(|v| v.contains(CARGO_DEB_VERSION))
    {
        bail!(
            "cargo-deb {CARGO_DEB_VERSION} is still not on PATH after cargo install (is ~/.cargo/bin on PATH?)"
        );
    }
    Ok(())
}
