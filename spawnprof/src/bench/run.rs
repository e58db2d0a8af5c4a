//! Running the sweep: every configuration in turn (`bench.json` rewritten
//! after each), then the overhead measurement, then the charts.
use std::{path::PathBuf, time::Instant};

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::{
    file::{BENCH_FILE, write_bench_json},
    overhead::measure_overhead,
    page,
    record::{run_config, spawner_path},
    results::{BenchConfig, BenchReport, ConfigResult, Overhead},
    sweep::{BenchOptions, sweep},
};
use crate::{
    probe::plan::PlanRow,
    recorder::interrupt::{Interrupts, is_interruption},
    recording::{OutputDir, SCHEMA_VERSION, prepare_out_dir},
    sys::node::NodeFacts,
};

/// Runs the whole bench and writes `bench.json`.
pub async fn run(opts: BenchOptions) -> Result<BenchReport> {
    // A Ctrl-C stops the sweep where it is; what finished is written.
    let interrupts = Interrupts::catch()?;
    let spawner = spawner_path()?;
    let configs = checked_sweep(&opts)?;
    let out_dir = prepare_bench_dir(&opts)?;
    let mut running = SweepRun::start(&opts, spawner, interrupts, configs.len());
    running.run_configs(&configs).await?;
    let overhead = running.overhead().await?;
    let report = running.finish(overhead);
    write_bench_json(&opts.out_dir, &report)?;
    if let Err(e) = page::write(&opts.out_dir, &report) {
        crate::say!("spawnprof: bench.json is saved, but drawing its charts failed: {e:#}");
    }
    out_dir.hand_to_invoking_user()?;
    Ok(report)
}

/// The sweep of the options, each configuration checked.
fn checked_sweep(opts: &BenchOptions) -> Result<Vec<BenchConfig>> {
    let configs = sweep(opts);
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
    Ok(configs)
}

/// The output directory, refusing to overwrite a bench without `--force`.
fn prepare_bench_dir(opts: &BenchOptions) -> Result<OutputDir> {
    let out_dir = prepare_out_dir(&opts.out_dir, opts.force)?;
    if opts.out_dir.join(BENCH_FILE).exists() && !opts.force {
        bail!(
            "{} already holds a bench; choose another -o directory or pass --force",
            opts.out_dir.display()
        );
    }
    Ok(out_dir)
}

/// A sweep under way: what finished so far, the progress bar, and the
/// signals that stop it.
struct SweepRun<'a> {
    opts: &'a BenchOptions,
    spawner: PathBuf,
    interrupts: Interrupts,
    started: Instant,
    bar: ProgressBar,
    node: NodeFacts,
    start_unix_s: Option<u64>,
    results: Vec<ConfigResult>,
    plan: Vec<PlanRow>,
    interrupted: bool,
}

impl<'a> SweepRun<'a> {
    fn start(
        opts: &'a BenchOptions,
        spawner: PathBuf,
        interrupts: Interrupts,
        configs: usize,
    ) -> Self {
        let started = Instant::now();
        let bar = ProgressBar::new(configs as u64 + opts.overhead as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta} {msg}",
            )
            .expect("valid template"),
        );
        Self {
            opts,
            spawner,
            interrupts,
            started,
            bar,
            node: NodeFacts {
                node_name: opts.node_name.clone(),
                ..NodeFacts::collect()
            },
            start_unix_s: crate::sys::clock::unix_seconds_now(),
            results: Vec::new(),
            plan: Vec::new(),
            interrupted: false,
        }
    }

    /// `bench.json` as it stands while the sweep runs.
    fn so_far(&self) -> BenchReport {
        BenchReport {
            schema_version: SCHEMA_VERSION,
            node: self.node.clone(),
            plan: self.plan.clone(),
            quick: self.opts.quick,
            duration_ns: self.started.elapsed().as_nanos() as u64,
            configs: self.results.clone(),
            overhead: None,
            interrupted: false,
            unfinished: true,
            start_unix_s: self.start_unix_s,
            spawnprof_version: Some(env!("CARGO_PKG_VERSION").into()),
        }
    }

    /// Records each configuration in turn, until all are done or a signal
    /// stops the sweep.
    async fn run_configs(&mut self, configs: &[BenchConfig]) -> Result<()> {
        for (done, cfg) in configs.iter().enumerate() {
            if self.interrupts.arrived().await.is_some() {
                self.interrupted = true;
                break;
            }
            self.bar.set_message(cfg.name.clone());
            let session = &self.opts.session;
            let started = Instant::now();
            let outcome = run_config(cfg, &self.spawner, &self.opts.out_dir, session, false).await;
            match outcome {
                Ok((r, p, _)) => {
                    self.progress_line(done + 1, configs.len(), &r, started);
                    // Each recording leaves signal handling in its writing
                    // phase; between configurations the sweep is tokio's to
                    // stop again. (After an interrupt it stays as the recording
                    // left it: the next Ctrl-C quits at once.)
                    self.interrupts.rearm();
                    self.plan = p;
                    self.results.push(r);
                    if let Err(e) = write_bench_json(&self.opts.out_dir, &self.so_far()) {
                        crate::say!("spawnprof: warning: {e:#}; the sweep goes on");
                    }
                }
                Err(e) if is_interruption(&e) => {
                    self.interrupted = true;
                    break;
                }
                Err(e) => return Err(e.context(format!("configuration {}", cfg.name))),
            }
            self.bar.inc(1);
        }
        Ok(())
    }

    /// Without a terminal (CI, a log file) the bar is not drawn: one line
    /// per configuration instead, so the log shows the sweep advance.
    fn progress_line(&self, done: usize, of: usize, r: &ConfigResult, started: Instant) {
        if !self.bar.is_hidden() {
            return;
        }
        crate::say!(
            "[{done}/{of}] {}: {:.0} spawns/s, p50 {} ({:.1} s)",
            r.config.name,
            r.spawner.spawns_per_sec,
            crate::units::format_ns(r.spawner.latency_ns.p50),
            started.elapsed().as_secs_f64()
        );
    }

    /// The spawner with and without probes, unless skipped or interrupted.
    async fn overhead(&mut self) -> Result<Option<Overhead>> {
        if !self.opts.overhead || self.interrupted {
            return Ok(None);
        }
        self.bar
            .set_message("overhead: spawner with and without probes");
        if self.bar.is_hidden() {
            crate::say!("overhead: the spawner with and without probes");
        }
        let outcome = measure_overhead(
            &self.spawner,
            &self.opts.out_dir,
            self.opts,
            &mut self.interrupts,
        )
        .await;
        self.bar.inc(1);
        match outcome {
            Ok(o) => Ok(Some(o)),
            Err(e) => {
                // A Ctrl-C at the terminal also kills the unprobed spawner.
                if !is_interruption(&e) && self.interrupts.arrived().await.is_none() {
                    return Err(e);
                }
                self.interrupted = true;
                Ok(None)
            }
        }
    }

    /// The final `bench.json`.
    fn finish(&self, overhead: Option<Overhead>) -> BenchReport {
        self.bar.finish_and_clear();
        BenchReport {
            overhead,
            interrupted: self.interrupted,
            unfinished: false,
            ..self.so_far()
        }
    }
}
