//! Command-line interface.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// spawnprof: where the time goes when processes are created.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record every spawn of a command (`-- CMD`) or a running process (`-p PID`).
    Record(RecordArgs),
    /// Show, for this kernel, how each stage would be observed and why.
    Probes(ProbeArgs),
    /// Re-render the reports of a saved recording.
    Report {
        /// A directory written by `spawnprof record`.
        dir: PathBuf,
    },
}

#[derive(Debug, Args, Clone)]
pub struct ProbeArgs {
    /// Do not use fentry/fexit (falls back to kprobes, then tracepoints).
    #[arg(long)]
    pub no_fentry: bool,
    /// Do not use kprobes/kretprobes.
    #[arg(long)]
    pub no_kprobe: bool,
    /// Ring-buffer size for marks (power of two), e.g. 16M.
    #[arg(long, default_value = "16M", value_name = "SIZE")]
    pub ring_buffer: String,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Trace this running process (all its threads) instead of a command.
    #[arg(short, long, value_name = "PID", conflicts_with = "command")]
    pub pid: Option<u32>,
    /// With -p: also record the spawns of the target's descendants.
    #[arg(long)]
    pub follow: bool,
    /// Stop after this long (e.g. 10s, 500ms, 2m).
    #[arg(short, long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Output directory (default: spawnprof-<timestamp>).
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Overwrite a recording already in the output directory.
    #[arg(long)]
    pub force: bool,
    /// Rows of the per-process table to print.
    #[arg(long, default_value_t = 40, value_name = "N")]
    pub rows: usize,
    #[command(flatten)]
    pub probes: ProbeArgs,
    /// The command to run and trace, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}
