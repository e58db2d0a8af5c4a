//! An apt configuration of vm-test's own, under target/vm-cache/apt: the
//! Debian suites the guest kernels come from are indexed there and nowhere
//! else, so the machine's sources, lists and settings stay as they are.
//! `APT_CONFIG` points apt at it; it reads no file under /etc/apt.
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};

use super::files::{create_dir, find_entry, remove_dir_if_exists};
use crate::cmd::run_checked;

/// Lists older than this are refreshed: the security suites drop superseded
/// kernels from their pool within days.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Debian's keyring, which signs every suite used here.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

pub struct Apt {
    dir: PathBuf,
    conf: PathBuf,
    /// Touched after each successful `apt-get update`.
    stamp: PathBuf,
}

impl Apt {
    /// Writes the configuration for `sources` ((archive, suite) → Debian
    /// architectures) and brings the lists up to date when they are missing,
    /// stale or for other sources. An update that fails leaves the old lists
    /// (or none) to work with, and says so.
    pub fn new(cache: &Path, sources: &BTreeMap<(&str, &str), Vec<&str>>) -> Result<Apt> {
        let dir = cache.join("apt");
        for sub in ["etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d"] {
            create_dir(&dir.join(sub))?;
        }
        create_dir(&dir.join("state/lists/partial"))?;
        create_dir(&dir.join("cache/archives/partial"))?;
        let status = dir.join("state/status");
        if !status.exists() {
            write(&status, "")?;
        }
        let conf = dir.join("apt.conf");
        write(&conf, &config(&dir))?;
        let apt = Apt {
            stamp: dir.join("state/updated"),
            conf,
            dir,
        };
        let list = sources_list(sources);
        let sources_path = apt.dir.join("etc/sources.list");
        let changed = fs::read_to_string(&sources_path).ok().as_deref() != Some(list.as_str());
        if changed {
            write(&sources_path, &list)?;
        }
        if (changed || !apt.fresh())
            && let Err(e) = apt.update()
        {
            println!("vm-test: warning: {e:#}; going on with the lists (and kernels) cached");
        }
        Ok(apt)
    }

    fn fresh(&self) -> bool {
        fs::metadata(&self.stamp)
            .and_then(|m| m.modified())
            .is_ok_and(|t| {
                SystemTime::now()
                    .duration_since(t)
                    .is_ok_and(|age| age < MAX_AGE)
            })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("APT_CONFIG", &self.conf)
            .env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }

    pub fn update(&self) -> Result<()> {
        println!(
            "vm-test: apt-get update (own lists in {})",
            self.dir.display()
        );
        run_checked(self.command("apt-get").args(["update", "-q"]))
            .context("apt-get update of vm-test's own lists failed (network?)")?;
        write(&self.stamp, "")
    }

    /// Package names matching the POSIX `regex`.
    pub fn search(&self, regex: &str) -> Result<Vec<String>> {
        let out = run_checked(
            self.command("apt-cache")
                .args(["search", "--names-only", regex]),
        )?;
        Ok(out
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_string)
            .collect())
    }

    /// Downloads `package` (`name:arch`) and unpacks it into `into`, which
    /// is replaced.
    pub fn unpack(&self, package: &str, into: &Path) -> Result<()> {
        let work = into.with_extension("download");
        remove_dir_if_exists(&work)?;
        create_dir(&work)?;
        run_checked(
            self.command("apt-get")
                .args(["download", "-q", package])
                .current_dir(&work),
        )?;
        let deb = find_entry(&work, |name| name.ends_with(".deb"))?
            .ok_or_else(|| anyhow!("apt-get download left no .deb in {}", work.display()))?;
        remove_dir_if_exists(into)?;
        run_checked(Command::new("dpkg").arg("-x").arg(&deb).arg(into))?;
        remove_dir_if_exists(&work)
    }
}

/// apt.conf: every directory apt reads or writes is under `dir`; both
/// architectures are known; only the package indexes are fetched, and
/// kept compressed.
fn config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"Dir::Etc "{d}/etc";
Dir::Etc::main "{d}/etc/apt.conf";
Dir::Etc::parts "{d}/etc/apt.conf.d";
Dir::Etc::sourcelist "{d}/etc/sources.list";
Dir::Etc::sourceparts "{d}/etc/sources.list.d";
Dir::Etc::preferences "{d}/etc/preferences";
Dir::Etc::preferencesparts "{d}/etc/preferences.d";
Dir::State "{d}/state";
Dir::State::status "{d}/state/status";
Dir::Cache "{d}/cache";
APT::Architecture "amd64";
APT::Architectures {{ "amd64"; "arm64"; }};
Acquire::Languages "none";
Acquire::GzipIndexes "true";
APT::Sandbox::User "root";
"#
    )
}

/// One `deb` line per suite, with only the architectures it is used for.
fn sources_list(sources: &BTreeMap<(&str, &str), Vec<&str>>) -> String {
    sources
        .iter()
        .map(|((archive, suite), arches)| {
            format!(
                "deb [arch={} signed-by={KEYRING}] {archive} {suite} main\n",
                arches.join(",")
            )
        })
        .collect()
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
