//! The benchmark behind `cargo xtask bench-report`: how long, and how
//! much memory, rendering every report of a large recording takes.
use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::export;
use crate::{
    recording::synthetic::write_synthetic_recording,
    sys::{clock::own_cpu_ns, procfs::self_status},
};

/// Peak resident set size of this process so far (VmHWM), in bytes.
pub fn peak_rss_bytes() -> Result<u64> {
    self_status("VmHWM").context("no VmHWM in /proc/self/status")
}

/// User + system CPU time of this process so far, in seconds.
pub fn cpu_seconds() -> f64 {
    own_cpu_ns() as f64 / 1e9
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so a measurement is not
/// charged for what ran before it. False if the kernel refused.
pub fn reset_peak_rss() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// What rendering a synthetic recording cost.
#[derive(Clone, Copy, Debug)]
pub struct BenchReport {
    pub spawns: usize,
    pub wall: Duration,
    /// User + system CPU of the rendering, all threads.
    pub cpu_s: f64,
    /// Peak RSS of the process during the rendering (VmHWM).
    pub peak_rss: u64,
    /// False when the kernel refused to reset VmHWM: then the peak also
    /// covers writing the synthetic input.
    pub peak_reset: bool,
}

/// Renders every report of a synthetic `n`-spawn recording the way
/// `spawnprof report DIR` does (streaming spawns.jsonl from disk), and
/// returns the wall time of the rendering and the peak RSS during it.
///
/// The recording is written to a temporary directory first; that part is
/// not timed, and the peak RSS is reset after it (see [`reset_peak_rss`]),
/// so the figure is what rendering needs — including the process's own
/// baseline (binary, allocator), which a user pays too.
pub fn bench_report(n: usize) -> Result<(Duration, u64)> {
    bench_report_detailed(n).map(|b| (b.wall, b.peak_rss))
}

/// [`bench_report`] with the CPU time as well (on a busy machine the wall
/// time says more about the neighbours than about spawnprof).
pub fn bench_report_detailed(n: usize) -> Result<BenchReport> {
    let dir =
        std::env::temp_dir().join(format!("spawnprof-bench-report-{}-{n}", std::process::id()));
    let result = bench_in(&dir, n);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn bench_in(dir: &Path, n: usize) -> Result<BenchReport> {
    write_synthetic_recording(dir, n, 0x5eed)?;
    let peak_reset = reset_peak_rss();
    let (t0, cpu0) = (Instant::now(), cpu_seconds());
    export::write_all_from_recording(dir)?;
    Ok(BenchReport {
        spawns: n,
        wall: t0.elapsed(),
        cpu_s: cpu_seconds() - cpu0,
        peak_rss: peak_rss_bytes()?,
        peak_reset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_readable() {
        assert!(peak_rss_bytes().unwrap() > 1 << 20);
    }

    /// `cargo test --release -p spawnprof --lib bench_report_one_million -- --ignored --nocapture`
    #[test]
    #[ignore = "a benchmark: run in release mode on purpose"]
    fn bench_report_one_million() {
        let n = std::env::var("SPAWNPROF_BENCH_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let b = bench_report_detailed(n).unwrap();
        let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "bench_report: {n} spawns rendered in {:.2} s (CPU {:.2} s), peak RSS {:.0} MiB{}; loadavg {}",
            b.wall.as_secs_f64(),
            b.cpu_s,
            b.peak_rss as f64 / (1 << 20) as f64,
            if b.peak_reset {
                ""
            } else {
                " (VmHWM not reset: includes writing the input)"
            },
            load.trim()
        );
    }
}
