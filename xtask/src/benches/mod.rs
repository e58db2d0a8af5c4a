//! Benchmarks that back docs/BENCHMARKS.md (not part of `cargo xtask test`:
//! timing goals are measured, not asserted).
//!
//! - `bench-overhead` (`overhead.rs`): a plain C spawn loop (`spawn_loop.c`)
//!   alone, under `spawnprof record` (default and `--low-overhead`), beside
//!   an always-on `spawnprof serve --all`, and under a bpftrace script
//!   timing the same stages, in interleaved rounds, as ratios against no
//!   probes (serve and the floor for three times the rounds again, as
//!   serve's target is within this host's noise); the probes' own run time
//!   and spawnprof's CPU per spawn (`record --probe-cost`), beside
//!   bpftrace's programs' run time, one-line programs inside the spawn and
//!   what the run-time statistics cost themselves (`peer_cost.rs`); serve's
//!   CPU at 1,000 spawns/s (`serve.rs`); the time from a small recording's
//!   end to spawnprof's exit; the reference spawner against the C loop;
//!   `strace -f`; and the same ratio for the fentry and kprobe tiers inside
//!   the QEMU guests (`guests.rs`).
//! - `bench-storm` (`storm.rs`): both cores spawning /bin/true for 60 s
//!   under `spawnprof record`: spawns lost, and spawnprof's memory over time.
//! - `bench-serve` (`serve.rs`): what always-on `spawnprof serve` costs.
//! - `bench-fleet` (`fleet.rs`): `spawnprof compare` on 1,000 synthetic
//!   nodes made from one real bench.
mod fleet;
mod guests;
mod idle_window;
mod overhead;
mod peer_cost;
mod serve;
mod serve_process;
mod storm;
mod switches;

pub use fleet::fleet;
pub use overhead::overhead;
pub use serve::run as serve;
pub use storm::storm;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// One quiet `spawnprof record FLAGS -o DIR -- ARGV`: its summary.json.
fn recorded_summary(
    spawnprof: &Path,
    dir: &Path,
    flags: &[&str],
    argv: &[String],
) -> Result<serde_json::Value> {
    let status = Command::new(spawnprof)
        .args(["record", "--force", "--no-live"])
        .args(flags)
        .arg("-o")
        .arg(dir)
        .arg("--")
        .args(argv)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("spawnprof record {} failed: {status}", flags.join(" "));
    }
    Ok(serde_json::from_str(&std::fs::read_to_string(
        dir.join("summary.json"),
    )?)?)
}

fn release_bin(name: &str) -> PathBuf {
    cmd::target_dir().join("release").join(name)
}

/// The spawner's (or the C loop's) JSON line in `stdout`.
fn spawner_result(stdout: &[u8]) -> Result<serde_json::Value> {
    spawner_json(stdout, "spawns_per_sec")
}

/// The last JSON line in `stdout` that has `key`.
fn spawner_json(stdout: &[u8], key: &str) -> Result<serde_json::Value> {
    let text = String::from_utf8_lossy(stdout);
    let quoted = format!("\"{key}\"");
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains(&quoted))
        .with_context(|| format!("no result line with {key}"))?;
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

/// (whole-loop spawns/s, median spawn call in µs) from `stdout`: the C
/// loop's `loop_per_sec`, or the spawner's count over its window. The
/// median is the steadier figure on a VM: a few host stalls dominate the
/// mean, and so the rate.
fn loop_rate_and_p50(stdout: &[u8]) -> Result<(f64, f64)> {
    let v = spawner_result(stdout)?;
    let rate = match number(&v, "/loop_per_sec") {
        Ok(r) => r,
        Err(_) => number(&v, "/count")? * 1e9 / number(&v, "/window_ns")?,
    };
    Ok((rate, number(&v, "/latency_ns/p50")? / 1000.0))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// "median [lowest–highest]" of `v`, with `digits` decimals.
fn spread(v: &[f64], digits: usize) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    format!(
        "{:.digits$} [{lo:.digits$}–{hi:.digits$}]",
        median(v.to_vec())
    )
}

/// "median [first quartile–third quartile]" of `v`, with `digits` decimals.
fn quartiles(v: &[f64], digits: usize) -> String {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: usize| v[(v.len() - 1) * q / 4];
    format!(
        "{:.digits$} [{:.digits$}–{:.digits$}]",
        median(v.clone()),
        at(1),
        at(3)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_medians_are_read_from_the_last_result_line() {
        let c = b"noise\n{\"spawns_per_sec\":9500.5,\"loop_per_sec\":4000,\"latency_ns\":{\"p50\":81500}}\n";
        assert_eq!(spawns_per_sec(c).unwrap(), 9500.5);
        assert_eq!(loop_rate_and_p50(c).unwrap(), (4000.0, 81.5));
        let spawner = b"{\"spawns_per_sec\":1,\"count\":10,\"window_ns\":5000000,\"latency_ns\":{\"p50\":1000}}";
        assert_eq!(loop_rate_and_p50(spawner).unwrap(), (2000.0, 1.0));
        let err = loop_rate_and_p50(b"{\"spawns_per_sec\":1,\"loop_per_sec\":1}").unwrap_err();
        assert!(format!("{err:#}").contains("/latency_ns/p50"), "{err:#}");
        assert!(spawns_per_sec(b"no result").is_err());
    }

    #[test]
    fn a_spread_is_the_median_and_the_range() {
        assert_eq!(spread(&[0.9, 1.1, 1.0], 2), "1.00 [0.90–1.10]");
    }

    #[test]
    fn quartiles_leave_out_the_outer_quarters() {
        let v = [5.0, 1.0, 9.0, 3.0, 7.0];
        assert_eq!(quartiles(&v, 0), "5 [3–7]");
    }
}
