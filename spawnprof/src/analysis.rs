//! Summaries of many spawns: per-stage distributions and counts.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{ALL_STAGES, SpawnRecord, stage_names};

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

/// Folds spawn records into stage statistics and counts as they complete,
/// keeping only each stage's durations (8 bytes per measured stage per
/// spawn, for exact percentiles), not the records themselves.
pub struct Accumulator {
    /// Measured durations per stage, indexed like [`stage_names`] (and
    /// [`SpawnRecord::durations`], so adding a record looks up no names).
    values: [Vec<u64>; ALL_STAGES],
    counts: Counts,
    placement: PlacementAccumulator,
}

impl Default for Accumulator {
    fn default() -> Self {
        Self {
            values: std::array::from_fn(|_| Vec::new()),
            counts: Counts::default(),
            placement: PlacementAccumulator::default(),
        }
    }
}

impl Accumulator {
    pub fn add(&mut self, r: &SpawnRecord) {
        let c = &mut self.counts;
        if r.thread {
            c.threads += 1;
        } else if !r.root {
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
        c.execs += r.ts.exec_done.is_some() as u64;
        c.failed_exec_attempts += r.failed_exec_attempts;
        c.exits += r.ts.exit.is_some() as u64;
        c.incomplete += !r.incomplete.is_empty() as u64;
        // The root command was started by spawnprof, not spawned by the
        // traced program: its stages would skew the statistics.
        if r.root {
            return;
        }
        self.placement.add(r);
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

    /// Stage name → statistics, every stage present (count 0 when never measured).
    pub fn stage_stats(&mut self) -> BTreeMap<String, StageStats> {
        stage_names()
            .zip(&mut self.values)
            .map(|(name, values)| (name.to_string(), StageStats::from_values(values)))
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
    delay_same_cpu: Vec<u64>,
    delay_other_cpu: Vec<u64>,
    resume_same_cpu: Vec<u64>,
    resume_other_cpu: Vec<u64>,
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
            sched_delay_same_cpu: StageStats::from_values(&mut self.delay_same_cpu),
            sched_delay_other_cpu: StageStats::from_values(&mut self.delay_other_cpu),
            vfork_resume_same_cpu: StageStats::from_values(&mut self.resume_same_cpu),
            vfork_resume_other_cpu: StageStats::from_values(&mut self.resume_other_cpu),
        })
    }
}

/// Headline counts of a recording.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Process spawns (not threads, not the root command).
    pub spawns: u64,
    pub threads: u64,
    pub execs: u64,
    pub failed_exec_attempts: u64,
    pub exits: u64,
    pub incomplete: u64,
    /// Spawns by method ("fork", "vfork", …).
    pub by_method: BTreeMap<String, u64>,
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
