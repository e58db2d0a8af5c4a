//! Command-line interface.
use std::path::PathBuf;

use crate::units::parse_u64_named;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// A value on the command line that cannot work, found after clap parsed
/// it (a zero duration, a stage that does not exist, a list entry that is
/// not a method): spawnprof exits 2 for it, as clap does for what it finds
/// itself, so a script can tell a bad invocation from a failure (1).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Turns a validation error into a [`UsageError`], keeping its whole message.
pub fn usage<T>(checked: anyhow::Result<T>) -> anyhow::Result<T> {
    checked.map_err(|e| UsageError(format!("{e:#}")).into())
}

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
    #[command(
        after_help = "Exit status: CMD's own (128+N if a signal N killed it; 127 if CMD was not \
found, 126 if it could not be run); 124 when --duration ended CMD (it gets SIGTERM, as with \
`timeout`); 0 with -p; 130 when Ctrl-C, SIGTERM or SIGHUP stopped the recording (CMD gets \
SIGTERM if it is still running; what was recorded is written; a second Ctrl-C quits at once); \
1 on an error, whose message names the remedy; 2 on a bad command line."
    )]
    Record(RecordArgs),
    /// Show, for this kernel, how each stage would be observed and why.
    Probes(ProbeArgs),
    /// Profile this node: run the reference spawner through sweeps with the probes attached.
    #[command(
        after_help = "Exit status: 0; 130 when Ctrl-C, SIGTERM or SIGHUP stopped the sweep (the \
configurations that finished are written, marked interrupted); 1 on an error; 2 on a bad command line."
    )]
    Bench(BenchArgs),
    /// Re-render the reports of a saved recording.
    Report {
        /// A directory written by `spawnprof record`.
        dir: PathBuf,
    },
    /// Compare two recordings, or two benches (node against node): side by side, with differential flamegraphs.
    Diff {
        /// The baseline recording, or bench directory (node A).
        a: PathBuf,
        /// The recording (or bench directory: node B) compared with it.
        b: PathBuf,
        /// Where diff.svg, diff-a.svg and diff.folded go.
        #[arg(short, long, value_name = "DIR", default_value = "spawnprof-diff")]
        output: PathBuf,
    },
    /// Compare the benches of many nodes (a fleet): fleet.html and fleet.json, one row per
    /// node, outliers flagged with the node fact that explains them.
    Compare(CompareArgs),
    /// Serve per-stage spawn latency histograms to Prometheus, always on (docs/SERVE.md).
    #[command(
        after_help = "Endpoints: /metrics (Prometheus text format), /ready (200 once every probe \
is attached). Nothing per spawn leaves the kernel: each finished spawn is added to histograms in \
BPF maps, which a scrape reads. Stops on SIGTERM, SIGINT or SIGHUP with every probe detached \
(exit 0). Exit status: 1 on an error, whose message names the remedy; 2 on a bad command line."
    )]
    Serve(ServeArgs),
    /// A live view of spawn latencies per program, refreshed every second (q quits).
    Top(TopArgs),
    /// Time rendering every report of a synthetic recording (docs/BENCHMARKS.md).
    BenchReport {
        #[arg(long, default_value_t = 1_000_000, value_parser = parse_report_spawns, allow_negative_numbers = true)]
        spawns: usize,
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
    /// Do not use raw tracepoints where a classic tracepoint does the same
    /// job (slower: the kernel builds a record first).
    #[arg(long)]
    pub no_raw_tracepoint: bool,
    /// Ring-buffer size for the kernel's records (power of two), e.g. 16M.
    #[arg(
        long,
        default_value = "16M",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    pub ring_buffer: String,
    /// Do not attach this optional stage (repeatable), e.g. page_faults or
    /// first_run: it is then reported unavailable.
    #[arg(long = "skip-stage", value_name = "STAGE")]
    pub skip_stages: Vec<String>,
    /// Leave out every probe that would fire on each mmap lock, page fault
    /// or context switch of the machine (the tracepoint tier of dup_mmap,
    /// mm_lock_wait, page_faults and first_run). On
    /// kernels with fentry or kprobes those stages use per-spawn functions
    /// and stay; on tracepoint-only kernels they are reported left out.
    #[arg(long)]
    pub low_overhead: bool,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Trace this running process (all its threads) instead of a command.
    #[arg(short, long, value_name = "PID", conflicts_with = "command", value_parser = parse_pid, allow_negative_numbers = true)]
    pub pid: Option<u32>,
    /// With -p: also record the spawns of the target's descendants.
    #[arg(long)]
    pub follow: bool,
    /// Stop after this long (e.g. 10s, 500ms, 2m).
    #[arg(short, long, value_name = "DURATION", allow_hyphen_values = true)]
    pub duration: Option<String>,
    /// Output directory (default: spawnprof-<timestamp>).
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Overwrite a recording already in the output directory.
    #[arg(long)]
    pub force: bool,
    /// Record each exec's argument strings (first 256 bytes). Off by
    /// default: arguments can hold secrets.
    #[arg(long)]
    pub capture_args: bool,
    /// Record each exec's environment strings (first 256 bytes). Off by
    /// default: environments hold secrets.
    #[arg(long)]
    pub capture_env: bool,
    /// On-CPU stack sampling frequency per CPU for stacks.svg, e.g. 999.
    /// Off (0) by default: at 999 Hz it costs about 6 µs per spawn.
    #[arg(long, value_name = "HZ", value_parser = parse_sample_hz, allow_negative_numbers = true)]
    pub sample_hz: Option<u64>,
    /// Measure spawnprof's own cost: each probe's in-kernel run time (the
    /// kernel's BPF statistics) and the reader's CPU time, per spawn. Adds a
    /// little cost itself (two clock reads per probe run).
    #[arg(long)]
    pub probe_cost: bool,
    /// Do not draw the live count on the terminal (it takes the bottom row
    /// while a command runs; leave it to full-screen commands).
    #[arg(long)]
    pub no_live: bool,
    /// Rows of the per-process table to print.
    #[arg(long, default_value_t = 40, value_name = "N", value_parser = parse_rows, allow_negative_numbers = true)]
    pub rows: usize,
    #[command(flatten)]
    pub probes: ProbeArgs,
    /// The command to run and trace, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// What `serve`'s and `top`'s comm label names (`--label-by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LabelBy {
    Parent,
    Exec,
}

/// What `serve` and `top` share: which processes they count (every one by
/// default), how they label them, and how they time a first run.
#[derive(Debug, Args, Clone)]
pub struct ScopeArgs {
    /// Count every process's spawns (the default).
    #[arg(long, conflicts_with_all = ["cgroup", "pid"])]
    pub all: bool,
    /// Count the spawns of the processes in this cgroup v2 directory and
    /// below it (a systemd unit or a container), e.g.
    /// /sys/fs/cgroup/system.slice/redis.service.
    #[arg(long, value_name = "PATH", conflicts_with = "pid")]
    pub cgroup: Option<PathBuf>,
    /// Count the spawns of this running process.
    #[arg(short, long, value_name = "PID", value_parser = parse_pid, allow_negative_numbers = true)]
    pub pid: Option<u32>,
    /// With -p: its descendants' spawns too.
    #[arg(long, requires = "pid")]
    pub follow: bool,
    /// Distinct comm labels kept; the spawns of later ones are counted as
    /// `other` (and spawnprof_comm_labels_capped says so).
    #[arg(long, default_value_t = 32, value_name = "N", value_parser = parse_top_k, allow_negative_numbers = true)]
    pub top_k: u32,
    /// Give a comm (or cgroup) label back once its name has spawned
    /// nothing for this long while others are counted as `other`, so the
    /// labels go to the names that spawn; `off` keeps the first ones.
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = parse_label_idle)]
    pub label_idle: std::time::Duration,
    /// What the comm label (each `top` row) names: `parent`, the spawning
    /// process; `exec`, the program the child exec'd (its name after the
    /// exec, 15 characters), or the spawning process for a child that does
    /// not exec (threads, fork-only workers).
    #[arg(long, value_enum, default_value_t = LabelBy::Parent, value_name = "WHAT")]
    pub label_by: LabelBy,
    /// Label each series (each `top` row) by the spawning parent's cgroup too (a systemd
    /// unit or a container), as its path below the cgroup2 mount.
    #[arg(long)]
    pub cgroup_label: bool,
    /// With --cgroup-label: distinct cgroups kept; the spawns of later
    /// ones are labelled `other` (spawnprof_cgroup_labels_capped says so).
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = parse_cgroup_k, allow_negative_numbers = true, requires = "cgroup_label")]
    pub cgroup_k: u32,
    /// Time each child's first run at its context switch, as `record`
    /// does, where the kernel has no per-task probe for it (tracepoint-only
    /// kernels). By default the first run comes from the wait the scheduler
    /// counted, read at the child's return from the clone: no program runs
    /// on every context switch of the machine (one costs about 45 ns a
    /// switch here, 4% of a pipe ping-pong).
    #[arg(long)]
    pub first_run_per_switch: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to serve on.
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub probes: ProbeArgs,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1, value_name = "S", value_parser = parse_interval, allow_negative_numbers = true)]
    pub interval: u64,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub probes: ProbeArgs,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A short sweep (a minute or two) instead of the full one (about 5 minutes on 2 cores).
    #[arg(long)]
    pub quick: bool,
    /// Spawn methods for the method × RSS experiment, comma-separated
    /// (fork-exec, vfork-exec, posix-spawn, clone3-vfork, std, std-env, std-fork, zygote, tokio-…).
    #[arg(long, value_name = "LIST")]
    pub methods: Option<String>,
    /// Resident sizes for the method × RSS experiment, e.g. 0,256M,1G,4G.
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub rss: Option<String>,
    /// Extra environment variable counts, e.g. 0,50,250,1000.
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub env: Option<String>,
    /// Nonexistent PATH entries before the real ones, e.g. 0,14.
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub path_misses: Option<String>,
    /// Run only these experiments, comma-separated: method-rss,
    /// minimal-child, placement, thp, env, path, tokio, fork-chain.
    #[arg(long, value_name = "LIST")]
    pub experiments: Option<String>,
    /// Spawns per configuration (overrides the per-experiment defaults).
    #[arg(long, value_name = "N", value_parser = parse_bench_count, allow_negative_numbers = true)]
    pub count: Option<u64>,
    /// Skip the with/without-probes overhead measurement.
    #[arg(long)]
    pub no_overhead: bool,
    /// Output directory (default: spawnprof-bench-<timestamp>). `%n` stands for the node's
    /// name and `%%` for `%`: `srun spawnprof bench -o shared/%n` gives each node its own.
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Overwrite a bench already in the output directory.
    #[arg(long)]
    pub force: bool,
    /// The node's name in a fleet report (default: Slurm's name for the node, else the host
    /// name), for nodes whose host name does not tell them apart (containers, pods).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    #[command(flatten)]
    pub probes: ProbeArgs,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Bench directories (written by `spawnprof bench -o DIR`), or directories holding them.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where fleet.html, fleet.json, the charts and the diffs go.
    #[arg(short, long, value_name = "DIR", default_value = "spawnprof-fleet")]
    pub output: PathBuf,
    /// Flag a figure this many times the fleet median or more (or as far below it).
    #[arg(long, default_value_t = 1.5, value_parser = parse_threshold, allow_negative_numbers = true)]
    pub threshold: f64,
    /// Also diff this node against the fleet median (repeatable); flagged nodes always are.
    #[arg(long = "diff", value_name = "NODE")]
    pub diff_nodes: Vec<String>,
}

fn parse_threshold(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() && t > 1.0 => Ok(t),
        _ => Err(format!(
            "{s:?} is not a ratio above 1 (e.g. --threshold 1.5: flag figures 1.5× the fleet median)"
        )),
    }
}

// Numbers on the command line: clap would read `--rows -1` as an unknown
// option `-1` and suggest `-- -1`, which makes it part of CMD; these accept
// the hyphen and say what is wrong instead.

fn parse_pid(s: &str) -> Result<u32, String> {
    let n = parse_u64_named(s, "--pid", "-p 1234")?;
    if n == 0 {
        return Err(
            "--pid 0 is not a process; pass the pid of a running process, e.g. -p 1234".into(),
        );
    }
    u32::try_from(n).map_err(|_| format!("--pid {n} is larger than any pid (at most {})", u32::MAX))
}

fn parse_sample_hz(s: &str) -> Result<u64, String> {
    parse_u64_named(
        s,
        "--sample-hz",
        "--sample-hz 99, or 0 for no stack sampling",
    )
}

fn parse_rows(s: &str) -> Result<usize, String> {
    let n = parse_u64_named(s, "--rows", "--rows 40")?;
    usize::try_from(n).map_err(|_| format!("--rows {n} is too large; e.g. --rows 40"))
}

fn parse_bench_count(s: &str) -> Result<u64, String> {
    match parse_u64_named(s, "--count", "--count 1000")? {
        0 => Err("--count must be at least 1; e.g. --count 1000".into()),
        n => Ok(n),
    }
}

fn parse_top_k(s: &str) -> Result<u32, String> {
    match parse_u64_named(s, "--top-k", "--top-k 32")? {
        n @ 1..=1024 => Ok(n as u32),
        n => Err(format!(
            "--top-k {n}: between 1 and 1024 labels; e.g. --top-k 32"
        )),
    }
}

fn parse_label_idle(s: &str) -> Result<std::time::Duration, String> {
    match s {
        "off" | "0" => Ok(std::time::Duration::ZERO),
        _ => crate::units::parse_duration(s)
            .map_err(|e| format!("--label-idle {s}: {e}; or `off` to keep the first labels")),
    }
}

fn parse_cgroup_k(s: &str) -> Result<u32, String> {
    match parse_u64_named(s, "--cgroup-k", "--cgroup-k 8")? {
        n @ 1..=256 => Ok(n as u32),
        n => Err(format!(
            "--cgroup-k {n}: between 1 and 256 cgroup labels; e.g. --cgroup-k 8"
        )),
    }
}

fn parse_interval(s: &str) -> Result<u64, String> {
    match parse_u64_named(s, "--interval", "--interval 1")? {
        n @ 1..=3600 => Ok(n),
        n => Err(format!(
            "--interval {n}: between 1 and 3600 seconds; e.g. --interval 1"
        )),
    }
}

fn parse_report_spawns(s: &str) -> Result<usize, String> {
    match parse_u64_named(s, "--spawns", "--spawns 100000")? {
        0 => Err("--spawns must be at least 1; e.g. --spawns 100000".into()),
        n => usize::try_from(n).map_err(|_| format!("--spawns {n} is too large")),
    }
}
