//! Running the sweep: every configuration in turn (`bench.json` rewritten
//! after each), then the overhead measurement, then the charts.
use std::time::Instant;

use anyhow::{Result, bail};

use super::{
    charts,
    file::{BENCH_FILE, write_bench_json},
    overhead::measure_overhead,
    record::{run_config, spawner_path},
    results::{BenchReport, ConfigResult},
    sweep::{BenchOptions, sweep},
};
use crate::{
    probe::plan::PlanRow,
    recorder::interrupt::{Interrupts, is_interruption},
    recording::{SCHEMA_VERSION, prepare_out_dir},
    sys::node::NodeFacts,
};

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
