//! `cargo xtask bench-storm`: both cores spawning /bin/true for a minute
//! under `spawnprof record`.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::release_bin;
use crate::cmd;

pub(super) fn vm_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Spawns lost, records left incomplete, and spawnprof's memory every 5 s.
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
