//! `cargo xtask bench-serve`: what always-on `spawnprof serve --all`
//! costs (docs/BENCHMARKS.md), measured, never asserted:
//!
//! 1. the serial posix_spawn benchmark's rate under serve against no
//!    probes, in interleaved rounds (serve started and stopped each round);
//! 2. what serve costs a context switch ([`super::switches`]), and a page
//!    fault while a forked parent waits ([`super::idle_window`]);
//! 3. serve's own CPU while the machine spawns 1,000 processes a second
//!    (four pacing threads) and serve is scraped every 5 s;
//! 4. a storm (both cores spawning as fast as they can) with scrapes every
//!    second: serve's memory over time, and every scrape's answer.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{
    median, release_bin,
    serve_process::{Serve, get},
};
use crate::cmd;

pub fn run(rounds: usize, storm_seconds: u64) -> Result<()> {
    let spawnprof = release_bin("spawnprof");
    let spawner = release_bin("spawnprof-spawner");
    rate_ratio(&spawnprof, &spawner, rounds)?;
    super::switches::switch_cost(&spawnprof, rounds)?;
    super::idle_window::fault_cost(&spawnprof, rounds)?;
    cpu_at_rate(&spawnprof, 1000, Duration::from_secs(30))?;
    storm(&spawnprof, storm_seconds)
}

/// How a round runs the benchmark: alone, under a serve started for the
/// run (its extra arguments), or under `record` for reference.
enum Setup {
    Alone,
    Serve(&'static [&'static str]),
    Record,
    /// One bpftrace program on a syscall nobody makes: the slow syscall
    /// path every syscall-tracepoint tool pays, as a floor.
    IdleSyscallTp,
}

const SETUPS: [(&str, Setup); 5] = [
    ("no probes", Setup::Alone),
    ("spawnprof serve --all", Setup::Serve(&["--all"])),
    (
        "spawnprof serve --all --low-overhead",
        Setup::Serve(&["--all", "--low-overhead"]),
    ),
    ("spawnprof record --sample-hz 0", Setup::Record),
    ("one idle syscall tracepoint (floor)", Setup::IdleSyscallTp),
];

/// The serial posix_spawn benchmark of bench-overhead (3000 spawns of
/// /bin/true; pinned to CPU 0 when taskset is there) under each setup,
/// rounds interleaved: (spawns/s, p50 of the spawn call in µs) per run.
fn rate_ratio(spawnprof: &Path, spawner: &Path, rounds: usize) -> Result<()> {
    let (argv, pinned) = spawner_argv(spawner);
    let out = cmd::target_dir().join("bench-serve-record");
    let have_bpftrace = cmd::find_in_path("bpftrace").is_some();
    if !have_bpftrace {
        println!("SKIPPED: the idle syscall tracepoint floor (apt-get install bpftrace)");
    }
    let mut results = vec![(Vec::new(), Vec::new()); SETUPS.len()];
    for round in 0..rounds {
        eprintln!("bench-serve: round {} of {rounds}", round + 1);
        for (i, (_, setup)) in SETUPS.iter().enumerate() {
            if matches!(setup, Setup::IdleSyscallTp) && !have_bpftrace {
                continue;
            }
            let (rate, p50) = run_setup(setup, spawnprof, &argv, &out)?;
            results[i].0.push(rate);
            results[i].1.push(p50);
        }
    }
    println!(
        "serial posix-spawn /bin/true, 3000{}, median of {rounds} interleaved rounds:\n",
        if pinned { ", pinned to CPU 0" } else { "" }
    );
    print_rates(&results);
    Ok(())
}

/// The spawner's serial posix_spawn loop, pinned to CPU 0 when taskset is
/// there (and whether it is).
fn spawner_argv(spawner: &Path) -> (Vec<String>, bool) {
    let taskset = cmd::find_in_path("taskset");
    let mut argv: Vec<String> = Vec::new();
    if let Some(t) = &taskset {
        argv.extend([t.display().to_string(), "-c".into(), "0".into()]);
    }
    argv.push(spawner.display().to_string());
    argv.extend(
        [
            "--method",
            "posix-spawn",
            "--count",
            "3000",
            "--mode",
            "serial",
        ]
        .map(String::from),
    );
    (argv, taskset.is_some())
}

/// One run of the loop under `setup`: (spawns/s, p50 of the call in µs).
fn run_setup(setup: &Setup, spawnprof: &Path, argv: &[String], out: &Path) -> Result<(f64, f64)> {
    let _serve = match setup {
        Setup::Serve(args) => Some(Serve::start(spawnprof, args)?),
        _ => None,
    };
    let mut c = match setup {
        Setup::Record => {
            let mut c = Command::new(spawnprof);
            c.args(["record", "--force", "--no-live", "--sample-hz", "0", "-o"])
                .arg(out)
                .arg("--");
            c.args(argv);
            c
        }
        Setup::IdleSyscallTp => {
            super::peer_cost::bpftrace_running(super::peer_cost::IDLE_SYSCALL_TP, argv)
        }
        _ => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    let output = c.stderr(Stdio::null()).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("\"spawns_per_sec\""))
        .context("no spawner result")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    Ok((
        v["spawns_per_sec"].as_f64().context("no spawns_per_sec")?,
        v["latency_ns"]["p50"].as_f64().context("no p50")? / 1000.0,
    ))
}

/// The table of medians: each setup's rate and p50 against no probes'.
fn print_rates(results: &[(Vec<f64>, Vec<f64>)]) {
    println!("| setup | spawns/s [range] | ratio | p50 spawn call [range] | p50 ratio |");
    println!("|---|---:|---:|---:|---:|");
    let (base_rate, base_p50) = (median(results[0].0.clone()), median(results[0].1.clone()));
    for ((name, _), (rates, p50s)) in SETUPS.iter().zip(results) {
        if rates.is_empty() {
            continue;
        }
        let (r, p) = (median(rates.clone()), median(p50s.clone()));
        println!(
            "| {name} | {r:.0}/s [{}] | {:.3} | {p:.1} µs [{}] | {:.3} |",
            range(rates),
            r / base_rate,
            range(p50s),
            base_p50 / p
        );
    }
    println!(
        "\n(ratio: spawns/s against no probes, target >= 0.98; p50 ratio: no probes' p50 / this p50)\n"
    );
}

fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    if hi < 100.0 {
        format!("{lo:.1}–{hi:.1}")
    } else {
        format!("{lo:.0}–{hi:.0}")
    }
}

/// Threads pacing the spawns of [`cpu_at_rate`]: one alone cannot spawn
/// and wait 1,000 times a second on a loaded 2-core host.
const PACERS: u32 = 4;

/// serve's CPU while `rate` spawns a second of /bin/true run for `length`
/// (PACERS threads, each spawning, waiting and sleeping to its next slot),
/// with a scrape every 5 s.
pub(super) fn cpu_at_rate(spawnprof: &Path, rate: u32, length: Duration) -> Result<()> {
    let serve = Serve::start(spawnprof, &["--all"])?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let before = serve.cpu_ticks().context("serve's CPU time")?;
    let start = Instant::now();
    let per_thread = f64::from(rate) / f64::from(PACERS);
    let (spawned, scrapes) = std::thread::scope(|scope| {
        let pacers: Vec<_> = (0..PACERS)
            .map(|_| {
                scope.spawn(move || {
                    let mut n = 0u64;
                    while start.elapsed() < length {
                        let slot = start + Duration::from_secs_f64(n as f64 / per_thread);
                        if let Some(wait) = slot.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        if Command::new("/bin/true").status().is_ok() {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        let mut scrapes = 0;
        while start.elapsed() + Duration::from_secs(5) < length {
            std::thread::sleep(Duration::from_secs(5));
            scrapes += serve.scrape().is_some() as u32;
        }
        let spawned: u64 = pacers.into_iter().map(|p| p.join().unwrap_or(0)).sum();
        (spawned, scrapes)
    });
    let secs = start.elapsed().as_secs_f64();
    let cpu = (serve.cpu_ticks().context("serve's CPU time")? - before) as f64 / hz;
    println!(
        "serve --all at {:.0} spawns/s for {secs:.0} s ({scrapes} scrapes): {cpu:.2} s of CPU, \
         {:.2}% of a core (target < 1%)\n",
        spawned as f64 / secs,
        100.0 * cpu / secs
    );
    Ok(())
}

/// Both cores spawning /bin/true for `seconds` under serve --all, scraped
/// every second: serve's memory every 5 s and the scrapes that failed.
fn storm(spawnprof: &Path, seconds: u64) -> Result<()> {
    let serve = Serve::start(spawnprof, &["--all"])?;
    let script = "(while :; do /bin/true; done) & (while :; do /bin/true; done) & wait";
    let mut load = Command::new("timeout")
        .args([&seconds.to_string(), "sh", "-c", script])
        .spawn()
        .context("starting the storm")?;
    let start = Instant::now();
    let (mut ok, mut failed, mut biggest) = (0, 0, 0);
    println!("| t (s) | serve VmRSS |\n|---:|---:|");
    let mut next_print = start;
    while load.try_wait()?.is_none() {
        match serve.scrape() {
            Some(n) => {
                ok += 1;
                biggest = biggest.max(n);
            }
            None => failed += 1,
        }
        if Instant::now() >= next_print {
            let rss = serve.rss_kib().unwrap_or(0);
            println!(
                "| {} | {:.1} MiB |",
                start.elapsed().as_secs(),
                rss as f64 / 1024.0
            );
            next_print += Duration::from_secs(5);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let spawns = get(serve.port, "/metrics")
        .map(|(_, page)| {
            page.lines()
                .filter(|l| l.starts_with("spawnprof_spawns_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .unwrap_or(0.0);
    println!(
        "\nstorm {seconds} s: {spawns:.0} spawns counted machine-wide, {ok} scrapes answered, \
         {failed} failed, largest page {} KiB",
        biggest / 1024
    );
    Ok(())
}
