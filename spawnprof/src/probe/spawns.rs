//! The kernel's spawn state as userspace sees it: the spawns in progress
//! (`SPAWN_SLOTS` and `SPAWNS`), the traced processes (`TRACED_SLOTS` and
//! `TRACED`) and what could not be kept (`LOST`). Taken out of the loaded
//! object at load time, so they outlive the programs: after the detach,
//! the spawns left are collected with nothing changing under the sweep.
use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
};
use spawnprof_common::{
    FAULTS_UNKNOWN, MAP_LOST, MAP_SPAWN_SLOTS, MAP_SPAWNS, MAP_TRACED, MAP_TRACED_SLOTS,
    SpawnEvent, TracedProc, UNKNOWN, UNKNOWN_U32, lost, rec, spawn, traced,
};

use super::slots::SlotTable;
use crate::sys::clock::mono_ns;

/// What could not be kept, summed over the CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// By [`lost::name`], the reasons with a count.
    pub by_reason: BTreeMap<String, u64>,
    /// Spawns with no record at all.
    pub spawns: u64,
}

pub struct KernelSpawns {
    spawns: SlotTable<SpawnEvent>,
    traced: SlotTable<TracedProc>,
    lost: PerCpuArray<MapData, u64>,
}

impl KernelSpawns {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("the {name} map is missing"))
        };
        Ok(Self {
            spawns: SlotTable::new(take(MAP_SPAWN_SLOTS)?, take(MAP_SPAWNS)?)?,
            traced: SlotTable::new(take(MAP_TRACED_SLOTS)?, take(MAP_TRACED)?)?,
            lost: PerCpuArray::try_from(take(MAP_LOST)?)?,
        })
    }

    /// Adds a process to the traced set; the root command also gets its
    /// spawn record, which its exec and exit fill in.
    pub fn trace(&mut self, tgid: u32, flags: u32, root: bool) -> Result<()> {
        let entry = TracedProc {
            flags,
            ..TracedProc::default()
        };
        self.traced
            .insert(tgid, entry)
            .with_context(|| format!("adding pid {tgid} to the traced set"))?;
        if root {
            self.spawns
                .insert(tgid, root_record(tgid))
                .context("starting the command's spawn record")?;
        }
        Ok(())
    }

    fn count(&self, reason: u32) -> u64 {
        self.lost
            .get(&reason, 0)
            .map_or(0, |per_cpu| per_cpu.iter().sum())
    }

    /// Finished spawns the ring buffer had no room for, so far.
    pub fn deferred(&self) -> u64 {
        self.count(lost::SPAWN_DEFERRED)
    }

    pub fn lost(&self) -> Lost {
        let mut out = Lost::default();
        for reason in 0..lost::COUNT {
            let n = self.count(reason);
            if n > 0 {
                out.by_reason.insert(lost::name(reason).into(), n);
            }
        }
        out.spawns = [
            lost::SPAWN_NO_ROOM,
            lost::SPAWN_RING,
            lost::SPAWN_OVERWRITTEN,
        ]
        .iter()
        .map(|&r| self.count(r))
        .sum();
        out
    }

    /// Takes the finished spawns that waited in the map for room in the
    /// ring buffer, as raw records.
    pub fn collect_deferred(&mut self) -> Vec<Vec<u8>> {
        self.spawns
            .take(|s| s.state() & spawn::EMIT_PENDING != 0)
            .iter()
            .map(wire_bytes)
            .collect()
    }

    /// Takes every spawn left once the probes are detached: the finished
    /// ones that waited for room, and the unfinished, marked so. A fork
    /// whose parent is still counting its copy-on-write faults gets the
    /// count so far.
    pub fn sweep(&mut self) -> Vec<Vec<u8>> {
        let mut records = self.spawns.take(|_| true);
        for s in &mut records {
            if s.state() & spawn::EMIT_PENDING == 0 {
                s.mark(spawn::RECORDING_ENDED);
            }
            if s.state() & spawn::COW_PENDING != 0
                && let Some(p) = self.traced.get(s.parent_tgid)
                && p.cow_child == s.child_tid
            {
                s.parent_cow = p.cow_faults.saturating_sub(p.cow_at_fork) as u32;
                s.mark(spawn::PARENT_COW_KNOWN);
            }
        }
        records.sort_by_key(|s| s.spawn_id);
        records.iter().map(wire_bytes).collect()
    }
}

/// A record as the ring buffer would carry it: up to its path's NUL. The
/// path buffer's tail in the kernel's map is not cleared, and not kept.
fn wire_bytes(s: &SpawnEvent) -> Vec<u8> {
    s.wire().to_vec()
}

/// The record of the command spawnprof started: its spawn happened in
/// spawnprof, so only its exec and exit are to come.
fn root_record(tgid: u32) -> SpawnEvent {
    // SAFETY: SpawnEvent is integers and arrays of them, valid as zeros.
    let mut s: SpawnEvent = unsafe { std::mem::zeroed() };
    s.kind = rec::SPAWN;
    s.spawn_id = mono_ns();
    s.mark(spawn::ROOT | spawn::PARENT_RETURNED);
    (s.child_tid, s.child_tgid) = (tgid, tgid);
    (s.parent_cpu, s.first_cpu) = (u16::MAX, u16::MAX);
    (s.argc, s.envc, s.env_bytes) = (UNKNOWN_U32, UNKNOWN_U32, UNKNOWN);
    (s.faults_pre_exec, s.cow_pre_exec) = (FAULTS_UNKNOWN, FAULTS_UNKNOWN);
    (s.faults_total, s.cow_total) = (FAULTS_UNKNOWN, FAULTS_UNKNOWN);
    s
}

/// The flags of a traced process.
pub fn traced_flags(record_spawns: bool) -> u32 {
    if record_spawns {
        traced::SPAWNS
    } else {
        traced::LIFE_ONLY
    }
}
