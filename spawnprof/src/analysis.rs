//! Summaries of many spawns: per-stage distributions and counts, and the
//! hidden costs they paid ([`hidden`]).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{
    ALL_STAGES, Durations, SPAWN_TIME, SPAWN_TIME_NODES, SpawnRecord, spawn_times, stage_names,
};

mod hidden;
pub use hidden::{HiddenCost, HiddenCosts};

/// Distribution of one stage's duration over the spawns that have it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageStats {
    /// Spawns where the stage was measured.
    pub count: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    pub total_ns: u64,
}

impl StageStats {
    /// Nearest-rank percentiles over `values` (sorted in place).
    pub fn from_values(values: &mut [u64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_unstable();
        let n = values.len();
        let pct = |p: f64| values[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        // Durations from garbage timestamps can add up past u64.
        let total: u128 = values.iter().map(|&v| u128::from(v)).sum();
        Self {
            count: n as u64,
            // At most the largest value, so it fits.
            mean_ns: (total / n as u128) as u64,
            p50_ns: pct(0.50),
            p90_ns: pct(0.90),
            p99_ns: pct(0.99),
            max_ns: values[n - 1],
            total_ns: u64::try_from(total).unwrap_or(u64::MAX),
        }
    }
}

/// Durations kept exactly, per distribution, before it turns into a
/// histogram: 128 KiB at most (some 3 MiB over every stage), and exact
/// percentiles for recordings of up to 16,384 spawns. Beyond, the 0.1%
/// histogram error stays below the three digits the reports print.
const EXACT_VALUES: usize = 16_384;
/// A histogram bucket holds the values that share their top
/// `HISTOGRAM_BITS` bits: percentiles within 1/1024 (0.1%) of the exact
/// ones. Values below 2^HISTOGRAM_BITS are exact.
const HISTOGRAM_BITS: u32 = 11;

/// The durations of one stage, as they arrive. Exact up to
/// [`EXACT_VALUES`] of them; past that a log-linear histogram (sparse: a
/// few thousand buckets in practice), so a recording of hours keeps a
/// fixed amount of memory per stage instead of 8 bytes per spawn. Count,
/// total, mean and maximum stay exact either way.
#[derive(Clone, Debug, Default)]
pub struct Distribution {
    exact: Vec<u64>,
    /// Bucket key ([`bucket_key`]) -> values in it; used once `exact` is full.
    histogram: BTreeMap<u64, u64>,
    count: u64,
    total: u128,
    max: u64,
}

impl Distribution {
    pub fn push(&mut self, value: u64) {
        self.count += 1;
        self.total += u128::from(value);
        self.max = self.max.max(value);
        if self.histogram.is_empty() && self.exact.len() < EXACT_VALUES {
            self.exact.push(value);
            return;
        }
        for v in std::mem::take(&mut self.exact) {
            *self.histogram.entry(bucket_key(v)).or_default() += 1;
        }
        *self.histogram.entry(bucket_key(value)).or_default() += 1;
    }

    pub fn stats(&mut self) -> StageStats {
        if self.histogram.is_empty() {
            return StageStats::from_values(&mut self.exact);
        }
        let n = self.count;
        // Nearest rank, as for exact values; the bucket's middle stands for
        // its values, and nothing above the true maximum is reported.
        let pct = |p: f64| -> u64 {
            let rank = ((p * n as f64).ceil() as u64).clamp(1, n);
            let mut seen = 0;
            for (&key, &count) in &self.histogram {
                seen += count;
                if seen >= rank {
                    return bucket_middle(key).min(self.max);
                }
            }
            self.max
        };
        StageStats {
            count: n,
            mean_ns: (self.total / u128::from(n)) as u64,
            p50_ns: pct(0.50),
            p90_ns: pct(0.90),
            p99_ns: pct(0.99),
            max_ns: self.max,
            total_ns: u64::try_from(self.total).unwrap_or(u64::MAX),
        }
    }
}

/// An order-preserving bucket key: the value itself below
/// 2^HISTOGRAM_BITS, else (shift << HISTOGRAM_BITS) | top bits.
fn bucket_key(v: u64) -> u64 {
    let bits = u64::BITS - v.leading_zeros();
    if bits <= HISTOGRAM_BITS {
        return v;
    }
    let shift = bits - HISTOGRAM_BITS;
    (u64::from(shift) << HISTOGRAM_BITS) | (v >> shift)
}

/// The middle of the values a bucket key stands for.
fn bucket_middle(key: u64) -> u64 {
    let shift = key >> HISTOGRAM_BITS;
    if shift == 0 {
        return key;
    }
    let top = key & ((1 << HISTOGRAM_BITS) - 1);
    let width = 1u64 << shift;
    (top << shift) + (width - 1) / 2
}

/// Folds spawn records into stage statistics and counts as they complete,
/// keeping only each stage's [`Distribution`] of durations, not the
/// records themselves.
pub struct Accumulator {
    /// Measured durations per stage, indexed like [`stage_names`] (and
    /// [`SpawnRecord::durations`], so adding a record looks up no names).
    values: [Distribution; ALL_STAGES],
    counts: Counts,
    placement: PlacementAccumulator,
    spawn_time: SpawnTimeAccumulator,
    hidden: hidden::HiddenAccumulator,
}

impl Default for Accumulator {
    fn default() -> Self {
        Self {
            values: std::array::from_fn(|_| Distribution::default()),
            counts: Counts::default(),
            placement: PlacementAccumulator::default(),
            spawn_time: SpawnTimeAccumulator::default(),
            hidden: hidden::HiddenAccumulator::default(),
        }
    }
}

impl Accumulator {
    pub fn add(&mut self, r: &SpawnRecord) {
        let c = &mut self.counts;
        if r.thread {
            c.threads += 1;
        } else if r.root {
            c.root += 1;
        } else {
            c.spawns += 1;
            // Looked up before inserting: a String only for a new method.
            let method = r.method.as_deref().unwrap_or("unknown");
            match c.by_method.get_mut(method) {
                Some(n) => *n += 1,
                None => {
                    c.by_method.insert(method.to_string(), 1);
                }
            }
        }
        let execs = r.successful_execs();
        c.execs += execs;
        c.re_execs += execs.saturating_sub(1);
        c.failed_exec_attempts += r.failed_exec_attempts;
        c.exits += r.ts.exit.is_some() as u64;
        c.incomplete += !r.incomplete.is_empty() as u64;
        // The root command was started by spawnprof, not spawned by the
        // traced program: its stages would skew the statistics.
        if r.root {
            return;
        }
        self.placement.add(r);
        self.spawn_time.add(&r.durations.0);
        if !r.thread {
            self.hidden.add(r);
        }
        for (values, duration) in self.values.iter_mut().zip(r.durations.0) {
            if let Some(v) = duration {
                values.push(v);
            }
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts.clone()
    }

    /// Where the children first ran; `None` when no spawn told both CPUs.
    pub fn placement(&mut self) -> Option<Placement> {
        self.placement.finish()
    }

    /// The spawn-time tree over every spawn added; `None` when no spawn
    /// had a known start and end.
    pub fn spawn_time(&mut self) -> Option<SpawnTime> {
        self.spawn_time.finish()
    }

    /// The hidden costs the spawns paid, as shares of their spawn time.
    pub fn hidden_costs(&mut self) -> HiddenCosts {
        let spawn_ns = u64::try_from(self.spawn_time.total.total).unwrap_or(u64::MAX);
        self.hidden.finish(spawn_ns)
    }

    /// Stage name → statistics, every stage present (count 0 when never measured).
    pub fn stage_stats(&mut self) -> BTreeMap<String, StageStats> {
        stage_names()
            .zip(&mut self.values)
            .map(|(name, values)| (name.to_string(), values.stats()))
            .collect()
    }
}

/// Stage name → statistics, over the spawns recorded (the root command,
/// which spawnprof itself started, is left out).
pub fn stage_stats<'a>(
    records: impl IntoIterator<Item = &'a SpawnRecord>,
) -> BTreeMap<String, StageStats> {
    let mut acc = Accumulator::default();
    records.into_iter().for_each(|r| acc.add(r));
    acc.stage_stats()
}

/// Where new processes first ran, relative to their parent's CPU, and what
/// each kind of start cost. The scheduler often starts a child on an idle
/// CPU; waking that CPU (a deep idle state, or a halted virtual CPU that the
/// hypervisor must schedule again) can take longer than the whole spawn,
/// and it shows only as the child's wait between wake-up and first run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// Spawns whose parent's CPU at fork and child's first CPU are both known.
    pub known: u64,
    /// Of those, children that first ran on another CPU than their parent's.
    pub other_cpu: u64,
    /// The sched_delay stage (wake-up to first run) of children that first
    /// ran on their parent's CPU...
    pub sched_delay_same_cpu: StageStats,
    /// ... and of those that first ran on another CPU.
    pub sched_delay_other_cpu: StageStats,
    /// The vfork_resume stage (a vfork parent's wake-up once the child's
    /// exec released it) when the child ran on the parent's CPU, and when
    /// it ran elsewhere, leaving the parent's CPU to go idle. Absent in
    /// older recordings.
    #[serde(default)]
    pub vfork_resume_same_cpu: StageStats,
    #[serde(default)]
    pub vfork_resume_other_cpu: StageStats,
}

impl Placement {
    /// How much longer a child waits to first run on another CPU than on
    /// its parent's, at the median and on average; `None` unless both
    /// kinds of start were seen. The mean matters too: a few waits of
    /// milliseconds (a vCPU the host has to schedule) hide behind a
    /// median of microseconds.
    pub fn other_cpu_extra_wait_ns(&self) -> Option<ExtraWait> {
        let (same, other) = (&self.sched_delay_same_cpu, &self.sched_delay_other_cpu);
        (same.count > 0 && other.count > 0).then(|| ExtraWait {
            median_ns: other.p50_ns as i64 - same.p50_ns as i64,
            mean_ns: other.mean_ns as i64 - same.mean_ns as i64,
        })
    }
}

/// See [`Placement::other_cpu_extra_wait_ns`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtraWait {
    pub median_ns: i64,
    pub mean_ns: i64,
}

#[derive(Default)]
struct PlacementAccumulator {
    known: u64,
    other_cpu: u64,
    delay_same_cpu: Distribution,
    delay_other_cpu: Distribution,
    resume_same_cpu: Distribution,
    resume_other_cpu: Distribution,
}

impl PlacementAccumulator {
    fn add(&mut self, r: &SpawnRecord) {
        let (Some(parent), Some(child)) = (r.parent_cpu, r.child_first_cpu) else {
            return;
        };
        self.known += 1;
        let moved = parent != child;
        self.other_cpu += u64::from(moved);
        let groups = [
            (
                "sched_delay",
                &mut self.delay_same_cpu,
                &mut self.delay_other_cpu,
            ),
            (
                "vfork_resume",
                &mut self.resume_same_cpu,
                &mut self.resume_other_cpu,
            ),
        ];
        for (stage, same, other) in groups {
            if let Some(d) = r.duration(stage) {
                if moved { other } else { same }.push(d);
            }
        }
    }

    fn finish(&mut self) -> Option<Placement> {
        (self.known > 0).then(|| Placement {
            known: self.known,
            other_cpu: self.other_cpu,
            sched_delay_same_cpu: self.delay_same_cpu.stats(),
            sched_delay_other_cpu: self.delay_other_cpu.stats(),
            vfork_resume_same_cpu: self.resume_same_cpu.stats(),
            vfork_resume_other_cpu: self.resume_other_cpu.stats(),
        })
    }
}

/// Where spawn time goes, each nanosecond counted once: the tree of
/// [`SPAWN_TIME`] summed over the spawns of a recording.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpawnTime {
    /// Each spawn's time, clone entry to the child's exec return (or its
    /// first run, without an exec).
    pub total: StageStats,
    /// Node name → its time summed over the spawns, its children's
    /// included; children add up to at most their parent, and the
    /// top-level nodes to at most `total.total_ns`.
    pub nodes: BTreeMap<String, u64>,
}

impl SpawnTime {
    /// A node's summed time (0 when it never occurred).
    pub fn node(&self, name: &str) -> u64 {
        self.nodes.get(name).copied().unwrap_or(0)
    }

    /// A node's time less its children's.
    pub fn own(&self, name: &str) -> u64 {
        let children: u64 = SPAWN_TIME
            .iter()
            .filter(|n| n.parent == Some(name))
            .map(|n| self.node(n.name))
            .sum();
        self.node(name).saturating_sub(children)
    }

    /// Time no stage accounts for: the total less the top-level nodes.
    pub fn unsplit(&self) -> u64 {
        let top: u64 = SPAWN_TIME
            .iter()
            .filter(|n| n.parent.is_none())
            .map(|n| self.node(n.name))
            .sum();
        self.total.total_ns.saturating_sub(top)
    }
}

#[derive(Default)]
struct SpawnTimeAccumulator {
    total: Distribution,
    nodes: [u128; SPAWN_TIME_NODES],
}

impl SpawnTimeAccumulator {
    fn add(&mut self, d: &Durations) {
        let Some(t) = spawn_times(d) else { return };
        self.total.push(t.total);
        for (sum, v) in self.nodes.iter_mut().zip(t.nodes) {
            *sum += u128::from(v);
        }
    }

    fn finish(&mut self) -> Option<SpawnTime> {
        (self.total.count > 0).then(|| SpawnTime {
            total: self.total.stats(),
            nodes: SPAWN_TIME
                .iter()
                .zip(&self.nodes)
                .map(|(n, &v)| (n.name.to_string(), u64::try_from(v).unwrap_or(u64::MAX)))
                .collect(),
        })
    }
}

impl Counts {
    /// Processes in the recording: the spawns and the root command.
    pub fn processes(&self) -> u64 {
        self.spawns + self.root
    }
}

/// Headline counts of a recording.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Process spawns (not threads, not the root command).
    pub spawns: u64,
    /// The command spawnprof started, when it was recorded (0 with `-p`).
    #[serde(default)]
    pub root: u64,
    pub threads: u64,
    /// Successful execs (calls, as execsnoop counts them), in traced
    /// processes and the root command.
    pub execs: u64,
    /// Of those, the execs by a process that had exec'd already (a wrapper
    /// such as jspawnhelper or env exec'ing its program): they are not
    /// spawns, and the exec stages time the first exec only.
    #[serde(default)]
    pub re_execs: u64,
    pub failed_exec_attempts: u64,
    pub exits: u64,
    pub incomplete: u64,
    /// Spawns by method ("fork", "vfork", …).
    pub by_method: BTreeMap<String, u64>,
}

impl Counts {
    /// What the reports add after the exec count: " (120 re-execs)" when
    /// some processes exec'd more than once, else nothing.
    pub fn re_execs_note(&self) -> String {
        match self.re_execs {
            0 => String::new(),
            1 => " (1 re-exec)".into(),
            n => format!(" ({n} re-execs)"),
        }
    }
}

pub fn counts<'a>(records: impl IntoIterator<Item = &'a SpawnRecord>) -> Counts {
    let mut acc = Accumulator::default();
    records.into_iter().for_each(|r| acc.add(r));
    acc.counts()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).collect();
        let s = StageStats::from_values(&mut v);
        assert_eq!(
            (s.count, s.p50_ns, s.p90_ns, s.p99_ns, s.max_ns),
            (100, 50, 90, 99, 100)
        );
        assert_eq!(s.mean_ns, 50);
        assert_eq!(s.total_ns, 5050);
        assert_eq!(StageStats::from_values(&mut []), StageStats::default());
        let s = StageStats::from_values(&mut [7]);
        assert_eq!((s.p50_ns, s.p99_ns), (7, 7));
    }

    #[test]
    fn past_the_exact_limit_percentiles_stay_within_a_thousandth_and_memory_stays_bounded() {
        // Four times the exact limit, spread over six decades (1 µs to
        // 1 s), in a scrambled order.
        let n = 4 * EXACT_VALUES as u64;
        let values: Vec<u64> = (0..n)
            .map(|i| {
                let x = (i * 2_654_435_761) % n;
                1_000 + x * x / (n / 1_000_000).max(1) / (n / 1_000)
            })
            .collect();
        let mut d = Distribution::default();
        values.iter().for_each(|&v| d.push(v));
        assert!(d.exact.is_empty(), "the exact values were folded away");
        assert!(d.histogram.len() < 20_000, "{} buckets", d.histogram.len());
        let approx = d.stats();
        let exact = StageStats::from_values(&mut values.clone());
        assert_eq!(
            (approx.count, approx.total_ns, approx.mean_ns, approx.max_ns),
            (exact.count, exact.total_ns, exact.mean_ns, exact.max_ns)
        );
        for (a, e) in [
            (approx.p50_ns, exact.p50_ns),
            (approx.p90_ns, exact.p90_ns),
            (approx.p99_ns, exact.p99_ns),
        ] {
            assert!(a.abs_diff(e) * 1_000 <= e, "{a} against exact {e}");
        }
        // Below the limit, nothing changes: exact nearest rank.
        let mut small = Distribution::default();
        (1..=100).for_each(|v| small.push(v));
        assert_eq!(
            small.stats(),
            StageStats::from_values(&mut (1..=100).collect::<Vec<_>>())
        );
    }

    #[test]
    fn bucket_keys_keep_the_order_of_values() {
        let mut values: Vec<u64> = (0..64u32)
            .flat_map(|shift| [1u64 << shift, (1u64 << shift).saturating_add(7)])
            .chain([u64::MAX])
            .collect();
        values.sort_unstable();
        let mut last = 0;
        for v in values {
            let key = bucket_key(v);
            assert!(key >= last, "{v}");
            last = key;
            let middle = bucket_middle(key);
            assert!(
                middle.abs_diff(v) <= v >> (HISTOGRAM_BITS - 1),
                "{v} -> {middle}"
            );
        }
        assert_eq!(bucket_middle(bucket_key(u64::MAX)) >> 53, u64::MAX >> 53);
    }

    #[test]
    fn placement_splits_the_wait_to_first_run_by_cpu() {
        let spawn = |parent: u32, child: u32, delay: u64| {
            let mut r = SpawnRecord {
                parent_cpu: Some(parent),
                child_first_cpu: Some(child),
                ..Default::default()
            };
            r.ts.wakeup_new = Some(1_000);
            r.ts.first_run = Some(1_000 + delay);
            r.derive_durations();
            r
        };
        let mut acc = Accumulator::default();
        assert_eq!(
            acc.placement(),
            None,
            "nothing known: no placement, not zeros"
        );
        for r in [
            spawn(0, 0, 1_000),
            spawn(0, 1, 30_000),
            spawn(1, 0, 50_000),
            spawn(1, 1, 2_000),
            spawn(0, 1, 40_000),
        ] {
            acc.add(&r);
        }
        // A record without the child's CPU (first_run unseen) is left out.
        acc.add(&SpawnRecord {
            parent_cpu: Some(0),
            ..Default::default()
        });
        let p = acc.placement().expect("known");
        assert_eq!((p.known, p.other_cpu), (5, 3));
        assert_eq!(p.vfork_resume_other_cpu.count, 0, "no vfork spawn");
        assert_eq!(p.sched_delay_other_cpu.p50_ns, 40_000);
        assert_eq!(p.sched_delay_same_cpu.count, 2);
        assert_eq!(p.sched_delay_same_cpu.p50_ns, 1_000);
        let extra = p.other_cpu_extra_wait_ns().expect("both seen");
        assert_eq!(extra.median_ns, 39_000);
        assert_eq!(extra.mean_ns, 40_000 - 1_500);

        // A vfork parent resumed late after its child ran elsewhere.
        let mut vfork = spawn(0, 1, 30_000);
        vfork.ts.vfork_release = Some(100_000);
        vfork.ts.clone_exit = Some(125_000);
        vfork.derive_durations();
        let mut acc = Accumulator::default();
        acc.add(&vfork);
        let p = acc.placement().expect("known");
        assert_eq!(p.vfork_resume_other_cpu.p50_ns, 25_000);
        assert_eq!(p.vfork_resume_same_cpu.count, 0);
    }

    /// A wrapper that execs its program (jspawnhelper, env) makes two
    /// successful execs in one spawn; an exec whose attempt record was lost
    /// still counts once.
    #[test]
    fn execs_count_calls_and_re_execs_the_ones_after_the_first() {
        let attempt = |ret: i64| crate::model::ExecAttempt {
            ret: Some(ret),
            ..Default::default()
        };
        let mut wrapper = SpawnRecord {
            exec_attempts: vec![attempt(-2), attempt(0), attempt(0)],
            ..Default::default()
        };
        wrapper.ts.exec_done = Some(5);
        let mut unread = SpawnRecord::default();
        unread.ts.exec_done = Some(5);
        let never = SpawnRecord::default();
        let c = counts([&wrapper, &unread, &never]);
        assert_eq!((c.spawns, c.execs, c.re_execs), (3, 3, 1));
        assert_eq!(c.re_execs_note(), " (1 re-exec)");
        assert_eq!(counts([&unread]).re_execs_note(), "");
    }

    /// Found by `cargo xtask fuzz correlate`: marks with far-apart
    /// timestamps gave two spawns stage durations near u64::MAX, and adding
    /// them up for the total overflowed (a panic in debug builds, a wrapped
    /// total and mean in release).
    #[test]
    fn totals_saturate_and_means_stay_exact_past_u64() {
        let s = StageStats::from_values(&mut [u64::MAX - 1, u64::MAX - 3]);
        assert_eq!(s.total_ns, u64::MAX);
        assert_eq!(s.mean_ns, u64::MAX - 2);
        assert_eq!(s.max_ns, u64::MAX - 1);
        let mut acc = Accumulator::default();
        for _ in 0..2 {
            let mut r = SpawnRecord::default();
            r.ts.clone_enter = Some(0);
            r.ts.exec_return = Some(u64::MAX);
            r.derive_durations();
            acc.add(&r);
        }
        assert_eq!(acc.stage_stats()["spawn_to_exec"].total_ns, u64::MAX);
    }
}
