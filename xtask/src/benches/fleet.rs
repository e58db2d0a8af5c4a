//! `bench-fleet`: what `spawnprof compare` costs on a large fleet
//! (docs/BENCHMARKS.md). One real quick bench of this node is made once
//! (kept in target/bench-fleet/base), copied into N synthetic nodes with
//! their times scaled by 0.9–1.1, and compared; wall time is the median of
//! three runs, with the CPU time and peak RSS of the last.
use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::cmd;

const ROUNDS: usize = 3;

pub fn fleet(nodes: usize) -> Result<()> {
    let spawnprof = cmd::target_dir().join("release/spawnprof");
    let dir = cmd::target_dir().join("bench-fleet");
    let base = dir.join("base");
    if !base.join("bench.json").is_file() {
        real_bench(&spawnprof, &base)?;
    }
    let fleet = dir.join("nodes");
    write_synthetic(&base, &fleet, nodes)?;
    let out = dir.join("report");
    let mut walls = Vec::new();
    let mut last = (0.0, 0);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        last = compare(&spawnprof, &fleet, &out)?;
        walls.push(start.elapsed().as_secs_f64());
    }
    walls.sort_by(f64::total_cmp);
    println!(
        "bench-fleet: spawnprof compare of {nodes} nodes: {:.2} s wall (median of {ROUNDS}), {:.2} s CPU, peak RSS {} MiB",
        walls[ROUNDS / 2],
        last.0,
        last.1 / 1024
    );
    std::fs::remove_dir_all(&fleet).ok();
    Ok(())
}

/// A quick bench of this node with the experiments the fleet figures use.
fn real_bench(spawnprof: &Path, base: &Path) -> Result<()> {
    println!("bench-fleet: one real quick bench first (about a minute)");
    let mut bench = cmd::as_root(spawnprof)?;
    bench
        .args(["bench", "--quick", "--no-overhead", "--node-name", "base"])
        .args(["--experiments", "method-rss,placement,path", "-o"])
        .arg(base);
    cmd::run(&mut bench)
}

/// `nodes` copies of the base bench, node i's times scaled by 0.9–1.1.
fn write_synthetic(base: &Path, fleet: &Path, nodes: usize) -> Result<()> {
    let text = std::fs::read_to_string(base.join("bench.json"))?;
    let template: Value = serde_json::from_str(&text)?;
    std::fs::remove_dir_all(fleet).ok();
    for i in 0..nodes {
        let mut node = template.clone();
        let factor = 0.9 + 0.2 * ((i * 37) % 100) as f64 / 100.0;
        node["node"]["node_name"] = Value::from(format!("node{i:05}"));
        for config in node["configs"].as_array_mut().context("configs")? {
            let spawner = &mut config["spawner"];
            for key in ["p50", "mean"] {
                let v = spawner["latency_ns"][key].as_f64().unwrap_or(0.0) * factor;
                spawner["latency_ns"][key] = Value::from(v.round() as u64);
            }
            let rate = spawner["spawns_per_sec"].as_f64().unwrap_or(0.0) / factor;
            spawner["spawns_per_sec"] = Value::from(rate);
        }
        let d = fleet.join(format!("node{i:05}"));
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("bench.json"), serde_json::to_string(&node)?)?;
    }
    Ok(())
}

/// Runs compare; its (CPU seconds, peak RSS in KiB).
fn compare(spawnprof: &Path, fleet: &Path, out: &Path) -> Result<(f64, i64)> {
    let child = Command::new(spawnprof)
        .arg("compare")
        .arg(fleet)
        .arg("-o")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("running spawnprof compare")?;
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    // SAFETY: status and usage are valid for writes; the pid is our child's.
    if unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) } < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("spawnprof compare failed (status {status})");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((secs(usage.ru_utime) + secs(usage.ru_stime), usage.ru_maxrss))
}
