//! Parking the fork-only probes while the traced processes do not fork.
//!
//! On kernels without fentry or kprobes, dup_mmap and copy-on-write faults
//! are seen through the mmap-lock and page-fault tracepoints, which fire
//! for every such event of the machine: about 100 program runs per spawn
//! of a posix_spawn loop that never forks, and 13 µs of BPF time with
//! statistics on. After [`QUIET_SPAWNS`] spawns without a fork (and none
//! in flight, no copy-on-write window open) they are detached:
//!
//! ```text
//! attached ──200 spawns, no fork──▶ PARKED[0] = 1, links dropped (in a thread)
//!    ▲                                   │ a traced fork's entry: its record
//!    └──── re-attached, PARKED[0] = 0 ◀──┘ marked FORK_UNWATCHED, reader woken
//! ```
//!
//! A fork that begins while parked has no dup_mmap and no copy-on-write
//! counts, and its record says so; the forks after it have both.
use anyhow::{Context as _, Result};
use aya::{
    maps::{Array, MapData},
    programs::RawTracePoint,
};
use serde::{Deserialize, Serialize};
use spawnprof_common::MAP_PARKED;

use super::{attach::program, session::Session};

/// Spawns without a fork before the fork-only probes are parked.
pub const QUIET_SPAWNS: u64 = 200;

/// How often the fork-only probes were parked and brought back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkCounts {
    pub parked: u32,
    pub resumed: u32,
}

/// Where the parking stands.
#[derive(Debug, Default)]
pub struct Parking {
    /// The kernel's count of traced forks when last looked at.
    forks_seen: u64,
    /// Spawns recorded when that count last moved.
    spawns_then: u64,
    /// The parked programs, to attach again.
    parked: Vec<&'static str>,
    pub counts: ParkCounts,
}

impl Session {
    /// Parks or brings back the fork-only probes, given the spawns recorded
    /// so far. Called by the reader on each wake-up: one map read.
    pub fn keep_fork_probes(&mut self, spawns: u64) -> Result<()> {
        if self.fork_links.is_empty() && self.parking.parked.is_empty() {
            return Ok(());
        }
        let gates = self.gates()?;
        if gates.forks_seen != self.parking.forks_seen {
            self.parking.forks_seen = gates.forks_seen;
            self.parking.spawns_then = spawns;
            return self.resume_fork_probes();
        }
        let quiet = spawns.saturating_sub(self.parking.spawns_then) >= QUIET_SPAWNS
            && gates.forks_in_flight == 0
            && gates.cow_windows == 0;
        if quiet && self.parking.parked.is_empty() {
            self.park_fork_probes()?;
        }
        Ok(())
    }

    fn park_fork_probes(&mut self) -> Result<()> {
        self.set_parked(true)?;
        // A fork that began before the flag was up would be half seen.
        let gates = self.gates()?;
        if gates.forks_seen != self.parking.forks_seen
            || gates.forks_in_flight != 0
            || gates.cow_windows != 0
        {
            return self.set_parked(false);
        }
        let links = std::mem::take(&mut self.fork_links);
        self.parking.parked = links.iter().map(|(p, _)| *p).collect();
        self.parking.counts.parked += 1;
        // Each detach waits for an RCU grace period: not on the reader's time.
        std::thread::spawn(move || drop(links));
        Ok(())
    }

    fn resume_fork_probes(&mut self) -> Result<()> {
        if self.parking.parked.is_empty() {
            return Ok(());
        }
        for name in std::mem::take(&mut self.parking.parked) {
            let rt: &mut RawTracePoint = program(&mut self.ebpf, name)?.try_into()?;
            let tracepoint = name.trim_start_matches("raw_").trim_end_matches("_memcg");
            let link = rt
                .attach(tracepoint)
                .with_context(|| format!("attaching {name} again"))?;
            self.fork_links.push((name, rt.take_link(link)?));
        }
        self.parking.counts.resumed += 1;
        self.set_parked(false)
    }

    fn set_parked(&mut self, on: bool) -> Result<()> {
        let mut flag: Array<&mut MapData, u32> = Array::try_from(
            self.ebpf
                .map_mut(MAP_PARKED)
                .context("the PARKED map is missing")?,
        )?;
        flag.set(0, u32::from(on), 0)?;
        Ok(())
    }

    /// How often the fork-only probes were parked and brought back.
    pub fn park_counts(&self) -> ParkCounts {
        self.parking.counts
    }
}
