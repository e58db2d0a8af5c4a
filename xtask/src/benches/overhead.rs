//! `cargo xtask bench-overhead`: what tracing costs a spawn loop, side by
//! side with bpftrace, in interleaved rounds on this host.
//!
//! ```text
//! build:    spawn_loop.c with gcc (the harness owes nothing to spawnprof)
//! measure:  round r: for each workload, for each setup: one run (serve's
//!           setup starts a `serve --all` first and stops it after)
//! ratios:   each run against the same round's run with no probes
//! closer:   3× the rounds again of no probes, serve and the floor alone
//! then:     --probe-cost and bpftrace's BPF time per spawn in interleaved
//!           pairs, serve's CPU at 1,000 spawns/s, what the statistics cost,
//!           end-to-exit time, spawner vs C, strace,
//!           and the same ratio in the QEMU guests (guests.rs)
//! ```
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::SystemTime,
};

use anyhow::{Context as _, Result, bail};

use super::{
    loop_rate_and_p50,
    peer_cost::{self, BPFTRACE_STAGES, IDLE_SYSCALL_TP, RunTime, bpftrace_running},
    quartiles, release_bin, serve,
    serve_process::Serve,
    spawns_per_sec, spread,
};
use crate::cmd;

const FLOOR: &str = "one idle syscall tracepoint (floor)";

/// Spawns per run: long enough that the recording's start and end weigh
/// little, short enough for several rounds.
const COUNT: &str = "3000";

/// The spawns bpftrace sees in one run of the C loop, as `--probe-cost`
/// counts them: the timed ones, the 10 untimed warm-ups (spawn_loop.c)
/// and the loop's own start.
fn spawns_per_run() -> u64 {
    COUNT.parse::<u64>().unwrap_or(0) + 10 + 1
}

/// Builds the command that runs a workload's argv under one setup.
type Wrap = Box<dyn Fn(&[String]) -> Command>;

struct Setup {
    name: &'static str,
    wrap: Wrap,
    /// A daemon each run needs up first (`serve`), stopped when dropped.
    daemon: Option<Daemon>,
}

/// Starts a setup's daemon for one run.
type Daemon = Box<dyn Fn() -> Result<Serve>>;

struct Workload {
    name: &'static str,
    argv: Vec<String>,
}

/// Per workload, per setup, per round: (loop rate, p50 call) ratios
/// against the round's run with no probes.
type Ratios = Vec<Vec<(Vec<f64>, Vec<f64>)>>;

/// `rounds` runs of every setup on every workload, interleaved (setup A,
/// B, C, then A, B, C again…) so a slow minute of this VM hits every setup
/// alike.
pub fn overhead(rounds: usize) -> Result<()> {
    let out = cmd::target_dir().join("bench-overhead");
    std::fs::create_dir_all(&out)?;
    let spawn_loop = build_spawn_loop(&out)?;
    let spawnprof = release_bin("spawnprof");
    let (have_bpftrace, have_strace) = install_peers();
    let empty = have_bpftrace
        .then(|| peer_cost::empty_at_our_tracepoints(&spawnprof, &out))
        .transpose()?;
    let setups = setups(&spawnprof, &out, empty);
    let workloads = workloads(&spawn_loop);
    let ratios = measure(&setups.iter().collect::<Vec<_>>(), &workloads, rounds)?;
    print_ratios(&setups, &workloads, &ratios, rounds);
    serve_closer(&setups, &workloads, &ratios, 3 * rounds)?;
    let costed = &workloads[workloads.len() - 1];
    let (ours, theirs) = in_kernel_cost(&spawnprof, &out, costed, have_bpftrace, rounds)?;
    serve::cpu_at_rate(&spawnprof, 1000, std::time::Duration::from_secs(30))?;
    if let Some(theirs) = theirs {
        peer_cost::stage_floor(&costed.argv, spawns_per_run(), rounds)?;
        let empty_ns = peer_cost::statistics_cost(&spawn_loop, rounds)?;
        println!(
            "net of the statistics' own clock ({empty_ns:.0} ns a run): spawnprof {:.2} µs of BPF \
             run time per spawn ({:.0} runs), bpftrace {:.2} µs ({:.0} runs)",
            ours.net_of(empty_ns),
            ours.runs_per_spawn,
            theirs.net_of(empty_ns),
            theirs.runs_per_spawn
        );
    }
    end_to_exit(&spawnprof, &out)?;
    spawner_against_c(&spawn_loop, rounds)?;
    if have_strace {
        strace_comparison(&spawn_loop)?;
    } else {
        println!("SKIPPED: strace comparison (apt-get install strace)");
    }
    if let Err(e) = super::guests::guest_ratios(rounds) {
        println!("SKIPPED: the guests' ratios (cargo xtask vm-test): {e:#}");
    }
    Ok(())
}

/// Compiles the C harness into `out`.
fn build_spawn_loop(out: &Path) -> Result<PathBuf> {
    let source = out.join("spawn_loop.c");
    let binary = out.join("spawn_loop");
    std::fs::write(&source, include_str!("spawn_loop.c"))?;
    let status = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .context("running gcc (apt-get install gcc)")?;
    if !status.success() {
        bail!("gcc could not build the C spawn loop: {status}");
    }
    Ok(binary)
}

/// Installs the peers spawnprof is compared with from Debian; without them
/// their rows are skipped, saying why. Returns (bpftrace, strace) present.
fn install_peers() -> (bool, bool) {
    for (tool, pkg) in [("bpftrace", "bpftrace"), ("strace", "strace")] {
        if cmd::find_in_path(tool).is_none()
            && let Err(e) = cmd::ensure_debian_packages("bench-overhead", &[pkg])
        {
            println!("{tool} could not be installed: {e:#}");
        }
    }
    (
        cmd::find_in_path("bpftrace").is_some(),
        cmd::find_in_path("strace").is_some(),
    )
}

/// The setups each workload runs under: alone, under spawnprof's default
/// recording, `--low-overhead`, `--no-raw-tracepoint` and `serve --all`,
/// and, when `empty` (bpftrace's script of empty programs on spawnprof's
/// tracepoints) says bpftrace is there, under bpftrace timing the same
/// stages, the floor, and those empty programs.
fn setups(spawnprof: &Path, out: &Path, empty: Option<String>) -> Vec<Setup> {
    let rec = |extra: &'static [&'static str]| {
        let spawnprof = spawnprof.to_path_buf();
        let out = out.join("record");
        Box::new(move |argv: &[String]| {
            let mut c = Command::new(&spawnprof);
            c.args(["record", "--force", "--no-live", "-o"])
                .arg(&out)
                .args(extra)
                .arg("--")
                .args(argv);
            c
        }) as Wrap
    };
    let alone = || {
        Box::new(|argv: &[String]| {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }) as Wrap
    };
    let serve_all = spawnprof.to_path_buf();
    let mut setups = vec![
        Setup {
            name: "no probes",
            wrap: alone(),
            daemon: None,
        },
        Setup {
            name: "spawnprof record",
            wrap: rec(&[]),
            daemon: None,
        },
        Setup {
            name: "spawnprof record --low-overhead",
            wrap: rec(&["--low-overhead"]),
            daemon: None,
        },
        // Entering the same hooks alone: each program replaced by one that
        // returns at once (what is left of record's p50 is its work).
        Setup {
            name: "spawnprof record --low-overhead, programs that return at once",
            wrap: {
                let inner = rec(&["--low-overhead"]);
                Box::new(move |argv: &[String]| {
                    let mut c = inner(argv);
                    c.env("SPAWNPROF_BENCH_EMPTY_PROGRAMS", "1");
                    c
                })
            },
            daemon: None,
        },
        // Beside bpftrace's empty programs on the same classic tracepoints.
        Setup {
            name: "spawnprof record --no-raw-tracepoint",
            wrap: rec(&["--no-raw-tracepoint"]),
            daemon: None,
        },
        // Always on (issue 20): the workload runs alone while a serve
        // started for the run keeps the histograms.
        Setup {
            name: "spawnprof serve --all",
            wrap: alone(),
            daemon: Some(Box::new(move || Serve::start(&serve_all, &["--all"]))),
        },
    ];
    match empty {
        Some(empty) => setups.extend(bpftrace_setups(empty)),
        None => println!("SKIPPED: bpftrace comparison (apt-get install bpftrace)"),
    }
    setups
}

/// bpftrace beside spawnprof: the same stages, the floor of any tool on
/// the syscall tracepoints, and `empty` (empty programs on spawnprof's own
/// classic tracepoints).
fn bpftrace_setups(empty: String) -> Vec<Setup> {
    vec![
        Setup {
            name: "bpftrace, the same stages",
            wrap: Box::new(|argv: &[String]| bpftrace_running(BPFTRACE_STAGES, argv)),
            daemon: None,
        },
        // The floor of any tool on the syscall tracepoints: one attached
        // to a syscall nobody makes still sends every syscall of every
        // task through the kernel's slow entry and exit path.
        Setup {
            name: FLOOR,
            wrap: Box::new(|argv: &[String]| bpftrace_running(IDLE_SYSCALL_TP, argv)),
            daemon: None,
        },
        // Every stage entered, no work done: what `record
        // --no-raw-tracepoint` adds beyond this is its programs' own work.
        Setup {
            name: "bpftrace, empty programs on those tracepoints",
            wrap: Box::new(move |argv: &[String]| bpftrace_running(&empty, argv)),
            daemon: None,
        },
    ]
}

/// The C loop's serial posix_spawn of /bin/true, unpinned and pinned to
/// CPU 0 (parent and child on one CPU: every probe's cost lands in the
/// loop) when taskset is there.
fn workloads(spawn_loop: &Path) -> Vec<Workload> {
    let c_loop = [
        spawn_loop.display().to_string(),
        "posix-spawn".into(),
        COUNT.into(),
    ];
    let mut workloads = vec![Workload {
        name: "C loop, posix_spawn /bin/true, serial",
        argv: c_loop.to_vec(),
    }];
    match cmd::find_in_path("taskset") {
        Some(t) => workloads.push(Workload {
            name: "the same, pinned to CPU 0",
            argv: [t.display().to_string(), "-c".into(), "0".into()]
                .into_iter()
                .chain(c_loop)
                .collect(),
        }),
        None => println!("SKIPPED: the pinned workload (taskset, from util-linux, is missing)"),
    }
    workloads
}

/// Runs every setup on every workload `rounds` times, each as ratios
/// against the same round's run without probes.
fn measure(setups: &[&Setup], workloads: &[Workload], rounds: usize) -> Result<Ratios> {
    let mut ratios: Ratios = vec![vec![(Vec::new(), Vec::new()); setups.len()]; workloads.len()];
    for round in 0..rounds {
        eprintln!("bench-overhead: round {} of {rounds}", round + 1);
        for (w, workload) in workloads.iter().enumerate() {
            let mut base = (0.0, 0.0);
            for (i, s) in setups.iter().enumerate() {
                let _daemon = s.daemon.as_ref().map(|start| start()).transpose()?;
                let output = (s.wrap)(&workload.argv).stderr(Stdio::null()).output()?;
                if !output.status.success() {
                    bail!("{} failed: {}", s.name, output.status);
                }
                let (rate, p50) = loop_rate_and_p50(&output.stdout)?;
                if i == 0 {
                    base = (rate, p50);
                }
                ratios[w][i].0.push(rate / base.0);
                // A spawn call twice as slow is a ratio of 0.5, like the rate.
                ratios[w][i].1.push(base.1 / p50);
            }
        }
    }
    Ok(ratios)
}

fn print_ratios(setups: &[Setup], workloads: &[Workload], ratios: &Ratios, rounds: usize) {
    println!(
        "| workload | setup | loop rate vs no probes (median of {rounds} [range]) | \
         spawn call p50 vs no probes |"
    );
    println!("|---|---|---:|---:|");
    for (workload, per_setup) in workloads.iter().zip(ratios) {
        for (setup, (rates, p50s)) in setups.iter().zip(per_setup).skip(1) {
            println!(
                "| {} | {} | {} | {} |",
                workload.name,
                setup.name,
                spread(rates, 3),
                spread(p50s, 3)
            );
        }
    }
}

/// serve's target (0.98 of no probes) lies within this host's run-to-run
/// noise, too close for a handful of rounds to settle: `extra` more
/// interleaved rounds of no probes, serve and the floor alone, pooled with
/// the first ones, reported as the median and the quartiles.
fn serve_closer(
    setups: &[Setup],
    workloads: &[Workload],
    first: &Ratios,
    extra: usize,
) -> Result<()> {
    let picked: Vec<usize> = (0..setups.len())
        .filter(|&i| i == 0 || setups[i].daemon.is_some() || setups[i].name == FLOOR)
        .collect();
    let subset: Vec<&Setup> = picked.iter().map(|&i| &setups[i]).collect();
    let more = measure(&subset, workloads, extra)?;
    let n = extra + first[0][0].0.len();
    println!(
        "\nserve and the floor, {n} interleaved rounds (the {} above and {extra} more):\n\n\
         | workload | setup | loop rate vs no probes, median [quartiles] | spawn call p50 vs no \
         probes |\n|---|---|---:|---:|",
        n - extra
    );
    let pool = |a: &[f64], b: &[f64]| a.iter().chain(b).copied().collect::<Vec<_>>();
    for (w, workload) in workloads.iter().enumerate() {
        for (j, &i) in picked.iter().enumerate().skip(1) {
            let (a, b) = (&first[w][i], &more[w][j]);
            println!(
                "| {} | {} | {} | {} |",
                workload.name,
                setups[i].name,
                quartiles(&pool(&a.0, &b.0), 3),
                quartiles(&pool(&a.1, &b.1), 3),
            );
        }
    }
    Ok(())
}

/// The in-kernel cost per spawn of the default recording and of bpftrace
/// doing the same stages: `rounds` pairs of runs, interleaved as the rates
/// are, so that a slow minute of this VM weighs on both. Returns each
/// side's median run (bpftrace's when it is installed).
fn in_kernel_cost(
    spawnprof: &Path,
    out: &Path,
    workload: &Workload,
    have_bpftrace: bool,
    rounds: usize,
) -> Result<(RunTime, Option<RunTime>)> {
    let spawns = spawns_per_run();
    let (mut summaries, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        summaries.push(probe_cost_run(spawnprof, out, workload)?);
        if have_bpftrace {
            let argv = &workload.argv;
            theirs.push(peer_cost::bpftrace_cost(BPFTRACE_STAGES, argv, spawns)?);
        }
    }
    let ours: Vec<RunTime> = summaries.iter().map(run_time).collect();
    print_probe_cost(&summaries, &ours, workload);
    if theirs.is_empty() {
        println!("SKIPPED: bpftrace's in-kernel time (apt-get install bpftrace)");
        return Ok((middle(&ours), None));
    }
    let ratios: Vec<f64> = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| a.us_per_spawn / b.us_per_spawn)
        .collect();
    println!(
        "bpftrace running the same stages, same workload, in the same rounds: {} µs of BPF run \
         time per spawn ({:.0} program runs per spawn); spawnprof's time over bpftrace's, round \
         by round: {}",
        spread(&us_per_spawn(&theirs), 2),
        middle(&theirs).runs_per_spawn,
        spread(&ratios, 2),
    );
    Ok((middle(&ours), Some(middle(&theirs))))
}

/// The BPF run time per spawn in one `--probe-cost` summary.
fn run_time(summary: &serde_json::Value) -> RunTime {
    let cost = &summary["probe_cost"];
    let spawns = spawns_of(summary);
    RunTime {
        us_per_spawn: cost["bpf_ns"].as_u64().unwrap_or(0) as f64 / spawns / 1000.0,
        runs_per_spawn: cost["bpf_runs"].as_u64().unwrap_or(0) as f64 / spawns,
    }
}

/// The spawns a `--probe-cost` summary's figures are divided by.
fn spawns_of(summary: &serde_json::Value) -> f64 {
    summary["probe_cost"]["spawns"].as_u64().unwrap_or(0).max(1) as f64
}

fn us_per_spawn(runs: &[RunTime]) -> Vec<f64> {
    runs.iter().map(|t| t.us_per_spawn).collect()
}

/// The run whose time per spawn is the median.
fn middle(runs: &[RunTime]) -> RunTime {
    runs[median_index(runs)]
}

fn median_index(runs: &[RunTime]) -> usize {
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| runs[a].us_per_spawn.total_cmp(&runs[b].us_per_spawn));
    order[order.len() / 2]
}

/// spawnprof's side: its BPF time, its own CPU and the parking's, and the
/// programs of the median run.
fn print_probe_cost(summaries: &[serde_json::Value], times: &[RunTime], workload: &Workload) {
    let per_spawn = |pointer: &str| -> Vec<f64> {
        summaries
            .iter()
            .map(|s| {
                s.pointer(pointer).and_then(|v| v.as_u64()).unwrap_or(0) as f64
                    / spawns_of(s)
                    / 1000.0
            })
            .collect()
    };
    println!(
        "\n`record --probe-cost`, {} (median of {} runs [range]): {} µs of probe run time per \
         spawn in the kernel; spawnprof's own CPU {} µs per spawn, of which {} µs parking the \
         fork-only probes (once a run: the kernel re-patches their call sites)",
        workload.name,
        times.len(),
        spread(&us_per_spawn(times), 2),
        spread(&per_spawn("/probe_cost/reader_cpu_ns"), 2),
        spread(&per_spawn("/probe_cost/parking_cpu_ns"), 2),
    );
    let median = median_index(times);
    let summary = &summaries[median];
    program_table(
        &summary["probe_cost"],
        spawns_of(summary),
        times[median].runs_per_spawn,
    );
}

/// One `record --probe-cost` of `workload`: its summary.json.
fn probe_cost_run(spawnprof: &Path, out: &Path, workload: &Workload) -> Result<serde_json::Value> {
    let dir = out.join("probe-cost");
    super::recorded_summary(spawnprof, &dir, &["--probe-cost"], &workload.argv)
}

/// Each probe program's runs and run time per spawn in one summary's
/// `probe_cost`, of `spawns` spawns.
fn program_table(cost: &serde_json::Value, spawns: f64, runs_per_spawn: f64) {
    println!(
        "\nits programs ({runs_per_spawn:.0} runs per spawn):\n\n| probe program | runs/spawn | mean | per spawn |\n|---|---:|---:|---:|"
    );
    let mut programs: Vec<_> = cost["programs"].as_array().into_iter().flatten().collect();
    programs.sort_by_key(|p| std::cmp::Reverse(p["run_ns"].as_u64().unwrap_or(0)));
    for p in programs {
        let runs = p["runs"].as_u64().unwrap_or(0).max(1);
        let ns = p["run_ns"].as_u64().unwrap_or(0);
        println!(
            "| {} | {:.1} | {} ns | {:.2} µs |",
            p["name"].as_str().unwrap_or("?"),
            runs as f64 / spawns,
            ns / runs,
            ns as f64 / spawns / 1000.0
        );
    }
}

/// From the end of a small recording (`record -- CMD`, CMD printing the
/// time as it ends) to spawnprof's exit, five times.
fn end_to_exit(spawnprof: &Path, out: &Path) -> Result<()> {
    let mut ms = Vec::new();
    for _ in 0..5 {
        let output = Command::new(spawnprof)
            .args(["record", "--force", "--no-live", "-o"])
            .arg(out.join("end"))
            .args(["--", "date", "+%s.%N"])
            .stderr(Stdio::null())
            .output()?;
        let exited = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
        let text = String::from_utf8_lossy(&output.stdout);
        let ended: f64 = text
            .lines()
            .find_map(|l| l.trim().parse().ok())
            .context("date printed no time")?;
        ms.push((exited.as_secs_f64() - ended) * 1000.0);
    }
    println!(
        "\nfrom the end of `record -- date` to spawnprof's exit: {} ms (median [range] of 5)",
        spread(&ms, 0)
    );
    Ok(())
}

/// The reference spawner against the C loop, method by method, no probes,
/// pinned to CPU 0 when taskset is there: its p50 spawn call as a fraction
/// of C's speed (1.0: as fast).
fn spawner_against_c(spawn_loop: &Path, rounds: usize) -> Result<()> {
    let spawner = release_bin("spawnprof-spawner");
    let pin: Vec<String> = cmd::find_in_path("taskset")
        .map(|t| vec![t.display().to_string(), "-c".into(), "0".into()])
        .unwrap_or_default();
    println!("\n| method | spawner p50 speed vs the C loop (median of {rounds} [range]) |");
    println!("|---|---:|");
    for method in ["posix-spawn", "fork-exec", "vfork-exec"] {
        let mut speed = Vec::new();
        for _ in 0..rounds {
            let c = run_p50(&pin, spawn_loop, &[method, COUNT])?;
            let args = ["--method", method, "--count", COUNT, "--mode", "serial"];
            let ours = run_p50(&pin, &spawner, &args)?;
            speed.push(c / ours);
        }
        println!("| {method} | {} |", spread(&speed, 3));
    }
    Ok(())
}

/// The median spawn call (µs) of `program args`, run under `prefix`.
fn run_p50(prefix: &[String], program: &Path, args: &[&str]) -> Result<f64> {
    let mut argv: Vec<String> = prefix.to_vec();
    argv.push(program.display().to_string());
    argv.extend(args.iter().map(|a| a.to_string()));
    let output = Command::new(&argv[0])
        .args(&argv[1..])
        .stderr(Stdio::null())
        .output()?;
    Ok(loop_rate_and_p50(&output.stdout)?.1)
}

/// The C loop alone and under `strace -f` (300 spawns: strace is slow).
fn strace_comparison(spawn_loop: &Path) -> Result<()> {
    let args = ["posix-spawn", "300"];
    let plain = Command::new(spawn_loop).args(args).output()?;
    let traced = Command::new("strace")
        .args(["-f", "-o", "/dev/null"])
        .arg(spawn_loop)
        .args(args)
        .stderr(Stdio::null())
        .output()?;
    let (plain, traced) = (
        spawns_per_sec(&plain.stdout)?,
        spawns_per_sec(&traced.stdout)?,
    );
    println!(
        "\nstrace -f: {traced:.0}/s vs {plain:.0}/s without: {:.1}x slower (C loop, posix_spawn, 300)",
        plain / traced
    );
    Ok(())
}
