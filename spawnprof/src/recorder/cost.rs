//! `--probe-cost`: what the probes and spawnprof itself cost per spawn.
use std::{collections::HashMap, os::fd::OwnedFd};

use anyhow::{Result, anyhow};

use crate::{
    probe::Session,
    recording::{ProbeCost, ProgramCost},
    sys::clock::own_cpu_ns,
};

/// Measures what the recording costs: keeps the kernel's BPF run-time
/// statistics on (they stop when the returned descriptor closes, unless the
/// host enabled them itself) and notes our CPU time at the start.
pub(super) struct CostMeter {
    _stats: OwnedFd,
    cpu_ns_at_start: u64,
    /// Each program's (run time, runs) when the target started running
    /// traced.
    programs_at_start: HashMap<String, (u64, u64)>,
}

impl CostMeter {
    pub fn start() -> Result<Self> {
        let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| {
            anyhow!(
                "--probe-cost: the kernel refused BPF run-time statistics (BPF_ENABLE_STATS, Linux 5.8+): {e}; \
                 record without --probe-cost"
            )
        })?;
        Ok(Self {
            _stats: stats,
            cpu_ns_at_start: own_cpu_ns(),
            programs_at_start: HashMap::new(),
        })
    }

    /// Counts our CPU time and the programs' run time from here, when the
    /// target runs traced: loading the probes and starting the command (the
    /// machine-wide programs run through our own start-up) are paid once,
    /// not per spawn. bpftrace's figure in `bench-overhead` is taken the
    /// same way, over its workload alone.
    pub fn tracing_started(&mut self, session: &Session) {
        self.programs_at_start = session
            .program_stats()
            .into_iter()
            .map(|(name, run_ns, runs)| (name, (run_ns, runs)))
            .collect();
        // After reading the statistics: that is the measurement's cost.
        self.cpu_ns_at_start = own_cpu_ns();
    }

    pub fn finish(self, session: &Session, spawns: u64) -> ProbeCost {
        // Before the statistics are read: that is the measurement's cost.
        let reader_cpu_ns = own_cpu_ns().saturating_sub(self.cpu_ns_at_start);
        let mut programs: Vec<ProgramCost> = session
            .program_stats()
            .into_iter()
            .map(|(name, run_ns, runs)| {
                let (ns0, runs0) = self
                    .programs_at_start
                    .get(&name)
                    .copied()
                    .unwrap_or_default();
                ProgramCost {
                    name,
                    runs: runs.saturating_sub(runs0),
                    run_ns: run_ns.saturating_sub(ns0),
                }
            })
            .collect();
        programs.sort_by_key(|p| std::cmp::Reverse(p.run_ns));
        ProbeCost {
            bpf_ns: programs.iter().map(|p| p.run_ns).sum(),
            bpf_runs: programs.iter().map(|p| p.runs).sum(),
            programs,
            reader_cpu_ns,
            parking_cpu_ns: session.park_counts().cpu_ns,
            spawns,
            gates_at_end: session.gates().ok(),
        }
    }
}
