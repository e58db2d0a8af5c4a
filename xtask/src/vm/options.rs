//! vm-test's command line and the paths it works in.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, bail, ensure};

use crate::cmd;

/// Default limit for the whole VM run; a normal full run takes well under a minute.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

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
}

const USAGE: &str = "vm-test arguments: [--smoke | --shell CMD [--shell CMD ...]] \
                     [--timeout SECS] [--debug | --release] [--verbose]";

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut opts = Options {
            mode: Mode::Full,
            profile: Profile::Auto,
            timeout: DEFAULT_TIMEOUT,
            verbose: false,
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
                "--timeout" => {
                    let secs = it
                        .next()
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| anyhow!("--timeout needs a number of seconds\n{USAGE}"))?;
                    opts.timeout = Duration::from_secs(secs);
                }
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
}

/// Everything downloaded or built lives in `target/vm-cache/`.
pub struct Paths {
    pub target: PathBuf,
    pub cache: PathBuf,
    /// The serial console of the last run.
    pub log: PathBuf,
}

impl Paths {
    pub fn new() -> Paths {
        let target = cmd::target_dir();
        let cache = target.join("vm-cache");
        let log = cache.join("last-run.log");
        Paths { target, cache, log }
    }
}
