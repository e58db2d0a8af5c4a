//! Benchmarks that back docs/BENCHMARKS.md (not part of `cargo xtask test`:
//! timing goals are measured, not asserted).
//!
//! - `bench-overhead`: the reference spawner's rate alone, under
//!   `spawnprof record` (with and without stack sampling), under a bpftrace
//!   script of the same spawn tracepoints, and under `strace -f`.
//! - `bench-storm`: both cores spawning /bin/true for 60 s under
//!   `spawnprof record`: marks lost, and spawnprof's memory over time.
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

/// spawns/s reported by the spawner's JSON line in `stdout`.
fn spawns_per_sec(stdout: &[u8]) -> Result<f64> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("\"spawns_per_sec\""))
        .context("no spawner result line")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    v["spawns_per_sec"]
        .as_f64()
        .context("spawns_per_sec missing")
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

/// Builds the command that runs the spawner's argv under one setup.
type Wrap = Box<dyn Fn(&[String]) -> Command>;

struct Setup {
    name: &'static str,
    wrap: Wrap,
}

pub fn overhead(rounds: usize) -> Result<()> {
    let spawner = release_bin("spawnprof-spawner");
    let spawnprof = release_bin("spawnprof");
    let out = cmd::target_dir().join("bench-overhead");
    let have_bpftrace = cmd::find_in_path("bpftrace").is_some();
    let have_strace = cmd::find_in_path("strace").is_some();
    let rec = |extra: &'static [&'static str]| {
        let spawnprof = spawnprof.clone();
        let out = out.clone();
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
    ];
    if have_bpftrace {
        setups.push(Setup {
            name: "bpftrace, 7 spawn tracepoints",
            wrap: Box::new(|argv: &[String]| {
                let mut c = Command::new("bpftrace");
                c.args(["-q", "-e", BPFTRACE_SCRIPT, "-c", &argv.join(" ")]);
                c
            }),
        });
    } else {
        println!("SKIPPED: bpftrace comparison (apt-get install bpftrace)");
    }
    println!(
        "| workload | {} |",
        setups
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---:|".repeat(setups.len()));
    for mode in ["serial", "batched"] {
        let argv: Vec<String> = [
            spawner.to_str().unwrap_or_default(),
            "--method",
            "posix-spawn",
            "--count",
            "3000",
            "--mode",
            mode,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut cells = Vec::new();
        let mut base = 0.0;
        for (i, s) in setups.iter().enumerate() {
            let mut rates = Vec::new();
            for _ in 0..rounds {
                let output = (s.wrap)(&argv).stderr(Stdio::null()).output()?;
                if !output.status.success() {
                    bail!("{} failed: {}", s.name, output.status);
                }
                rates.push(spawns_per_sec(&output.stdout)?);
            }
            let rate = median(rates);
            if i == 0 {
                base = rate;
                cells.push(format!("{rate:.0}/s"));
            } else {
                cells.push(format!(
                    "{rate:.0}/s ({:+.1}%)",
                    100.0 * (rate / base - 1.0)
                ));
            }
        }
        println!(
            "| posix-spawn /bin/true, 3000, {mode} | {} |",
            cells.join(" | ")
        );
    }
    if have_strace {
        let argv = [
            "--method",
            "posix-spawn",
            "--count",
            "300",
            "--mode",
            "serial",
        ];
        let plain = spawns_per_sec(
            &Command::new(&spawner)
                .args(argv)
                .stderr(Stdio::null())
                .output()?
                .stdout,
        )?;
        let traced = Command::new("strace")
            .args(["-f", "-o", "/dev/null"])
            .arg(&spawner)
            .args(argv)
            .stderr(Stdio::null())
            .output()?;
        let traced = spawns_per_sec(&traced.stdout)?;
        println!(
            "\nstrace -f: {traced:.0}/s vs {plain:.0}/s without: {:.1}x slower (posix-spawn, 300, serial)",
            plain / traced
        );
    } else {
        println!("SKIPPED: strace comparison (apt-get install strace)");
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
        "\n{spawns} spawns in {seconds} s ({:.0}/s), {} marks lost, incomplete records: {}, peak VmHWM {} MiB",
        spawns as f64 / seconds as f64,
        summary["lost_marks_total"],
        summary["counts"]["incomplete"],
        peak / 1024
    );
    Ok(())
}
