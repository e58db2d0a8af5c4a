//! What the probes cost: the spawner with and without them, alternated over
//! a few rounds, and one more recording with the probes' own run time.
use std::path::Path;

use anyhow::{Context as _, Result, bail};

use super::{
    record::run_config,
    results::{BenchConfig, Overhead},
    sweep::{BenchOptions, placement_cpu},
};
use crate::{
    recorder::interrupt::{Interrupted, Interrupts, is_interruption},
    recording::ProbeCost,
    workload::{Config, CpuList, Method, Mode, SpawnResult, spawner_args},
};

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

pub(super) async fn measure_overhead(
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
    let (without, with) = rounds(spawner, dir, opts, &cfg, interrupts).await?;
    let probe_cost = probe_cost(spawner, dir, opts, &cfg).await?;
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

/// The spawner's results without and with probes, one of each per round.
async fn rounds(
    spawner: &Path,
    dir: &Path,
    opts: &BenchOptions,
    cfg: &Config,
    interrupts: &mut Interrupts,
) -> Result<(Vec<SpawnResult>, Vec<SpawnResult>)> {
    // Alternate to spread drift (frequency, other load) over both sides.
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..OVERHEAD_ROUNDS {
        // The unprobed runs are not recordings: check for a Ctrl-C here.
        if interrupts.arrived().await.is_some() {
            return Err(Interrupted.into());
        }
        without.push(run_unprobed(spawner, cfg)?);
        let probed = overhead_config(&format!("with-probes-{round}"), cfg);
        let (r, _, _) = run_config(&probed, spawner, dir, &opts.session, false).await?;
        interrupts.rearm();
        with.push(r.spawner);
    }
    Ok((without, with))
}

/// The probes' own run time, from one more recording with BPF statistics;
/// `None` where the kernel refuses them.
async fn probe_cost(
    spawner: &Path,
    dir: &Path,
    opts: &BenchOptions,
    cfg: &Config,
) -> Result<Option<ProbeCost>> {
    let costed = overhead_config("probe-cost", cfg);
    let costed_run = run_config(&costed, spawner, dir, &opts.session, true).await;
    match costed_run {
        Ok((_, _, cost)) => Ok(cost),
        Err(e) if is_interruption(&e) => Err(e),
        Err(e) => {
            // Statistics can be refused (BPF_ENABLE_STATS needs 5.8); the
            // rates above still stand.
            crate::say!("spawnprof: bench: no probe-cost figure: {e:#}");
            Ok(None)
        }
    }
}

/// A recording of the overhead measurement, kept under `overhead/`.
fn overhead_config(name: &str, cfg: &Config) -> BenchConfig {
    BenchConfig {
        name: format!("overhead/{name}"),
        experiment: "overhead".into(),
        spawner: cfg.clone(),
    }
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
