//! Marks → spawns. Marks arrive slightly out of order; [`Reorder`] holds them
//! for a short window and releases them in time order. [`Correlator`] then
//! folds them into [`SpawnRecord`]s:
//!
//! - a spawn is keyed by the parent's tid from clone entry until the fork
//!   completes (`FORK_DONE` names the child),
//! - then by the child's tid, through first run, exec attempts, exit and reap.
//!
//! One spawn of child C by parent thread P, mark by mark: where the spawn
//! is held at each, and which file of this module handles the mark.
//!
//! ```text
//!  parent P                  child C                     held in             file
//!  ───────────────────────── ─────────────────────────── ─────────────────── ────────
//!  CLONE_ENTER                                           by_parent[P]        clone.rs
//!  COPY_PROCESS_*, MM_LOCK_*,                            by_parent[P]        clone.rs
//!  DUP_MMAP_*, NEWTASK,
//!  KERNEL_FN_TOTALS
//!  FORK_DONE(C) ──────────┐                              by_child[C], and    clone.rs
//!                         │                              parent_open[P] = C
//!  WAKEUP_NEW(C)          │                              by_child[C]         clone.rs
//!                         ├ FIRST_RUN, CHILD_RETURN      by_child[C]         child.rs
//!                         ├ EXEC_* (its tid, or tgid C)  by_child[C]         exec.rs
//!  CLONE_EXIT(C) ─────────┤                              by_child[C]; closes clone.rs
//!                         │                              parent_open[P]
//!                         └ EXIT (tgid C)                by_child[C]         exit.rs
//!  REAP(C) ────────────────────────────────────────────▶ emitted             exit.rs
//! ```
//!
//! Side tables: a fork (no CLONE_VM) opens `cow_baseline[P's tgid]`, the
//! parent's copy-on-write count then, closed by its next fork or its exit;
//! a clone that returns another number than C (a parent in a PID
//! namespace) maps it in `ns_children`, for the reap that names it. A
//! child mark with no spawn behind it (the root command, lost parent
//! marks) starts an orphan in `by_child`.
//!
//! A record is handed out once it can no longer change: reaped (processes),
//! returned on both sides (threads), exited (the root command); or when the
//! recording ends, with the reasons it is incomplete.
use std::collections::BTreeMap;

// Keyed by pids and tids the kernel hands out: foldhash instead of the
// default SipHash, which resists hash flooding we cannot meet here and
// showed up at several percent of the reader's time (a few lookups per mark).
use foldhash::HashMap;

use spawnprof_common::{clone_flags as cf, kind, syscall};

use super::decode::Event;
use crate::model::{FaultCoverage, SpawnRecord};

mod child;
mod clone;
mod emit;
mod exec;
mod exit;

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct CorrelationStats {
    pub marks: u64,
    pub marks_by_kind: BTreeMap<String, u64>,
    /// Marks that matched no spawn (e.g. the parent's side was lost, or a
    /// traced process exec'd without having been spawned in the recording).
    pub unmatched_marks: u64,
    pub failed_clones: u64,
    /// First-run marks that arrived after the child had already run (the
    /// real first switch-in was missed); dropped rather than trusted.
    pub late_first_runs: u64,
    /// wait4 returns for children that stopped or continued (WUNTRACED,
    /// WCONTINUED) rather than exited: not reaps, so ignored.
    pub wait_reports_before_exit: u64,
}

/// A spawn being assembled (absolute timestamps until it is emitted).
#[derive(Default)]
struct Builder {
    rec: SpawnRecord,
    /// Index of the exec attempt waiting for its return.
    open_attempt: Option<usize>,
    exited: bool,
    reaped: bool,
    child_seen: bool,
    parent_returned: bool,
    /// Parent CoW faults counter at this fork, until the parent's next fork or exit.
    cow_pending: bool,
}

impl Builder {
    fn done(&self) -> bool {
        if self.cow_pending {
            return false;
        }
        if self.rec.root {
            return self.exited;
        }
        if self.rec.thread {
            return self.parent_returned && self.child_seen;
        }
        self.reaped
    }
}

/// A CLONE_VFORK parent sleeps until its child's exec or exit releases it.
fn parent_waits_for_release(r: &SpawnRecord) -> bool {
    r.clone_flags.is_some_and(|f| f & cf::CLONE_VFORK != 0)
}

fn syscall_name(id: u64) -> &'static str {
    match id {
        syscall::CLONE => "clone",
        syscall::CLONE3 => "clone3",
        syscall::FORK => "fork",
        syscall::VFORK => "vfork",
        syscall::EXECVE => "execve",
        syscall::EXECVEAT => "execveat",
        syscall::KERNEL_CLONE => "kernel_clone",
        _ => "unknown",
    }
}

/// Folds time-ordered events into spawn records.
pub struct Correlator {
    t0: u64,
    root_pid: Option<u32>,
    /// Parent tid → spawn between clone entry and fork done.
    by_parent: HashMap<u32, Builder>,
    /// Parent tid → child tid, between fork done and the parent's return.
    parent_open: HashMap<u32, u32>,
    /// Child tid → spawn.
    by_child: HashMap<u32, Builder>,
    /// Parent tgid → (child tid, parent CoW count at that fork).
    cow_baseline: HashMap<u32, (u32, u64)>,
    /// (parent tgid, child pid as the parent's PID namespace numbers it) ->
    /// host pid, for children whose clone returned another number than the
    /// host's (a parent in a container): its waits return that number.
    ns_children: HashMap<(u32, u32), u32>,
    out: Vec<SpawnRecord>,
    /// Everything but `marks_by_kind`, which [`Self::stats`] fills in from
    /// `marks_per_kind`.
    stats: CorrelationStats,
    /// Marks seen, indexed by kind (the last slot: kinds out of range).
    /// Counting here rather than in the String-keyed map of the summary
    /// costs no allocation or string compare per mark.
    marks_per_kind: [u64; kind::COUNT as usize + 1],
    /// Which fault figures are real (see [`Self::with_fault_coverage`]).
    faults: FaultCoverage,
}

impl Correlator {
    /// `t0`: CLOCK_MONOTONIC ns at the start of the recording; output
    /// timestamps are relative to it. `root_pid`: the command spawnprof
    /// started, if any.
    pub fn new(t0: u64, root_pid: Option<u32>) -> Self {
        Self {
            t0,
            root_pid,
            by_parent: HashMap::default(),
            parent_open: HashMap::default(),
            by_child: HashMap::default(),
            cow_baseline: HashMap::default(),
            ns_children: HashMap::default(),
            out: Vec::new(),
            stats: CorrelationStats::default(),
            marks_per_kind: [0; kind::COUNT as usize + 1],
            faults: FaultCoverage::ALL,
        }
    }

    /// The fault figures no probe or counter produced (the marks carry 0)
    /// become null in the records instead of a silent zero.
    pub fn with_fault_coverage(mut self, faults: FaultCoverage) -> Self {
        self.faults = faults;
        self
    }

    /// Counters about the correlation so far.
    pub fn stats(&self) -> CorrelationStats {
        let mut stats = self.stats.clone();
        for (k, &n) in self.marks_per_kind.iter().enumerate() {
            if n > 0 {
                let name = kind::name(u16::try_from(k).unwrap_or(u16::MAX));
                *stats.marks_by_kind.entry(name.to_string()).or_default() += n;
            }
        }
        stats
    }

    pub fn set_root(&mut self, pid: u32) {
        self.root_pid = Some(pid);
    }

    /// Records completed so far (drains them).
    pub fn take_finished(&mut self) -> Vec<SpawnRecord> {
        std::mem::take(&mut self.out)
    }

    /// Records completed so far, drained in place: unlike
    /// [`Self::take_finished`] the buffer keeps its capacity, so a
    /// recording does not regrow it (moving records of about 1 KiB) after
    /// every drain.
    pub fn drain_finished(&mut self) -> std::vec::Drain<'_, SpawnRecord> {
        self.out.drain(..)
    }

    /// Spawns still being assembled.
    pub fn in_flight(&self) -> usize {
        self.by_parent.len() + self.by_child.len()
    }

    /// Folds one mark in: each family of marks has its own handler (see
    /// the module docs for which key the spawn is held under at each).
    pub fn feed(&mut self, e: &Event) {
        self.count(e.mark.kind);
        match e.mark.kind {
            kind::CLONE_ENTER => self.clone_enter(e),
            kind::COPY_PROCESS_ENTER
            | kind::COPY_PROCESS_EXIT
            | kind::MM_LOCK_WAIT
            | kind::MM_LOCK_ACQUIRED
            | kind::MM_LOCK_RELEASED
            | kind::DUP_MMAP_ENTER
            | kind::DUP_MMAP_EXIT
            | kind::NEWTASK
            | kind::KERNEL_FN_TOTALS => self.inside_clone(e),
            kind::FORK_DONE => self.fork_done(e),
            kind::WAKEUP_NEW => self.wakeup_new(e),
            kind::CLONE_EXIT => self.clone_exit(e),
            kind::FIRST_RUN | kind::CHILD_RETURN => self.child_runs(e),
            kind::EXEC_ENTER | kind::EXEC_PREPARE | kind::EXEC_DONE | kind::EXEC_EXIT => {
                self.exec_mark(e)
            }
            kind::EXEC_ARGS | kind::EXEC_ENV => self.exec_strings(e),
            kind::EXIT => self.exit(e),
            kind::REAP => self.reap(e),
            _ => self.stats.unmatched_marks += 1,
        }
    }

    fn count(&mut self, kind: u16) {
        self.stats.marks += 1;
        let slot = usize::from(kind).min(self.marks_per_kind.len() - 1);
        self.marks_per_kind[slot] += 1;
    }

    /// The key of the spawn a child-side mark of `tid` (in thread group
    /// `tgid`) belongs to: its own, or its process's when it is a thread
    /// of a spawned process.
    fn child_key(&self, tid: u32, tgid: u32) -> Option<u32> {
        if self.by_child.contains_key(&tid) {
            Some(tid)
        } else if self.by_child.get(&tgid).is_some_and(|b| !b.rec.thread) {
            Some(tgid)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests;
