//! Kernel records → [`SpawnRecord`]s. Each spawn arrives whole, as one
//! [`SpawnEvent`] sent when it ended; what it does not hold arrives before
//! it, keyed by its spawn id: its other exec attempts (PATH misses, later
//! execs) and its captured strings. Here they are joined, timestamps made
//! relative to the recording's start, durations derived, and the fault
//! figures no probe counted made null.
//!
//! ```text
//!  ExecEvent(id) ──┐
//!  TextEvent(id) ──┼─▶ pending[id] ─┐
//!  SpawnEvent(id) ─┴────────────────┴─▶ SpawnRecord
//! ```
use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use spawnprof_common::{
    ExecEvent, FAULTS_UNKNOWN, PATH_TRUNCATED, PATH_UNREADABLE, SIGNAL_IN_FLAGS, SpawnEvent,
    TEXT_TRUNCATED, TextEvent, UNKNOWN, UNKNOWN_U32, clone_flags as cf, rec, spawn, syscall, ts,
};

use super::decode::{Record, comm_str, path_str, strings};
use crate::model::{
    ExecAttempt, FaultCoverage, Faults, KernelFnTimes, SpawnRecord, Timestamps, describe_flags,
    method_of,
};

/// Counters about the assembly, for the summary. Fields added later
/// default to 0 when reading older recordings.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct AssemblyStats {
    /// Records read: spawns, exec attempts, captures.
    pub spawn_records: u64,
    pub exec_records: u64,
    pub capture_records: u64,
    /// Clones that failed (their records say so).
    pub failed_clones: u64,
    /// Spawns that ended while the ring buffer was full, collected from the
    /// kernel's map instead (not lost).
    pub collected_deferred: u64,
    /// Spawns still unfinished when the recording ended, collected from
    /// the kernel's map with the reasons they are incomplete.
    pub collected_at_end: u64,
    /// Exec attempts and captures whose spawn record never came (a spawn
    /// not kept: see `lost_spawns`).
    pub orphan_records: u64,
    /// Records that could not be decoded.
    pub malformed_records: u64,
    /// A spawn sent twice (two CPUs finished it at once) counts once.
    pub duplicate_spawns: u64,
}

/// How many recent spawns a repeat is looked for among: two sends of one
/// spawn happen within microseconds of each other.
const RECENT: usize = 4096;

/// What arrived for a spawn before its own record.
#[derive(Default)]
struct Pending {
    attempts: Vec<ExecAttempt>,
    args: Option<Vec<String>>,
    env: Option<Vec<String>>,
    capture_truncated: bool,
}

/// Joins the records of each spawn and converts them.
pub struct Assembler {
    t0: u64,
    faults: FaultCoverage,
    pending: HashMap<(u64, u32), Pending>,
    /// The last [`RECENT`] spawns, in order and as a set.
    recent: VecDeque<(u64, u32)>,
    recent_set: HashSet<(u64, u32)>,
    stats: AssemblyStats,
}

impl Assembler {
    /// `t0`: the kernel's monotonic clock at the recording's start, ns;
    /// `faults`: which fault figures the probes really count.
    pub fn new(t0: u64, faults: FaultCoverage) -> Self {
        Self {
            t0,
            faults,
            pending: HashMap::new(),
            recent: VecDeque::with_capacity(RECENT),
            recent_set: HashSet::with_capacity(RECENT),
            stats: AssemblyStats::default(),
        }
    }

    pub fn stats(&self) -> AssemblyStats {
        let mut s = self.stats.clone();
        s.orphan_records += self.pending.len() as u64;
        s
    }

    pub fn malformed(&mut self) {
        self.stats.malformed_records += 1;
    }

    /// Feeds one record; returns the spawn it completes.
    pub fn feed(&mut self, r: Record) -> Option<SpawnRecord> {
        match r {
            Record::Spawn(s) => self.first_time(&s).then(|| self.spawn(&s)),
            Record::Exec(e) => {
                self.stats.exec_records += 1;
                let a = self.attempt(&e);
                self.pending_for(e.spawn_id, e.child_tgid).attempts.push(a);
                None
            }
            Record::Text(t) => {
                self.stats.capture_records += 1;
                self.capture(&t);
                None
            }
            Record::Notice(_) => None,
        }
    }

    /// Whether this spawn was not among the recent ones (the kernel's
    /// probes on two CPUs can both find a spawn finished and send it).
    fn first_time(&mut self, s: &SpawnEvent) -> bool {
        let key = (s.spawn_id, s.child_tgid);
        if !self.recent_set.insert(key) {
            self.stats.duplicate_spawns += 1;
            return false;
        }
        if self.recent.len() == RECENT
            && let Some(old) = self.recent.pop_front()
        {
            self.recent_set.remove(&old);
        }
        self.recent.push_back(key);
        true
    }

    fn pending_for(&mut self, id: u64, tgid: u32) -> &mut Pending {
        self.pending.entry((id, tgid)).or_default()
    }

    fn capture(&mut self, t: &TextEvent) {
        let p = self.pending_for(t.spawn_id, t.child_tgid);
        let slot = if t.kind == rec::CAPTURE_ARGS {
            &mut p.args
        } else {
            &mut p.env
        };
        if slot.is_none() {
            *slot = Some(strings(t));
            p.capture_truncated |= t.len & TEXT_TRUNCATED != 0;
        }
    }

    fn attempt(&self, e: &ExecEvent) -> ExecAttempt {
        ExecAttempt {
            enter: self.rel(e.enter).unwrap_or(0),
            exit: self.rel(e.exit),
            ret: Some(e.ret),
            path: path_str(&e.path, e.path_len),
            path_truncated: e.path_len & PATH_TRUNCATED != 0,
            path_unreadable: e.path_len & PATH_UNREADABLE != 0,
            env_count: None,
            argc: None,
            syscall: syscall_name(e.syscall).into(),
        }
    }

    /// A kernel timestamp relative to the recording's start (0: not seen).
    fn rel(&self, t: u64) -> Option<u64> {
        (t != 0).then(|| t.saturating_sub(self.t0))
    }

    fn spawn(&mut self, s: &SpawnEvent) -> SpawnRecord {
        self.stats.spawn_records += 1;
        let pending = self
            .pending
            .remove(&(s.spawn_id, s.child_tgid))
            .unwrap_or_default();
        let mut r = self.identity(s);
        r.ts = self.timestamps(s);
        self.exec(s, &mut r, pending);
        r.faults = self.faults(s);
        if s.cpr_calls + s.avf_calls > 0 {
            r.kernel_fn = Some(KernelFnTimes {
                copy_page_range_ns: s.cpr_ns,
                copy_page_range_calls: s.cpr_calls.into(),
                anon_vma_fork_ns: s.avf_ns,
                anon_vma_fork_calls: s.avf_calls.into(),
            });
        }
        if s.state() & (spawn::EXITED | spawn::EXIT_CODE_UNKNOWN) == spawn::EXITED {
            set_exit_code(&mut r, s.exit_code as i32);
        }
        r.incomplete = self.why_incomplete(s, &r);
        r.derive_durations();
        r
    }

    /// Who spawned whom, and how.
    fn identity(&mut self, s: &SpawnEvent) -> SpawnRecord {
        let known = |v: u32| (v != 0).then_some(v);
        let cpu = |v: u16| (v != u16::MAX).then_some(u32::from(v));
        let name = |c| Some(comm_str(c)).filter(|s: &String| !s.is_empty());
        let clone_seen = s.syscall != 0;
        let flags = clone_seen.then_some(s.clone_flags);
        let signal =
            (s.exit_signal != u32::from(SIGNAL_IN_FLAGS)).then_some(u64::from(s.exit_signal));
        SpawnRecord {
            parent_pid: known(s.parent_tgid),
            parent_tid: known(s.parent_tid),
            parent_comm: name(&s.parent_comm),
            child_pid: known(s.child_tid),
            parent_cpu: cpu(s.parent_cpu),
            child_first_cpu: cpu(s.first_cpu),
            first_run_from_run_delay: s.state() & spawn::FIRST_RUN_FROM_RUN_DELAY != 0,
            thread: s.state() & spawn::THREAD != 0,
            root: s.state() & spawn::ROOT != 0,
            syscall: clone_seen.then(|| syscall_name(s.syscall).into()),
            clone_flags: flags,
            flags: flags.map(|f| describe_flags(f, signal)),
            method: flags.map(|f| method_of(f).into()),
            comm_before: name(&s.comm_before),
            comm_after: name(&s.comm_after),
            ..SpawnRecord::default()
        }
    }

    fn timestamps(&self, s: &SpawnEvent) -> Timestamps {
        let at = |slot: usize| self.rel(s.ts[slot]);
        let vfork = s.clone_flags & cf::CLONE_VFORK != 0;
        Timestamps {
            clone_enter: at(ts::CLONE_ENTER),
            copy_process_enter: at(ts::COPY_PROCESS_ENTER),
            mm_lock_wait: at(ts::MM_LOCK_WAIT),
            mm_copy_start: at(ts::MM_COPY_START),
            mm_copy_end: at(ts::MM_COPY_END),
            dup_mmap_enter: at(ts::DUP_MMAP_ENTER),
            dup_mmap_exit: at(ts::DUP_MMAP_EXIT),
            copy_process_exit: at(ts::COPY_PROCESS_EXIT),
            newtask: at(ts::NEWTASK),
            fork_done: at(ts::FORK_DONE),
            wakeup_new: at(ts::WAKEUP_NEW),
            clone_exit: at(ts::CLONE_EXIT),
            first_run: at(ts::FIRST_RUN),
            child_return: at(ts::CHILD_RETURN),
            exec_first_enter: at(ts::EXEC_FIRST_ENTER),
            exec_enter: at(ts::EXEC_ENTER),
            exec_prepare: at(ts::EXEC_PREPARE),
            // A CLONE_VFORK parent sleeps until its child's exec reaches its
            // point of no return, or the child exits.
            vfork_release: vfork
                .then(|| at(ts::EXEC_PREPARE).or_else(|| at(ts::EXIT)))
                .flatten(),
            exec_done: at(ts::EXEC_DONE),
            exec_return: at(ts::EXEC_RETURN),
            exit: at(ts::EXIT),
            reap: at(ts::REAP),
        }
    }

    /// The exec attempts in order: the ones sent on their own and the
    /// record's own successful one.
    fn exec(&self, s: &SpawnEvent, r: &mut SpawnRecord, p: Pending) {
        let mut attempts = p.attempts;
        let execed = s.state() & spawn::EXECED != 0;
        if execed {
            let path = path_str(&s.exec_path, s.exec_path_len);
            r.env_count = (s.envc != UNKNOWN_U32).then_some(s.envc.into());
            r.argc = (s.argc != UNKNOWN_U32).then_some(s.argc.into());
            r.env_bytes = (s.env_bytes != UNKNOWN).then_some(s.env_bytes);
            attempts.push(ExecAttempt {
                enter: self
                    .rel(s.ts[ts::EXEC_ENTER])
                    .or(self.rel(s.ts[ts::EXEC_DONE]))
                    .unwrap_or(0),
                exit: self.rel(s.ts[ts::EXEC_RETURN]),
                ret: (s.ts[ts::EXEC_RETURN] != 0).then_some(0),
                path: path.clone(),
                path_truncated: s.exec_path_len & PATH_TRUNCATED != 0,
                path_unreadable: false,
                env_count: r.env_count,
                argc: r.argc,
                syscall: syscall_name(s.exec_syscall).into(),
            });
            r.exec_path = Some(path);
        }
        attempts.sort_by_key(|a| a.enter);
        r.failed_exec_attempts = attempts
            .iter()
            .filter(|a| a.ret.is_some_and(|v| v != 0))
            .count() as u64;
        r.exec_attempts = attempts;
        (r.args, r.env, r.capture_truncated) = (p.args, p.env, p.capture_truncated);
    }

    /// Fault figures, null where no probe or counter produced them.
    fn faults(&self, s: &SpawnEvent) -> Faults {
        let known = |v: u32, real: bool| (real && v != FAULTS_UNKNOWN).then_some(u64::from(v));
        let execed = s.state() & spawn::EXECED != 0;
        let exited = s.state() & spawn::EXITED != 0;
        let (totals, mut cow) = (self.faults.totals, self.faults.cow);
        // The fault probe was parked when this fork began.
        cow &= s.state() & spawn::FAULTS_UNWATCHED == 0;
        Faults {
            pre_exec: known(s.faults_pre_exec, totals && execed),
            pre_exec_cow: known(s.cow_pre_exec, cow && execed),
            total: known(s.faults_total, totals && exited),
            cow_total: known(s.cow_total, cow && exited),
            parent_cow_after_fork: known(
                s.parent_cow,
                cow && s.state() & spawn::PARENT_COW_KNOWN != 0,
            ),
        }
    }

    /// Why parts of the record are missing.
    fn why_incomplete(&mut self, s: &SpawnEvent, r: &SpawnRecord) -> Vec<String> {
        let st = s.state();
        let has = |bit: u32| st & bit != 0;
        let mut why = Vec::new();
        if has(spawn::CLONE_FAILED) {
            self.stats.failed_clones += 1;
            why.push(format!(
                "clone failed: errno {}",
                s.clone_ret.wrapping_neg()
            ));
            return why;
        }
        if has(spawn::EMIT_PENDING) {
            self.stats.collected_deferred += 1;
        }
        if s.syscall == 0 && !has(spawn::ROOT) {
            why.push("clone entry not seen".into());
        }
        if has(spawn::RECORDING_ENDED) {
            self.stats.collected_at_end += 1;
            why.extend(unfinished(st).map(str::to_string));
        }
        if has(spawn::REAP_UNSEEN) {
            why.push("reaped by a process spawnprof does not trace (time unknown)".into());
        }
        if has(spawn::EXEC_TOOK_OVER) {
            why.push("ended by its own exec, which made it the process's leader".into());
        }
        // Set only where the first-run probes attached: elsewhere the plan
        // says why no spawn has a first run.
        if has(spawn::AWAITING_FIRST_RUN) {
            why.push("first run not seen".into());
        }
        if has(spawn::FIRST_RUN_MISSED) {
            why.push("first run not seen (its first switch-in was missed)".into());
        }
        if let Some(what) = unwatched(has(spawn::FORK_UNWATCHED), has(spawn::FAULTS_UNWATCHED)) {
            why.push(what.into());
        }
        let sent = r.exec_attempts.len() as u64;
        let counted = u64::from(s.exec_attempts);
        if counted > sent {
            why.push(format!(
                "{} exec attempt record(s) lost (ring buffer full)",
                counted - sent
            ));
        }
        why
    }
}

/// What a fork begun while fork-only probes were parked misses: the
/// mmap-lock ones (its dup_mmap), the page-fault one (its copy-on-write
/// counts), or both.
fn unwatched(mm_lock: bool, faults: bool) -> Option<&'static str> {
    match (mm_lock, faults) {
        (true, true) => Some(
            "forked while the fork-only probes were parked: no dup_mmap, no copy-on-write counts",
        ),
        (true, false) => Some("forked while the mmap-lock probes were parked: no dup_mmap"),
        (false, true) => {
            Some("forked while the page-fault probe was parked: no copy-on-write counts")
        }
        (false, false) => None,
    }
}

/// What had not happened yet when the recording ended.
fn unfinished(st: u32) -> impl Iterator<Item = &'static str> {
    let has = |bit: u32| st & bit != 0;
    let thread = has(spawn::THREAD);
    let process = !thread && !has(spawn::ROOT);
    [
        (
            !has(spawn::EXITED),
            "still running when the recording ended",
        ),
        (
            process && has(spawn::EXITED) && !has(spawn::REAPED),
            "not reaped by its parent during the recording",
        ),
        (
            !has(spawn::ROOT) && !has(spawn::PARENT_RETURNED),
            "parent's clone return not seen",
        ),
        (
            has(spawn::COW_PENDING),
            "parent's copy-on-write faults counted until the recording ended",
        ),
    ]
    .into_iter()
    .filter_map(|(cond, why)| cond.then_some(why))
}

fn syscall_name(id: u16) -> &'static str {
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

fn set_exit_code(r: &mut SpawnRecord, code: i32) {
    if code & 0x7f == 0 {
        r.exit_status = Some((code >> 8) & 0xff);
    } else {
        r.exit_signal = Some(code & 0x7f);
    }
}

#[cfg(test)]
mod tests;
