//! `spawnprof bench`: profile this node with the reference spawner.
use anyhow::{Context as _, Result, bail};
use spawnprof::{
    bench::{self, BenchOptions},
    cli::{BenchArgs, usage},
    recorder::interrupt,
    report::timing,
    sys::node::NodeFacts,
    units,
};

/// `0,50,250` → counts; `None` when the option was not given.
fn count_list<T>(s: Option<&str>) -> Result<Option<Vec<T>>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    s.map(|s| {
        bench::parse_list(s, |v| {
            if v.trim().starts_with('-') {
                bail!("{v:?} is negative; counts are whole numbers of 0 or more");
            }
            v.parse::<T>()
                .map_err(|e| anyhow::anyhow!("{v:?} is not a whole number: {e}"))
        })
    })
    .transpose()
}

pub fn run(args: BenchArgs) -> Result<i32> {
    let methods = usage(
        args.methods
            .as_deref()
            .map(|s| bench::parse_list(s, |m| m.parse().map_err(anyhow::Error::msg)))
            .transpose()
            .context("--methods"),
    )?;
    let rss = usage(
        args.rss
            .as_deref()
            .map(|s| bench::parse_list(s, units::parse_size))
            .transpose()
            .context("--rss"),
    )?;
    let env =
        usage(count_list::<u64>(args.env.as_deref()).context("--env (counts like 0,50,250)"))?;
    let path_misses = usage(
        count_list::<u32>(args.path_misses.as_deref()).context("--path-misses (counts like 0,14)"),
    )?;
    let experiments = usage(
        args.experiments
            .as_deref()
            .map(|s| bench::parse_list(s, bench::experiment_name))
            .transpose()
            .context("--experiments"),
    )?;
    // The name the bench will record, by the same rule.
    let node = NodeFacts {
        node_name: args.node_name.clone(),
        ..NodeFacts::collect()
    };
    let out_dir = match &args.output {
        Some(pattern) => usage(bench::expand_node_name(pattern, node.name()).context("-o"))?,
        None => super::default_out_dir("bench-"),
    };
    let opts = BenchOptions {
        out_dir: out_dir.clone(),
        quick: args.quick,
        methods,
        rss,
        env,
        path_misses,
        experiments,
        count: args.count,
        overhead: !args.no_overhead,
        force: args.force,
        session: super::session_options(&args.probes)?,
        node_name: args.node_name.clone(),
    };
    let report = super::runtime()?.block_on(bench::run(opts))?;
    spawnprof::out_raw!("{}", bench::render(&report));
    spawnprof::say!("bench written to {}", out_dir.display());
    Ok(if report.interrupted {
        interrupt::EXIT_INTERRUPTED
    } else {
        0
    })
}

/// The hidden `bench-report`: what rendering a large recording costs.
pub fn report_timing(spawns: usize) -> Result<()> {
    let b = timing::bench_report_detailed(spawns)?;
    println!(
        "rendered every report of {} synthetic spawns: {:.2} s wall, {:.2} s CPU, peak RSS {}{}",
        b.spawns,
        b.wall.as_secs_f64(),
        b.cpu_s,
        units::format_bytes(b.peak_rss),
        if b.peak_reset {
            ""
        } else {
            " (includes writing the input)"
        }
    );
    Ok(())
}
