//! The one JSON line the spawner prints, and the latency statistics in it.

use serde::{Deserialize, Serialize};

use super::{
    config::{HugePages, Method, Mode, Reap},
    cpus::CpuList,
};

/// Per-spawn latency of the timed spawn calls, in ns. Failed attempts are
/// included (they cost time too). Percentiles use the nearest-rank method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    /// Statistics of `samples` (sorted in place).
    pub fn from_samples(samples: &mut [u64]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let rank = |p: f64| samples[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Latency {
            min: samples[0],
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: samples[n - 1],
            mean: sum as f64 / n as f64,
        }
    }
}

/// Result of one spawner run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpawnResult {
    pub method: Method,
    /// Timed spawns attempted.
    pub count: u64,
    pub warmup: u64,
    pub threads: u32,
    pub mode: Mode,
    /// How the children were waited for (absent in older results: waitpid).
    #[serde(default)]
    pub reap: Reap,
    /// `--rss` in bytes.
    pub rss_requested: u64,
    /// Bytes actually mapped for the ballast (rounded up to whole pages).
    pub rss_mapped: u64,
    /// VmRSS before the ballast was allocated.
    pub rss_baseline: u64,
    /// The spawner's own memory mappings (VMAs) before the timed part: a
    /// fork copies each, so they set the floor of its fork-exec (a C
    /// program that only spawns has about 24; absent in older results).
    #[serde(default)]
    pub own_mappings: Option<u64>,
    /// VmRSS (from /proc/self/status) just before the timed part. Hugetlb
    /// pages are not part of VmRSS: see `hugetlb_bytes`.
    pub rss_measured: u64,
    /// AnonHugePages of the spawner (smaps_rollup): THP-backed memory.
    pub anon_huge_bytes: u64,
    /// HugetlbPages of the spawner (/proc/self/status).
    pub hugetlb_bytes: u64,
    pub huge_pages: HugePages,
    /// Extra variables set by `--env-count`/`--env-bytes`.
    pub env_count: u64,
    pub env_bytes: u64,
    /// The whole environment every child received: count and bytes of
    /// `NAME=value` strings (no NULs).
    pub environ_count: u64,
    pub environ_bytes: u64,
    /// `--program` as given, and what it resolves to through PATH.
    pub program: String,
    pub program_resolved: String,
    /// `--minimal-child`: the program was the exit-only one (absent in
    /// older results: false).
    #[serde(default)]
    pub minimal_child: bool,
    pub args: Vec<String>,
    pub path_misses: u32,
    /// Entries in the PATH the children saw (misses included).
    pub path_entries: u64,
    /// Time spent creating processes. Batched mode: wall time of the timed
    /// window (it contains only spawn calls). Serial mode: the per-thread
    /// sum of spawn-call latencies, maximum over threads (the untimed waits
    /// between spawns are excluded).
    pub total_ns: u64,
    /// `t_end_mono_ns - t_start_mono_ns` (includes the waits in serial mode).
    pub window_ns: u64,
    /// `count / total_ns`.
    pub spawns_per_sec: f64,
    pub latency_ns: Latency,
    /// CPU of the spawner process over the timed window: getrusage
    /// (RUSAGE_SELF) deltas, all threads (tokio workers and blocking pool
    /// included). Children's CPU is not included.
    pub parent_user_ns: u64,
    pub parent_sys_ns: u64,
    /// Zygote method: the zygotes' own CPU over the window (where the forks
    /// happen). None for the other methods.
    pub helper_user_ns: Option<u64>,
    pub helper_sys_ns: Option<u64>,
    /// Zygote method: VmRSS of the (first) zygote.
    pub helper_rss: Option<u64>,
    /// Spawn calls that returned an error (including exec failures reported
    /// synchronously by posix_spawn, std, vfork-exec and clone3-vfork).
    pub failed_spawns: u64,
    /// Timed children that exited with status 127: how fork-exec and zygote
    /// children report a failed exec (a program may also exit 127 itself).
    pub children_exit_127: u64,
    pub glibc_version: String,
    pub kernel_release: String,
    /// The kernel's monotonic clock (CLOCK_MONOTONIC outside a time
    /// namespace) at the start and end of the timed window.
    pub t_start_mono_ns: u64,
    pub t_end_mono_ns: u64,
    pub spawner_pid: u32,
    /// The CPUs the spawner and its children could run on (`--cpus`, or
    /// whatever affinity it was started with; absent in older results).
    #[serde(default)]
    pub cpus_allowed: Option<CpuList>,
    /// fork-chain: mean fork latency per tenth of the chain, in order (a
    /// growing anon_vma hierarchy shows as rising windows).
    #[serde(default)]
    pub window_means_ns: Option<Vec<u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let mut s: Vec<u64> = (1..=100).rev().collect();
        let l = Latency::from_samples(&mut s);
        assert_eq!((l.min, l.p50, l.p90, l.p99, l.max), (1, 50, 90, 99, 100));
        assert_eq!(l.mean, 50.5);
        let l = Latency::from_samples(&mut [7]);
        assert_eq!((l.p50, l.p99, l.max, l.mean), (7, 7, 7, 7.0));
        assert_eq!(Latency::from_samples(&mut []), Latency::default());
        let mut s = vec![10, 20, 30, 1000];
        let l = Latency::from_samples(&mut s);
        assert_eq!((l.p50, l.p90, l.p99), (20, 1000, 1000));
    }
}
