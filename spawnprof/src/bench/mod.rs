//! `spawnprof bench`: profile a node by running the reference spawner
//! through sweeps (method × RSS, THP, environment size, PATH misses, tokio
//! modes, the fork chain) with the probes attached, and join the spawner's
//! own figures with the recorded stage breakdown of the spawns inside its
//! timed window. Writes `bench.json` and one recording per configuration.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

pub mod charts;
pub mod diff;

use crate::{
    analysis::{self, Placement, StageStats},
    model::SpawnRecord,
    probe::{SessionOptions, plan::PlanRow},
    recorder::{
        self, RecordOptions, Target,
        interrupt::{Interrupted, Interrupts, is_interruption},
    },
    recording::{ProbeCost, SCHEMA_VERSION, load_recording, prepare_out_dir},
    sys::node::NodeFacts,
    units::{format_bytes, format_ns},
    workload::{Config, CpuList, HugePages, Method, Mode, SPAWNER_BIN, SpawnResult, spawner_args},
};

pub const BENCH_FILE: &str = "bench.json";

/// One configuration of the sweep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchConfig {
    /// Unique, filesystem-safe name, e.g. `method-rss/fork-exec-1g`.
    pub name: String,
    /// The experiment it belongs to: `method-rss`, `minimal-child`,
    /// `placement`, `thp`, `env`, `path`, `tokio`, `fork-chain`.
    pub experiment: String,
    pub spawner: Config,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub out_dir: PathBuf,
    pub quick: bool,
    pub methods: Option<Vec<Method>>,
    pub rss: Option<Vec<u64>>,
    pub env: Option<Vec<u64>>,
    pub path_misses: Option<Vec<u32>>,
    /// Only these experiments (names from [`EXPERIMENTS`]); `None`: all.
    pub experiments: Option<Vec<String>>,
    /// Overrides every configuration's spawn count.
    pub count: Option<u64>,
    pub overhead: bool,
    pub force: bool,
    pub session: SessionOptions,
}

/// A stage's share of the spawn call, for "why is this configuration slow".
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StageShare {
    pub stage: String,
    pub mean_ns: u64,
    /// Of the parent's clone syscall (the call the spawner times).
    pub share_of_call: f64,
}

/// The outcome of one configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigResult {
    pub config: BenchConfig,
    pub spawner: SpawnResult,
    /// Spawns recorded inside the spawner's timed window.
    pub spawns_in_window: u64,
    /// Stage statistics over those spawns.
    pub stages: BTreeMap<String, StageStats>,
    /// The stages inside the spawn call, largest first.
    pub breakdown: Vec<StageShare>,
    /// Where those spawns' children first ran (absent in older benches).
    #[serde(default)]
    pub placement: Option<Placement>,
    /// Failed execve attempts per spawn in the window, as recorded: the
    /// node's own PATH misses plus the ones a configuration adds (absent
    /// in older benches and when the window is empty).
    #[serde(default)]
    pub failed_execs_per_spawn: Option<f64>,
    pub lost_marks: u64,
    /// The recording, relative to the bench directory.
    pub recording: String,
}

impl ConfigResult {
    /// The `n` largest stages of the spawn call with their shares, e.g.
    /// `dup_mmap 98%, copy_process (rest) 1%`.
    pub fn top_stages(&self, n: usize) -> String {
        let top: Vec<String> = self
            .breakdown
            .iter()
            .take(n)
            .map(|s| format!("{} {:.0}%", s.stage, 100.0 * s.share_of_call))
            .collect();
        top.join(", ")
    }
}

/// Spawn rate with and without probes, measured in the same run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Overhead {
    pub method: String,
    pub count: u64,
    pub mode: String,
    pub without_probes_spawns_per_sec: f64,
    pub with_probes_spawns_per_sec: f64,
    /// 1 - with/without: the fraction of the spawn rate the probes cost.
    pub cost: f64,
    /// The CPU the spawner and its children were pinned to, so that no child
    /// waits for an idle CPU to wake (which swings the rate by more than the
    /// probes cost on VMs); absent with a single CPU.
    #[serde(default)]
    pub cpu: Option<u32>,
    /// Rounds of each side; the figures are their medians.
    #[serde(default)]
    pub rounds: u32,
    /// Median latency of the spawn call: steadier than the rate, which a few
    /// host stalls dominate.
    #[serde(default)]
    pub without_probes_p50_ns: Option<f64>,
    #[serde(default)]
    pub with_probes_p50_ns: Option<f64>,
    /// with/without - 1 of the p50s: what the probes add to a spawn call.
    #[serde(default)]
    pub p50_cost: Option<f64>,
    /// From one more recording with `--probe-cost`: the probes' own run
    /// time per spawn in the kernel (BPF statistics), a figure that does not
    /// swing with the node's scheduling the way the rates do.
    #[serde(default)]
    pub probe_ns_per_spawn: Option<f64>,
    /// spawnprof's own CPU time per spawn in that recording.
    #[serde(default)]
    pub reader_ns_per_spawn: Option<f64>,
}

impl Overhead {
    /// One line: the p50 of the spawn call with and without probes (where
    /// known), then the rates.
    pub fn describe(&self) -> String {
        let setup = match self.cpu {
            Some(cpu) => format!("{} serial pinned to CPU {cpu}", self.method),
            None => format!("{} serial", self.method),
        };
        let rounds = if self.rounds > 1 {
            format!(", median of {} rounds", self.rounds)
        } else {
            String::new()
        };
        let rates = format!(
            "{:.0}/s without, {:.0}/s with probes ({:+.1}% of the spawn rate)",
            self.without_probes_spawns_per_sec,
            self.with_probes_spawns_per_sec,
            -100.0 * self.cost
        );
        match (
            self.without_probes_p50_ns,
            self.with_probes_p50_ns,
            self.p50_cost,
        ) {
            (Some(wo), Some(wi), Some(c)) => format!(
                "probe overhead ({setup}, {} spawns{rounds}): the spawn call's p50 {} without, {} with probes ({:+.1}%); {rates}",
                self.count,
                format_ns(wo as u64),
                format_ns(wi as u64),
                100.0 * c
            ),
            _ => format!(
                "probe overhead ({setup}, {} spawns{rounds}): {rates}",
                self.count
            ),
        }
    }
}

/// `bench.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    pub schema_version: u32,
    pub node: NodeFacts,
    pub plan: Vec<PlanRow>,
    pub quick: bool,
    pub duration_ns: u64,
    pub configs: Vec<ConfigResult>,
    pub overhead: Option<Overhead>,
    /// Stopped by Ctrl-C, SIGTERM or SIGHUP: `configs` holds the ones that finished.
    #[serde(default)]
    pub interrupted: bool,
    /// Written while the sweep ran (after each configuration, so a bench
    /// killed where no handler runs keeps what finished); false once done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unfinished: bool,
    /// When the sweep started (Unix seconds) and which spawnprof ran it, for
    /// a page read away from the node (absent in older benches).
    #[serde(default)]
    pub start_unix_s: Option<u64>,
    #[serde(default)]
    pub spawnprof_version: Option<String>,
}

/// The experiments of the sweep, in the order they run.
pub const EXPERIMENTS: &[&str] = &[
    "method-rss",
    "minimal-child",
    "placement",
    "thp",
    "env",
    "path",
    "tokio",
    "fork-chain",
];

/// Checks an `--experiments` entry.
pub fn experiment_name(s: &str) -> Result<String> {
    match EXPERIMENTS.contains(&s) {
        true => Ok(s.to_string()),
        false => bail!(
            "no experiment '{s}'; choose from {}",
            EXPERIMENTS.join(", ")
        ),
    }
}

fn method_rss_count(rss: u64) -> u64 {
    match rss {
        r if r >= 4 << 30 => 20,
        r if r >= 1 << 30 => 50,
        r if r >= 256 << 20 => 150,
        _ => 300,
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// `rss0`, `rss256mib`, `rss4gib`.
fn rss_label(rss: u64) -> String {
    if rss == 0 {
        return "rss0".into();
    }
    format!("rss{}", slug(&format_bytes(rss).replace(' ', "")))
}

/// The sweep, from the options (defaults reproduce the seeds' experiments).
pub fn sweep(opts: &BenchOptions) -> Vec<BenchConfig> {
    let quick = opts.quick;
    let methods = opts.methods.clone().unwrap_or_else(|| {
        if quick {
            vec![Method::ForkExec, Method::PosixSpawn, Method::StdFork]
        } else {
            vec![
                Method::ForkExec,
                Method::VforkExec,
                Method::PosixSpawn,
                Method::Clone3Vfork,
                Method::Std,
                Method::StdEnv,
                Method::StdFork,
                Method::Zygote,
            ]
        }
    });
    let rss = opts.rss.clone().unwrap_or_else(|| {
        if quick {
            vec![0, 256 << 20]
        } else {
            vec![0, 256 << 20, 1 << 30, 4 << 30]
        }
    });
    let env = opts.env.clone().unwrap_or_else(|| {
        if quick {
            vec![0, 250]
        } else {
            vec![0, 50, 250, 1000]
        }
    });
    let misses = opts.path_misses.clone().unwrap_or_else(|| vec![0, 14]);
    let scale = |n: u64| if quick { (n / 6).max(10) } else { n };
    let count = |n: u64| opts.count.unwrap_or_else(|| scale(n));
    let mut out = Vec::new();
    let mut push = |experiment: &str, name: String, cfg: Config| {
        out.push(BenchConfig {
            name: format!("{experiment}/{name}"),
            experiment: experiment.into(),
            spawner: cfg,
        })
    };
    for &m in &methods {
        for &r in &rss {
            let mut c = Config::new(m);
            c.rss = r;
            c.count = count(method_rss_count(r));
            c.mode = Mode::Serial;
            push("method-rss", format!("{m}-{}", rss_label(r)), c);
        }
    }
    // The spawn alone, per method: the child is an exit-only program, so no
    // library loading or libc start-up runs between the spawns.
    for &m in &methods {
        let mut c = Config::new(m);
        c.minimal_child = true;
        c.count = count(method_rss_count(0));
        c.mode = Mode::Serial;
        push("minimal-child", m.to_string(), c);
    }
    // Where the child starts: anywhere (often another, idle CPU that must be
    // woken first) or on its parent's CPU, with the spawner pinned to one.
    if let Some(cpu) = placement_cpu() {
        for m in [Method::PosixSpawn, Method::ForkExec] {
            if !methods.contains(&m) {
                continue;
            }
            for cpus in [None, Some(CpuList::single(cpu))] {
                let mut c = Config::new(m);
                c.minimal_child = true;
                c.count = count(method_rss_count(0) * 3);
                c.mode = Mode::Serial;
                let place = match &cpus {
                    None => "any-cpu".to_string(),
                    Some(l) => format!("cpu{l}"),
                };
                c.cpus = cpus;
                push("placement", format!("{m}-{place}"), c);
            }
        }
    }
    // Huge pages shrink the page-table copy: fork at 1 GiB with and without THP.
    for hp in [HugePages::None, HugePages::Thp] {
        let mut c = Config::new(Method::ForkExec);
        c.rss = 1 << 30;
        c.huge_pages = hp;
        c.count = count(50);
        c.mode = Mode::Serial;
        push("thp", format!("fork-exec-1gib-{hp}"), c);
    }
    // The environment and PATH cost CPU time inside each spawn (copying
    // the strings, one failed execve per missing directory): serial and
    // pinned, so that it is not drowned by children queueing for a CPU
    // (batched on two vCPUs, 250 variables or 14 misses moved the call by
    // less than its run-to-run spread, while pinned serial spawns showed
    // +50% and +8% at the median).
    let per_spawn_work = |c: &mut Config| {
        c.mode = Mode::Serial;
        c.cpus = placement_cpu().map(CpuList::single);
    };
    for m in [Method::PosixSpawn, Method::StdEnv] {
        for &e in &env {
            let mut c = Config::new(m);
            c.env_count = e;
            c.count = count(300);
            per_spawn_work(&mut c);
            push("env", format!("{m}-env{e}"), c);
        }
    }
    for &k in &misses {
        let mut c = Config::new(Method::PosixSpawn);
        c.program = "true".into();
        c.path_misses = k;
        c.count = count(300);
        per_spawn_work(&mut c);
        push("path", format!("posix-spawn-misses{k}"), c);
    }
    let tokio_modes = if quick {
        vec![Method::TokioSingle, Method::TokioMulti(2)]
    } else {
        vec![
            Method::TokioSingle,
            Method::TokioSingleBlocking,
            Method::TokioMulti(2),
            Method::TokioMulti(4),
        ]
    };
    for m in tokio_modes {
        let mut c = Config::new(m);
        c.count = count(300);
        push("tokio", m.to_string(), c);
    }
    // Fork, parent exits, child repeats: time per fork in windows along the chain.
    let mut c = Config::new(Method::ForkChain);
    c.count = count(3000);
    // One fork at a time by construction (each child forks the next); said
    // so, rather than the batched default that the chain never reads.
    c.mode = Mode::Serial;
    push("fork-chain", "fork-chain".into(), c);
    if let Some(only) = &opts.experiments {
        out.retain(|c| only.contains(&c.experiment));
    }
    out
}

/// The CPU the placement experiment pins to: the first this process may
/// use, when it may use more than one (with one there is nothing to compare).
fn placement_cpu() -> Option<u32> {
    let allowed = CpuList::allowed().ok()?;
    (allowed.cpus().len() > 1).then(|| allowed.cpus()[0])
}

/// Reads `bench.json` from a bench directory.
pub fn load_report(dir: &Path) -> Result<BenchReport> {
    let path = dir.join(BENCH_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is corrupt or from another version", path.display()))
}

/// Path of the spawner binary: next to this executable.
pub fn spawner_path() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the spawnprof executable")?;
    let path = exe.with_file_name(SPAWNER_BIN);
    if !path.exists() {
        bail!(
            "the reference spawner {} is missing; build it with `cargo build --release` \
             (or run `cargo xtask bench`)",
            path.display()
        );
    }
    Ok(path)
}

fn parse_result(path: &Path) -> Result<SpawnResult> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| {
            format!(
                "the spawner printed no result line (see {})",
                path.display()
            )
        })?;
    serde_json::from_str(line)
        .with_context(|| format!("parsing the spawner's result in {}", path.display()))
}

/// Spawns of a configuration: created inside the spawner's timed window.
fn in_window<'a>(
    records: &'a [SpawnRecord],
    result: &SpawnResult,
    t0: u64,
) -> Vec<&'a SpawnRecord> {
    let start = result.t_start_mono_ns.saturating_sub(t0);
    let end = result.t_end_mono_ns.saturating_sub(t0);
    records
        .iter()
        .filter(|r| !r.root && !r.thread)
        .filter(|r| {
            r.ts.clone_enter
                .or(r.ts.fork_done)
                .is_some_and(|t| t >= start && t <= end)
        })
        .collect()
}

/// The stages that make up the spawn call, as shares of the parent's clone.
/// For vfork-style spawns the child's pre-exec work and exec happen while
/// the parent waits, so they count; for fork they happen after it returns.
/// Of a vfork child's exec only the part up to the release (exec_load)
/// counts when the release is known: the rest runs after the parent is
/// free again, alongside its vfork_resume, and would be counted twice.
pub fn call_breakdown(stages: &BTreeMap<String, StageStats>, vfork_style: bool) -> Vec<StageShare> {
    let mean = |s: &str| stages.get(s).filter(|s| s.count > 0).map(|s| s.mean_ns);
    let Some(call) = mean("clone").filter(|&c| c > 0) else {
        return Vec::new();
    };
    let mut parts: Vec<(String, u64)> = Vec::new();
    let dup = mean("dup_mmap");
    if let Some(d) = dup {
        parts.push(("dup_mmap".into(), d));
    }
    if let Some(cp) = mean("copy_process") {
        parts.push((
            "copy_process (rest)".into(),
            cp.saturating_sub(dup.unwrap_or(0)),
        ));
    }
    for s in ["fork_wakeup"] {
        if let Some(v) = mean(s) {
            parts.push((s.into(), v));
        }
    }
    // After the wake-up, a vfork parent waits through its child's start
    // and exec, then for its own CPU; a fork parent only returns.
    let released = mean("exec_load").is_some() && mean("vfork_resume").is_some();
    let after_wakeup = if vfork_style {
        &[
            "sched_delay",
            "pre_exec",
            "path_search",
            if released { "exec_load" } else { "exec" },
            "vfork_resume",
        ][..]
    } else {
        &["parent_return"][..]
    };
    for s in after_wakeup {
        if let Some(v) = mean(s) {
            parts.push(((*s).into(), v));
        }
    }
    let mut out: Vec<StageShare> = parts
        .into_iter()
        .map(|(stage, mean_ns)| StageShare {
            stage,
            mean_ns,
            share_of_call: mean_ns as f64 / call as f64,
        })
        .collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.mean_ns));
    out
}

/// Records one configuration; with `probe_cost`, also what the probes cost.
async fn run_config(
    cfg: &BenchConfig,
    spawner: &Path,
    dir: &Path,
    session: &SessionOptions,
    probe_cost: bool,
) -> Result<(ConfigResult, Vec<PlanRow>, Option<ProbeCost>)> {
    let rec_dir = dir.join(&cfg.name);
    std::fs::create_dir_all(&rec_dir)?;
    let stdout = rec_dir.join("spawner.json");
    let mut argv = vec![spawner.display().to_string()];
    argv.extend(spawner_args(&cfg.spawner));
    let mut opts = RecordOptions::new(Target::Command(argv), rec_dir.clone());
    opts.session = session.clone();
    opts.force = true;
    opts.announce = false;
    opts.command_stdout = Some(stdout.clone());
    opts.probe_cost = probe_cost;
    opts.owns_command = true;
    if session.low_overhead {
        opts.sample_hz = 0;
    }
    let rec = recorder::record(opts).await?;
    rec.saved()?;
    if rec.summary.interrupted {
        return Err(Interrupted.into());
    }
    if rec.summary.exit_code != Some(0) {
        bail!(
            "the spawner failed for {} (exit {:?}); its output is in {}",
            cfg.name,
            rec.summary.exit_code,
            rec_dir.display()
        );
    }
    let result = parse_result(&stdout)?;
    // All of the configuration's spawns, not just the ones kept in memory.
    let (_, records) = load_recording(&rec_dir)?;
    let window = in_window(&records, &result, rec.summary.start_monotonic_ns);
    // One pass for the stage statistics and the placement split.
    let mut acc = analysis::Accumulator::default();
    window.iter().for_each(|r| acc.add(r));
    let stages = acc.stage_stats();
    let vfork_style = window
        .iter()
        .filter(|r| r.method.as_deref() == Some("vfork"))
        .count()
        * 2
        > window.len();
    Ok((
        ConfigResult {
            config: cfg.clone(),
            spawns_in_window: window.len() as u64,
            breakdown: call_breakdown(&stages, vfork_style),
            placement: acc.placement(),
            failed_execs_per_spawn: (!window.is_empty()).then(|| {
                let failed: u64 = window.iter().map(|r| r.failed_exec_attempts).sum();
                failed as f64 / window.len() as f64
            }),
            stages,
            spawner: result,
            lost_marks: rec.summary.lost_marks_total,
            recording: cfg.name.clone(),
        },
        rec.summary.plan,
        rec.summary.probe_cost,
    ))
}

/// The spawner alone, without probes (for the overhead ratio).
fn run_unprobed(spawner: &Path, cfg: &Config) -> Result<SpawnResult> {
    use std::os::unix::process::CommandExt as _;
    let mut command = std::process::Command::new(spawner);
    command
        .args(spawner_args(cfg))
        .stderr(std::process::Stdio::null());
    // The same limits as the recorded spawner gets (see GatedChild).
    if let Some(limit) = crate::sys::memlock::memlock_limit_to_restore() {
        // SAFETY: setrlimit is async-signal-safe and `limit` is a copy.
        unsafe {
            command.pre_exec(move || {
                libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit);
                Ok(())
            });
        }
    }
    let out = command.output().context("running the spawner")?;
    if !out.status.success() {
        bail!("the spawner failed without probes: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().context("no result line")?;
    Ok(serde_json::from_str(line)?)
}

/// Rounds of the overhead measurement, each side; medians are reported.
const OVERHEAD_ROUNDS: u32 = 3;

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

async fn measure_overhead(
    spawner: &Path,
    dir: &Path,
    opts: &BenchOptions,
    interrupts: &mut Interrupts,
) -> Result<Overhead> {
    let mut cfg = Config::new(Method::PosixSpawn);
    cfg.count = opts.count.unwrap_or(if opts.quick { 500 } else { 2000 });
    cfg.mode = Mode::Serial;
    let cpu = placement_cpu();
    cfg.cpus = cpu.map(CpuList::single);
    // Alternate to spread drift (frequency, other load) over both sides.
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..OVERHEAD_ROUNDS {
        // The unprobed runs are not recordings: check for a Ctrl-C here.
        if interrupts.arrived().await.is_some() {
            return Err(Interrupted.into());
        }
        without.push(run_unprobed(spawner, &cfg)?);
        let bc = BenchConfig {
            name: format!("overhead/with-probes-{round}"),
            experiment: "overhead".into(),
            spawner: cfg.clone(),
        };
        let (r, _, _) = run_config(&bc, spawner, dir, &opts.session, false).await?;
        interrupts.rearm();
        with.push(r.spawner);
    }
    let costed = BenchConfig {
        name: "overhead/probe-cost".into(),
        experiment: "overhead".into(),
        spawner: cfg.clone(),
    };
    let costed_run = run_config(&costed, spawner, dir, &opts.session, true).await;
    let probe_cost = match costed_run {
        Ok((_, _, cost)) => cost,
        Err(e) if is_interruption(&e) => return Err(e),
        Err(e) => {
            // Statistics can be refused (BPF_ENABLE_STATS needs 5.8); the
            // rates above still stand.
            crate::say!("spawnprof: bench: no probe-cost figure: {e:#}");
            None
        }
    };
    let rate = |runs: &[SpawnResult]| median(runs.iter().map(|r| r.spawns_per_sec));
    let p50 = |runs: &[SpawnResult]| median(runs.iter().map(|r| r.latency_ns.p50 as f64));
    let (wo, wi) = (rate(&without), rate(&with));
    let (p50_wo, p50_wi) = (p50(&without), p50(&with));
    Ok(Overhead {
        method: cfg.method.to_string(),
        count: cfg.count,
        mode: cfg.mode.to_string(),
        without_probes_spawns_per_sec: wo,
        with_probes_spawns_per_sec: wi,
        cost: if wo > 0.0 { 1.0 - wi / wo } else { 0.0 },
        cpu,
        rounds: OVERHEAD_ROUNDS,
        without_probes_p50_ns: Some(p50_wo),
        with_probes_p50_ns: Some(p50_wi),
        p50_cost: (p50_wo > 0.0).then(|| p50_wi / p50_wo - 1.0),
        probe_ns_per_spawn: probe_cost.as_ref().and_then(ProbeCost::bpf_ns_per_spawn),
        reader_ns_per_spawn: probe_cost.as_ref().and_then(ProbeCost::reader_ns_per_spawn),
    })
}

/// Runs the whole bench and writes `bench.json`.
pub async fn run(opts: BenchOptions) -> Result<BenchReport> {
    // A Ctrl-C stops the sweep where it is; what finished is written.
    let mut interrupts = Interrupts::catch()?;
    let spawner = spawner_path()?;
    let configs = sweep(&opts);
    if configs.is_empty() {
        bail!("the options select no configuration to run");
    }
    for c in &configs {
        // Before any probe loads: a size this machine cannot hold (say
        // --rss 10T) is refused now, not when its configuration comes up.
        c.spawner
            .validate()
            .and_then(|()| {
                crate::workload::memory::check_request(c.spawner.rss, c.spawner.huge_pages)
            })
            .map_err(|e| anyhow::anyhow!("{}: {e}", c.name))?;
    }
    let out_dir = prepare_out_dir(&opts.out_dir, opts.force)?;
    if opts.out_dir.join(BENCH_FILE).exists() && !opts.force {
        bail!(
            "{} already holds a bench; choose another -o directory or pass --force",
            opts.out_dir.display()
        );
    }
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new(configs.len() as u64 + opts.overhead as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta} {msg}",
        )
        .expect("valid template"),
    );
    let node = NodeFacts::collect();
    let start_unix_s = crate::sys::clock::unix_seconds_now();
    let report_so_far = |configs: &[ConfigResult], plan: &[PlanRow]| BenchReport {
        schema_version: SCHEMA_VERSION,
        node: node.clone(),
        plan: plan.to_vec(),
        quick: opts.quick,
        duration_ns: started.elapsed().as_nanos() as u64,
        configs: configs.to_vec(),
        overhead: None,
        interrupted: false,
        unfinished: true,
        start_unix_s,
        spawnprof_version: Some(env!("CARGO_PKG_VERSION").into()),
    };
    let mut results = Vec::new();
    let mut plan = Vec::new();
    let mut interrupted = false;
    for cfg in &configs {
        if interrupts.arrived().await.is_some() {
            interrupted = true;
            break;
        }
        bar.set_message(cfg.name.clone());
        let outcome = run_config(cfg, &spawner, &opts.out_dir, &opts.session, false).await;
        match outcome {
            Ok((r, p, _)) => {
                // Each recording leaves signal handling in its writing
                // phase; between configurations the sweep is tokio's to
                // stop again. (After an interrupt it stays as the recording
                // left it: the next Ctrl-C quits at once.)
                interrupts.rearm();
                plan = p;
                results.push(r);
                if let Err(e) = write_bench_json(&opts.out_dir, &report_so_far(&results, &plan)) {
                    crate::say!("spawnprof: warning: {e:#}; the sweep goes on");
                }
            }
            Err(e) if is_interruption(&e) => {
                interrupted = true;
                break;
            }
            Err(e) => return Err(e.context(format!("configuration {}", cfg.name))),
        }
        bar.inc(1);
    }
    let overhead = if opts.overhead && !interrupted {
        bar.set_message("overhead: spawner with and without probes");
        let outcome = measure_overhead(&spawner, &opts.out_dir, &opts, &mut interrupts).await;
        bar.inc(1);
        match outcome {
            Ok(o) => Some(o),
            Err(e) => {
                // A Ctrl-C at the terminal also kills the unprobed spawner.
                if !is_interruption(&e) && interrupts.arrived().await.is_none() {
                    return Err(e);
                }
                interrupted = true;
                None
            }
        }
    } else {
        None
    };
    bar.finish_and_clear();
    let report = BenchReport {
        overhead,
        interrupted,
        unfinished: false,
        ..report_so_far(&results, &plan)
    };
    write_bench_json(&opts.out_dir, &report)?;
    if let Err(e) = charts::write(&opts.out_dir, &report) {
        crate::say!("spawnprof: bench.json is saved, but drawing its charts failed: {e:#}");
    }
    out_dir.hand_to_invoking_user()?;
    Ok(report)
}

/// Writes `bench.json` whole or not at all (a new file renamed over the old).
fn write_bench_json(dir: &Path, report: &BenchReport) -> Result<()> {
    let path = dir.join(BENCH_FILE);
    let tmp = dir.join(format!(".{BENCH_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(report)? + "\n")
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("writing {}", path.display()))
}

/// Says that a bench was cut short, and how much of it ran.
pub fn interrupted_note(report: &BenchReport) -> Option<String> {
    if report.unfinished {
        return Some(format!(
            "UNFINISHED (spawnprof was killed mid-sweep: SIGKILL, the OOM killer, or the machine went down): {} configuration{} finished, no overhead figure; run the bench again for the whole sweep",
            report.configs.len(),
            if report.configs.len() == 1 { "" } else { "s" },
        ));
    }
    report.interrupted.then(|| {
        format!(
            "INTERRUPTED (Ctrl-C, SIGTERM or SIGHUP): {} configuration{} finished{}; run the bench again for the whole sweep",
            report.configs.len(),
            if report.configs.len() == 1 { "" } else { "s" },
            if report.overhead.is_none() {
                ", no overhead figure"
            } else {
                ""
            }
        )
    })
}

/// The terminal summary: node facts, then one row per configuration.
pub fn render(report: &BenchReport) -> String {
    use std::fmt::Write as _;
    let n = &report.node;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {}: kernel {}, glibc {} (Rust std {}), THP {}, {} CPUs, {} RAM, env {} vars / {}, PATH {} entries",
        n.hostname,
        n.kernel_release,
        n.glibc_version,
        n.std_spawn_path(),
        n.thp_enabled.as_deref().unwrap_or("?"),
        n.cpus_online,
        n.mem_total.map_or("?".into(), format_bytes),
        n.env_count,
        format_bytes(n.env_bytes),
        n.path_entries
    );
    if let Some(cpus) = n.cpu_wakeup_summary() {
        let _ = writeln!(out, "CPUs: {cpus}");
    }
    if let Some(note) = interrupted_note(report) {
        let _ = writeln!(out, "{note}");
    }
    let _ = writeln!(
        out,
        "{:<34} {:>10} {:>10} {:>10}  where the spawn call goes",
        "configuration", "spawns/s", "p50", "p99"
    );
    for r in &report.configs {
        let _ = writeln!(
            out,
            "{:<34} {:>10.0} {:>10} {:>10}  {}",
            r.config.name,
            r.spawner.spawns_per_sec,
            format_ns(r.spawner.latency_ns.p50),
            format_ns(r.spawner.latency_ns.p99),
            r.top_stages(2)
        );
    }
    for r in &report.configs {
        if let Some(w) = &r.spawner.window_means_ns {
            let w: Vec<String> = w.iter().map(|&v| format_ns(v)).collect();
            let _ = writeln!(
                out,
                "{}: mean fork time per tenth of the chain: {}",
                r.config.name,
                w.join(", ")
            );
        }
    }
    for r in &report.configs {
        if r.config.experiment == "path"
            && let Some(failed) = r.failed_execs_per_spawn
        {
            let _ = writeln!(
                out,
                "{}: {failed:.1} failed execve attempts per spawn (the node's PATH misses + {} added)",
                r.config.name, r.config.spawner.path_misses
            );
        }
    }
    for line in placement_findings(report) {
        let _ = writeln!(out, "{line}");
    }
    if let Some(o) = &report.overhead {
        let _ = writeln!(out, "{}", o.describe());
        if let Some(ns) = o.probe_ns_per_spawn {
            let _ = writeln!(
                out,
                "probe run time in the kernel: {} per spawn (BPF statistics); spawnprof's own CPU: {} per spawn",
                format_ns(ns as u64),
                o.reader_ns_per_spawn
                    .map_or("-".into(), |r| format_ns(r as u64))
            );
        }
    }
    out
}

/// One sentence per method of the placement experiment: the spawn call
/// with the child free to start anywhere against pinned to one CPU, and how
/// often and how long the free children waited on another CPU.
pub fn placement_findings(report: &BenchReport) -> Vec<String> {
    use std::fmt::Write as _;
    let placement: Vec<&ConfigResult> = report
        .configs
        .iter()
        .filter(|c| c.config.experiment == "placement")
        .collect();
    let mut out = Vec::new();
    for free in placement.iter().filter(|c| c.config.spawner.cpus.is_none()) {
        let method = free.config.spawner.method;
        let Some(pinned) = placement
            .iter()
            .find(|c| c.config.spawner.method == method && c.config.spawner.cpus.is_some())
        else {
            continue;
        };
        let (f, p) = (&free.spawner.latency_ns, &pinned.spawner.latency_ns);
        let mut line = format!(
            "placement ({method}, exit-only child, serial): the spawn call took {} p50 / {} mean with the child free to start on any CPU, {} / {} pinned to CPU {}",
            format_ns(f.p50),
            format_ns(f.mean as u64),
            format_ns(p.p50),
            format_ns(p.mean as u64),
            pinned
                .config
                .spawner
                .cpus
                .as_ref()
                .map_or("?".into(), |c| c.to_string()),
        );
        if p.mean > 0.0 {
            let _ = write!(line, " (mean {:.1}× when free)", f.mean / p.mean);
        }
        if let Some(pl) = &free.placement
            && pl.sched_delay_other_cpu.count > 0
        {
            let _ = write!(
                line,
                "; free, {} of {} children started on another CPU and waited {} (p50) to run there",
                pl.other_cpu,
                pl.known,
                format_ns(pl.sched_delay_other_cpu.p50_ns)
            );
            let resume = &pl.vfork_resume_other_cpu;
            if resume.count > 0 {
                let _ = write!(
                    line,
                    ", and their parents {} on average to resume after the exec",
                    format_ns(resume.mean_ns)
                );
            }
        }
        out.push(line);
    }
    out
}

/// Parses `0,256M,1G` lists.
pub fn parse_list<T>(s: &str, item: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| item(p.trim()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(quick: bool) -> BenchOptions {
        BenchOptions {
            out_dir: "/tmp/x".into(),
            quick,
            methods: None,
            rss: None,
            env: None,
            path_misses: None,
            experiments: None,
            count: None,
            overhead: true,
            force: false,
            session: SessionOptions::default(),
        }
    }

    #[test]
    fn the_default_sweep_covers_the_seeds_experiments() {
        let s = sweep(&opts(false));
        let names: Vec<&str> = s.iter().map(|c| c.name.as_str()).collect();
        assert!(names.contains(&"method-rss/fork-exec-rss4gib"), "{names:?}");
        assert!(names.contains(&"thp/fork-exec-1gib-thp"));
        assert!(names.contains(&"env/std-env-env1000"));
        assert!(names.contains(&"path/posix-spawn-misses14"));
        assert!(names.contains(&"tokio/tokio-multi-4"));
        assert!(names.contains(&"fork-chain/fork-chain"));
        assert!(names.contains(&"minimal-child/posix-spawn"));
        if let Some(cpu) = placement_cpu() {
            assert!(names.contains(&"placement/fork-exec-any-cpu"), "{names:?}");
            let pinned = format!("placement/posix-spawn-cpu{cpu}");
            let c = s.iter().find(|c| c.name == pinned).expect("pinned config");
            assert_eq!(c.spawner.cpus, Some(CpuList::single(cpu)));
            assert!(c.spawner.minimal_child);
        }
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "names are unique");
        assert!(s.iter().all(|c| c.spawner.validate().is_ok()));
    }

    #[test]
    fn experiments_select_part_of_the_sweep() {
        let mut o = opts(true);
        o.experiments = Some(vec!["thp".into(), "path".into()]);
        let s = sweep(&o);
        assert!(!s.is_empty());
        assert!(
            s.iter()
                .all(|c| c.experiment == "thp" || c.experiment == "path")
        );
        // Every experiment the sweep makes is one that can be asked for.
        for c in sweep(&opts(false)) {
            assert!(EXPERIMENTS.contains(&c.experiment.as_str()), "{}", c.name);
        }
        let err = experiment_name("placment").unwrap_err().to_string();
        assert!(err.contains("placement"), "{err}");
    }

    #[test]
    fn quick_is_smaller_and_count_overrides() {
        assert!(sweep(&opts(true)).len() < sweep(&opts(false)).len() / 2);
        let mut o = opts(true);
        o.count = Some(7);
        assert!(sweep(&o).iter().all(|c| c.spawner.count == 7));
    }

    /// A stage seen once, with this mean.
    fn st(mean_ns: u64) -> StageStats {
        StageStats {
            count: 1,
            mean_ns,
            ..Default::default()
        }
    }

    #[test]
    fn the_call_breakdown_puts_dup_mmap_first_for_a_big_fork() {
        let stages: BTreeMap<String, StageStats> = [
            ("clone", st(10_000)),
            ("copy_process", st(9_900)),
            ("dup_mmap", st(9_800)),
            ("fork_wakeup", st(50)),
            ("parent_return", st(50)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let b = call_breakdown(&stages, false);
        assert_eq!(b[0].stage, "dup_mmap");
        assert!((b[0].share_of_call - 0.98).abs() < 1e-9);
    }

    #[test]
    fn a_vfork_call_counts_the_childs_exec_only_up_to_the_release() {
        let mut stages: BTreeMap<String, StageStats> = [
            ("clone", st(100_000)),
            ("copy_process", st(10_000)),
            ("fork_wakeup", st(2_000)),
            ("sched_delay", st(3_000)),
            ("pre_exec", st(20_000)),
            ("path_search", st(0)),
            ("exec", st(80_000)),
            ("exec_load", st(40_000)),
            ("vfork_resume", st(25_000)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let b = call_breakdown(&stages, true);
        let total: f64 = b.iter().map(|s| s.share_of_call).sum();
        assert!((total - 1.0).abs() < 1e-9, "{b:?}");
        assert!(b.iter().any(|s| s.stage == "exec_load"));
        assert!(!b.iter().any(|s| s.stage == "exec"));
        // Without the release point (before 6.10 on tracepoints) the whole
        // exec is all there is.
        stages.remove("exec_load");
        stages.remove("vfork_resume");
        let b = call_breakdown(&stages, true);
        assert!(b.iter().any(|s| s.stage == "exec"));
    }
}
