//! Benchmarks that back docs/BENCHMARKS.md (not part of `cargo xtask test`:
//! timing goals are measured, not asserted).
//!
//! - `bench-overhead`: the reference spawner's rate alone, under
//!   `spawnprof record` (with and without stack sampling), under a bpftrace
//!   script of the same spawn tracepoints and under a single no-op syscall
//!   tracepoint (the floor of any syscall-tracepoint tracer), and under
//!   `strace -f`; then the probes' own run time per spawn
//!   (`record --probe-cost`).
//! - `bench-storm`: both cores spawning /bin/true for 60 s under
//!   `spawnprof record`: spawns lost, and spawnprof's memory over time.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::cmd;

fn release_bin(name: &str) -> PathBuf {
    cmd::target_dir().join("release").join(name)
}

/// The spawner's JSON line in `stdout`.
fn spawner_result(stdout: &[u8]) -> Result<serde_json::Value> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("\"spawns_per_sec\""))
        .context("no spawner result line")?;
    Ok(serde_json::from_str(line)?)
}

/// The number at JSON `pointer` in a spawner result.
fn number(v: &serde_json::Value, pointer: &str) -> Result<f64> {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .with_context(|| format!("{pointer} missing from the spawner's result"))
}

/// spawns/s reported by the spawner's JSON line in `stdout`.
fn spawns_per_sec(stdout: &[u8]) -> Result<f64> {
    number(&spawner_result(stdout)?, "/spawns_per_sec")
}

/// (spawns/s, median latency of the spawn call in µs) from `stdout`. The
/// median is the steadier figure on a VM: a few host stalls dominate the
/// mean, and so the rate.
fn rate_and_p50(stdout: &[u8]) -> Result<(f64, f64)> {
    let v = spawner_result(stdout)?;
    Ok((
        number(&v, "/spawns_per_sec")?,
        number(&v, "/latency_ns/p50")? / 1000.0,
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The bpftrace comparison: the same spawn tracepoints, each doing a map
/// update, filtered on nothing (bpftrace has no traced-set map).
const BPFTRACE_SCRIPT: &str = r#"
tracepoint:syscalls:sys_enter_clone, tracepoint:syscalls:sys_enter_clone3,
tracepoint:syscalls:sys_exit_clone, tracepoint:syscalls:sys_exit_clone3,
tracepoint:syscalls:sys_enter_execve,
tracepoint:sched:sched_process_exec, tracepoint:sched:sched_process_exit
{ @[probe] = count(); @t[tid] = nsecs; }
"#;

/// The floor of any syscall-tracepoint tracer: one syscall tracepoint whose
/// program does nothing. Attaching any syscall tracepoint sends every
/// syscall of every task through the kernel's slow syscall-entry path, and
/// a glibc posix_spawn child makes about 120 syscalls (mostly rt_sigaction)
/// before its exec, inside the timed spawn call.
const BPFTRACE_FLOOR: &str = "tracepoint:syscalls:sys_enter_wait4 /pid == 1/ {}";

/// Builds the command that runs the spawner's argv under one setup.
type Wrap = Box<dyn Fn(&[String]) -> Command>;

struct Setup {
    name: &'static str,
    wrap: Wrap,
}

struct Workload {
    name: &'static str,
    argv: Vec<String>,
}

/// `rounds` runs of every setup on every workload, interleaved (setup A,
/// B, C, then A, B, C again…) so a slow minute of this VM hits every setup
/// alike; the median and the range of each are printed.
pub fn overhead(rounds: usize) -> Result<()> {
    let spawner = release_bin("spawnprof-spawner");
    let spawnprof = release_bin("spawnprof");
    let out = cmd::target_dir().join("bench-overhead");
    let (have_bpftrace, have_strace) = install_peers();
    let setups = setups(&spawnprof, &out, have_bpftrace);
    let workloads = workloads(&spawner);
    let (rates, p50s) = measure(&setups, &workloads, rounds)?;
    let names: Vec<&str> = setups.iter().map(|s| s.name).collect();
    print_table(
        &format!("spawn rate: workload (median of {rounds}, range)"),
        &names,
        &workloads,
        &rates,
        ("/s", 0),
    );
    println!();
    print_table(
        &format!("median spawn call (p50, µs): workload (median of {rounds}, range)"),
        &names,
        &workloads,
        &p50s,
        (" µs", 1),
    );
    // Pinned when possible: the child then runs where the probes' cost lands.
    let costed = workloads
        .iter()
        .find(|w| w.name.contains("pinned"))
        .unwrap_or(&workloads[0]);
    probe_cost(&spawnprof, &out, costed)?;
    if have_strace {
        strace_comparison(&spawner)
    } else {
        println!("SKIPPED: strace comparison (apt-get install strace)");
        Ok(())
    }
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

/// The setups each workload runs under: alone, under spawnprof in three
/// configurations, and under the two bpftrace scripts when there is bpftrace.
fn setups(spawnprof: &Path, out: &Path, have_bpftrace: bool) -> Vec<Setup> {
    let rec = |extra: &'static [&'static str]| {
        let spawnprof = spawnprof.to_path_buf();
        let out = out.to_path_buf();
        Box::new(move |argv: &[String]| {
            let mut c = Command::new(&spawnprof);
            c.args(["record", "--force", "-o"])
                .arg(&out)
                .args(extra)
                .arg("--")
                .args(argv);
            c
        }) as Wrap
    };
    let bpftrace = |script: &'static str| {
        Box::new(move |argv: &[String]| {
            let mut c = Command::new("bpftrace");
            c.args(["-q", "-e", script, "-c", &argv.join(" ")]);
            c
        }) as Wrap
    };
    let mut setups = vec![
        Setup {
            name: "no probes",
            wrap: Box::new(|argv: &[String]| {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }),
        },
        Setup {
            name: "spawnprof record",
            wrap: rec(&[]),
        },
        Setup {
            name: "spawnprof record --sample-hz 0",
            wrap: rec(&["--sample-hz", "0"]),
        },
        // Attribution: the same without the probes on per-event
        // tracepoints (on kernels with fentry/kprobes, nothing changes).
        Setup {
            name: "spawnprof record --low-overhead",
            wrap: rec(&["--low-overhead"]),
        },
    ];
    if have_bpftrace {
        setups.push(Setup {
            name: "bpftrace, 7 spawn tracepoints",
            wrap: bpftrace(BPFTRACE_SCRIPT),
        });
        setups.push(Setup {
            name: "bpftrace, 1 no-op syscall tracepoint",
            wrap: bpftrace(BPFTRACE_FLOOR),
        });
    } else {
        println!("SKIPPED: bpftrace comparison (apt-get install bpftrace)");
    }
    setups
}

/// posix-spawn of /bin/true 3000 times: serial, pinned to one CPU (with and
/// without --minimal-child) when taskset is there, and batched.
fn workloads(spawner: &Path) -> Vec<Workload> {
    let taskset = cmd::find_in_path("taskset");
    let spawner_argv = |mode: &str, pinned: bool, extra: &[&str]| -> Vec<String> {
        let mut v = Vec::new();
        if pinned && let Some(t) = &taskset {
            v.extend([t.display().to_string(), "-c".into(), "0".into()]);
        }
        v.extend(
            [
                spawner.to_str().unwrap_or_default(),
                "--method",
                "posix-spawn",
                "--count",
                "3000",
                "--mode",
                mode,
            ]
            .iter()
            .chain(extra)
            .map(|s| s.to_string()),
        );
        v
    };
    let mut workloads = vec![Workload {
        name: "posix-spawn /bin/true, 3000, serial",
        argv: spawner_argv("serial", false, &[]),
    }];
    if taskset.is_some() {
        workloads.push(Workload {
            name: "the same, pinned to CPU 0",
            argv: spawner_argv("serial", true, &[]),
        });
        // The steadiest figure: no glibc start-up in the child between
        // spawns to swing the timings and evict the probes' cache lines.
        workloads.push(Workload {
            name: "the same with --minimal-child (exit-only program)",
            argv: spawner_argv("serial", true, &["--minimal-child"]),
        });
    } else {
        println!("SKIPPED: the pinned workload (taskset, from util-linux, is missing)");
    }
    workloads.push(Workload {
        name: "posix-spawn /bin/true, 3000, batched",
        argv: spawner_argv("batched", false, &[]),
    });
    workloads
}

/// One value per round, per setup, per workload: `[workload][setup][round]`.
type PerRound = Vec<Vec<Vec<f64>>>;

/// Runs every setup on every workload `rounds` times: (rates, p50s).
fn measure(
    setups: &[Setup],
    workloads: &[Workload],
    rounds: usize,
) -> Result<(PerRound, PerRound)> {
    let mut rates = vec![vec![Vec::new(); setups.len()]; workloads.len()];
    let mut p50s = rates.clone();
    for round in 0..rounds {
        eprintln!("bench-overhead: round {} of {rounds}", round + 1);
        for (w, workload) in workloads.iter().enumerate() {
            for (i, s) in setups.iter().enumerate() {
                let output = (s.wrap)(&workload.argv).stderr(Stdio::null()).output()?;
                if !output.status.success() {
                    bail!("{} failed: {}", s.name, output.status);
                }
                let (rate, p50) = rate_and_p50(&output.stdout)?;
                rates[w][i].push(rate);
                p50s[w][i].push(p50);
            }
        }
    }
    Ok((rates, p50s))
}

/// The spawner's rate alone and under `strace -f` (300 spawns: strace is slow).
fn strace_comparison(spawner: &Path) -> Result<()> {
    let argv = [
        "--method",
        "posix-spawn",
        "--count",
        "300",
        "--mode",
        "serial",
    ];
    let plain = spawns_per_sec(
        &Command::new(spawner)
            .args(argv)
            .stderr(Stdio::null())
            .output()?
            .stdout,
    )?;
    let traced = Command::new("strace")
        .args(["-f", "-o", "/dev/null"])
        .arg(spawner)
        .args(argv)
        .stderr(Stdio::null())
        .output()?;
    let traced = spawns_per_sec(&traced.stdout)?;
    println!(
        "\nstrace -f: {traced:.0}/s vs {plain:.0}/s without: {:.1}x slower (posix-spawn, 300, serial)",
        plain / traced
    );
    Ok(())
}

/// A markdown table of `values[workload][setup]` (one value per round):
/// the median, its change against the first setup, and the range, with
/// `unit` and as many decimals as `digits`.
fn print_table(
    title: &str,
    setups: &[&str],
    workloads: &[Workload],
    values: &[Vec<Vec<f64>>],
    (unit, digits): (&str, usize),
) {
    println!("| {title} | {} |", setups.join(" | "));
    println!("|---|{}", "---:|".repeat(setups.len()));
    for (workload, per_setup) in workloads.iter().zip(values) {
        let base = median(per_setup[0].clone());
        let cells: Vec<String> = per_setup
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let m = median(r.clone());
                let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = r.iter().copied().fold(0.0, f64::max);
                let change = if i == 0 {
                    String::new()
                } else {
                    format!(" ({:+.1}%)", 100.0 * (m / base - 1.0))
                };
                format!("{m:.digits$}{unit}{change} [{lo:.digits$}–{hi:.digits$}]")
            })
            .collect();
        println!("| {} | {} |", workload.name, cells.join(" | "));
    }
}

/// What the probes themselves cost per spawn (`record --probe-cost`): a
/// figure that does not swing with the VM's scheduling the way rates do.
fn probe_cost(spawnprof: &Path, out: &Path, workload: &Workload) -> Result<()> {
    let status = Command::new(spawnprof)
        .args([
            "record",
            "--force",
            "--probe-cost",
            "--sample-hz",
            "0",
            "-o",
        ])
        .arg(out)
        .arg("--")
        .args(&workload.argv)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("spawnprof record --probe-cost failed: {status}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json"))?)?;
    let cost = &summary["probe_cost"];
    let spawns = cost["spawns"].as_u64().unwrap_or(0).max(1) as f64;
    let per = |v: &serde_json::Value| v.as_u64().unwrap_or(0) as f64 / spawns / 1000.0;
    println!(
        "\n`record --probe-cost`, {}: {:.1} µs of probe run time per spawn in the kernel \
         ({:.0} program runs per spawn); spawnprof's own CPU {:.1} µs per spawn (on the other core)",
        workload.name,
        per(&cost["bpf_ns"]),
        cost["bpf_runs"].as_u64().unwrap_or(0) as f64 / spawns,
        per(&cost["reader_cpu_ns"]),
    );
    println!("\n| probe program | runs/spawn | mean | per spawn |\n|---|---:|---:|---:|");
    for p in cost["programs"].as_array().into_iter().flatten() {
        let runs = p["runs"].as_u64().unwrap_or(0);
        let ns = p["run_ns"].as_u64().unwrap_or(0);
        if runs == 0 {
            continue;
        }
        println!(
            "| {} | {:.1} | {} ns | {:.2} µs |",
            p["name"].as_str().unwrap_or("?"),
            runs as f64 / spawns,
            ns / runs,
            ns as f64 / spawns / 1000.0
        );
    }
    Ok(())
}

fn vm_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn storm(seconds: u64) -> Result<()> {
    let spawnprof = release_bin("spawnprof");
    let out: &Path = &cmd::target_dir().join("bench-storm");
    let script = "(while :; do /bin/true; done) & (while :; do /bin/true; done) & wait";
    let mut child = Command::new(&spawnprof)
        .args(["record", "--force", "-o"])
        .arg(out)
        .args([
            "--rows",
            "0",
            "--",
            "timeout",
            &seconds.to_string(),
            "sh",
            "-c",
            script,
        ])
        .stderr(Stdio::null())
        .spawn()
        .context("starting spawnprof")?;
    let start = Instant::now();
    println!("| t (s) | spawnprof VmRSS |");
    println!("|---:|---:|");
    let mut peak = 0;
    while child.try_wait()?.is_none() {
        std::thread::sleep(Duration::from_secs(5));
        if let Some(rss) = vm_kib(child.id(), "VmRSS:") {
            println!("| {} | {} MiB |", start.elapsed().as_secs(), rss / 1024);
        }
        peak = peak.max(vm_kib(child.id(), "VmHWM:").unwrap_or(0));
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json"))?)?;
    let spawns = summary["counts"]["spawns"].as_u64().unwrap_or(0);
    println!(
        "\n{spawns} spawns in {seconds} s ({:.0}/s), {} spawns lost ({}), incomplete records: {}, peak VmHWM {} MiB",
        spawns as f64 / seconds as f64,
        summary["lost_spawns"],
        summary["lost"],
        summary["counts"]["incomplete"],
        peak / 1024
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spawners_rate_and_median_are_read_from_its_last_result_line() {
        let out = b"noise\n{\"spawns_per_sec\":9500.5,\"latency_ns\":{\"p50\":81500}}\n";
        assert_eq!(spawns_per_sec(out).unwrap(), 9500.5);
        assert_eq!(rate_and_p50(out).unwrap(), (9500.5, 81.5));
        let err = rate_and_p50(b"{\"spawns_per_sec\":1}").unwrap_err();
        assert!(format!("{err:#}").contains("/latency_ns/p50"), "{err:#}");
        assert!(spawns_per_sec(b"no result").is_err());
    }
}
