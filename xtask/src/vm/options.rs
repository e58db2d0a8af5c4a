//! vm-test's command line and the paths it works in.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, bail, ensure};

use super::guests::{GUESTS, Guest};
use crate::cmd;

/// Default limit for each guest's run; a full run takes one to three
/// minutes under TCG, with another guest booting on the other core.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub enum Mode {
    /// The real test: both tiers, with host-side assertions.
    Full,
    /// Harness self-check that needs nothing from `spawnprof record`.
    Smoke,
    /// Arbitrary commands, for debugging in the VM.
    Shell(Vec<String>),
}

#[derive(Debug, Clone, Copy)]
pub enum Profile {
    /// Whichever of target/release and target/debug was built last.
    Auto,
    Debug,
    Release,
}

#[derive(Debug)]
pub struct Options {
    pub mode: Mode,
    pub profile: Profile,
    pub timeout: Duration,
    pub verbose: bool,
    /// The guests to boot, by name; empty for all of them.
    pub kernels: Vec<String>,
    /// Guests booted at once.
    pub jobs: usize,
}

const USAGE: &str = "vm-test arguments: [--smoke | --shell CMD [--shell CMD ...]] \
                     [--kernel NAME ...] [--jobs N] [--timeout SECS] [--debug | --release] \
                     [--verbose]";

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut opts = Options {
            mode: Mode::Full,
            profile: Profile::Auto,
            timeout: DEFAULT_TIMEOUT,
            verbose: false,
            kernels: Vec::new(),
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let mut shell = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--smoke" => opts.mode = Mode::Smoke,
                "--shell" => shell.push(
                    it.next()
                        .ok_or_else(|| anyhow!("--shell needs a command\n{USAGE}"))?
                        .clone(),
                ),
                "--timeout" => opts.timeout = Duration::from_secs(number(it.next(), arg)?),
                "--jobs" | "-j" => opts.jobs = number(it.next(), arg)?.max(1) as usize,
                "--kernel" => opts.kernels.push(
                    it.next()
                        .ok_or_else(|| anyhow!("--kernel needs a name\n{USAGE}"))?
                        .clone(),
                ),
                "--debug" => opts.profile = Profile::Debug,
                "--release" => opts.profile = Profile::Release,
                "--verbose" | "-v" => opts.verbose = true,
                "--help" | "-h" => bail!("{USAGE}"),
                other => bail!("vm-test: unknown argument {other:?}\n{USAGE}"),
            }
        }
        if !shell.is_empty() {
            ensure!(
                !matches!(opts.mode, Mode::Smoke),
                "--smoke and --shell exclude each other\n{USAGE}"
            );
            opts.mode = Mode::Shell(shell);
        }
        Ok(opts)
    }

    /// The guests `--kernel` selects, in the matrix's order.
    pub fn guests(&self) -> Result<Vec<&'static Guest>> {
        let names: Vec<&str> = GUESTS.iter().map(|g| g.name).collect();
        for k in &self.kernels {
            ensure!(
                names.contains(&k.as_str()),
                "vm-test: no kernel {k:?}; the kernels are {}",
                names.join(", ")
            );
        }
        Ok(GUESTS
            .iter()
            .filter(|g| self.kernels.is_empty() || self.kernels.iter().any(|k| k == g.name))
            .collect())
    }
}

fn number(value: Option<&String>, option: &str) -> Result<u64> {
    value
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{option} needs a number\n{USAGE}"))
}

/// Everything downloaded or built lives in `target/vm-cache/`.
pub struct Paths {
    pub target: PathBuf,
    pub cache: PathBuf,
}

impl Paths {
    pub fn new() -> Paths {
        let target = cmd::target_dir();
        let cache = target.join("vm-cache");
        Paths { target, cache }
    }

    /// A guest's own directory: its initrd and the serial console of its
    /// last run (`console.log`).
    pub fn guest(&self, guest: &Guest) -> PathBuf {
        self.cache.join(guest.name)
    }
}
