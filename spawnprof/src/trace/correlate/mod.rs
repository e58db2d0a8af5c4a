//! Marks → spawns. Marks arrive slightly out of order; [`Reorder`] holds them
//! for a short window and releases them in time order. [`Correlator`] then
//! folds them into [`SpawnRecord`]s:
//!
//! - a spawn is keyed by the parent's tid from clone entry until the fork
//!   completes (`FORK_DONE` names the child),
//! - then by the child's tid, through first run, exec attempts, exit and reap.
//!
//! A record is handed out once it can no longer change: reaped (processes),
//! returned on both sides (threads), exited (the root command); or when the
//! recording ends, with the reasons it is incomplete.
use std::collections::{BTreeMap, hash_map::Entry};

// Keyed by pids and tids the kernel hands out: foldhash instead of the
// default SipHash, which resists hash flooding we cannot meet here and
// showed up at several percent of the reader's time (a few lookups per mark).
use foldhash::HashMap;

use spawnprof_common::{UNKNOWN, UNKNOWN_U32, clone_flags as cf, kind, syscall, unpack_faults};

use super::decode::Event;
use crate::model::{
    ExecAttempt, FaultCoverage, KernelFnTimes, SpawnRecord, describe_flags, method_of,
};

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

    fn child_key(&self, tid: u32, tgid: u32) -> Option<u32> {
        if self.by_child.contains_key(&tid) {
            Some(tid)
        } else if self.by_child.get(&tgid).is_some_and(|b| !b.rec.thread) {
            Some(tgid)
        } else {
            None
        }
    }

    pub fn feed(&mut self, e: &Event) {
        let m = &e.mark;
        self.stats.marks += 1;
        let slot = usize::from(m.kind).min(self.marks_per_kind.len() - 1);
        self.marks_per_kind[slot] += 1;
        let ts = m.ts_ns;
        match m.kind {
            kind::CLONE_ENTER => {
                if let Some(stale) = self.by_parent.remove(&m.tid) {
                    self.finish(stale, &["clone return not seen (lost marks)"]);
                }
                let mut b = Builder::default();
                let r = &mut b.rec;
                r.parent_pid = Some(m.tgid);
                r.parent_tid = Some(m.tid);
                r.parent_comm = Some(e.comm());
                r.syscall = Some(syscall_name(m.b).into());
                r.clone_flags = Some(m.a);
                r.flags = Some(describe_flags(m.a));
                r.method = Some(method_of(m.a).into());
                r.thread = m.a & cf::CLONE_THREAD != 0;
                r.ts.clone_enter = Some(ts);
                self.by_parent.insert(m.tid, b);
            }
            kind::COPY_PROCESS_ENTER
            | kind::COPY_PROCESS_EXIT
            | kind::MM_LOCK_WAIT
            | kind::MM_LOCK_ACQUIRED
            | kind::MM_LOCK_RELEASED
            | kind::DUP_MMAP_ENTER
            | kind::DUP_MMAP_EXIT
            | kind::NEWTASK
            | kind::KERNEL_FN_TOTALS => {
                let Some(b) = self.by_parent.get_mut(&m.tid) else {
                    self.stats.unmatched_marks += 1;
                    return;
                };
                let t = &mut b.rec.ts;
                match m.kind {
                    kind::COPY_PROCESS_ENTER => t.copy_process_enter = Some(ts),
                    kind::COPY_PROCESS_EXIT => t.copy_process_exit = Some(ts),
                    kind::MM_LOCK_WAIT => t.mm_lock_wait = Some(ts),
                    kind::MM_LOCK_ACQUIRED => t.mm_copy_start = Some(ts),
                    kind::MM_LOCK_RELEASED => t.mm_copy_end = Some(ts),
                    kind::DUP_MMAP_ENTER => t.dup_mmap_enter = Some(ts),
                    kind::DUP_MMAP_EXIT => t.dup_mmap_exit = Some(ts),
                    kind::NEWTASK => {
                        t.newtask = Some(ts);
                        b.rec.child_pid = Some(m.a as u32);
                    }
                    _ => {
                        b.rec.kernel_fn = Some(KernelFnTimes {
                            copy_page_range_ns: m.a,
                            copy_page_range_calls: m.c >> 32,
                            anon_vma_fork_ns: m.b,
                            anon_vma_fork_calls: m.c & 0xffff_ffff,
                        });
                    }
                }
            }
            kind::FORK_DONE => self.fork_done(e),
            kind::WAKEUP_NEW => match self.by_child.get_mut(&(m.a as u32)) {
                Some(b) => b.rec.ts.wakeup_new = Some(ts),
                None => self.stats.unmatched_marks += 1,
            },
            kind::CLONE_EXIT => self.clone_exit(e),
            kind::FIRST_RUN | kind::CHILD_RETURN => {
                let key = match self.by_child.contains_key(&m.tid) {
                    true => m.tid,
                    false => self.orphan_child(e),
                };
                let b = self.by_child.get_mut(&key).expect("present");
                b.child_seen = true;
                if m.kind == kind::FIRST_RUN {
                    if b.rec.ts.child_return.is_some() || b.rec.ts.exec_first_enter.is_some() {
                        // The child already ran: this is a later switch-in,
                        // the first one was missed by the probe.
                        self.stats.late_first_runs += 1;
                    } else {
                        b.rec.ts.first_run = Some(ts);
                        b.rec.child_first_cpu = Some(u32::from(m.cpu));
                    }
                } else {
                    b.rec.ts.child_return = Some(ts);
                    b.rec.comm_before = Some(e.comm());
                }
                self.check(key);
            }
            kind::EXEC_ENTER | kind::EXEC_PREPARE | kind::EXEC_DONE | kind::EXEC_EXIT => {
                self.exec_mark(e)
            }
            kind::EXEC_ARGS | kind::EXEC_ENV => {
                let Some(key) = self.child_key(m.tid, m.tgid) else {
                    self.stats.unmatched_marks += 1;
                    return;
                };
                let r = &mut self.by_child.get_mut(&key).expect("present").rec;
                // Only the first successful exec's, like exec_path.
                let strings: Vec<String> = e
                    .text
                    .as_deref()
                    .unwrap_or("")
                    .split('\0')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                let slot = if m.kind == kind::EXEC_ARGS {
                    &mut r.args
                } else {
                    &mut r.env
                };
                if slot.is_none() {
                    *slot = Some(strings);
                    r.capture_truncated |= e.text_truncated;
                }
            }
            kind::EXIT => self.exit(e),
            kind::REAP => {
                let child = self
                    .ns_children
                    .remove(&(m.tgid, m.a as u32))
                    .unwrap_or(m.a as u32);
                match self.by_child.get_mut(&child) {
                    // wait4 also returns children that stopped or continued
                    // (WUNTRACED, WCONTINUED): before the exit, not a reap.
                    Some(b) if b.rec.ts.exit.is_none() => self.stats.wait_reports_before_exit += 1,
                    Some(b) => {
                        b.rec.ts.reap = Some(ts);
                        b.reaped = true;
                        self.check(child);
                    }
                    None => self.stats.unmatched_marks += 1,
                }
            }
            _ => self.stats.unmatched_marks += 1,
        }
    }

    /// A child-side mark of a task with no spawn yet: the root command
    /// (forked by spawnprof before it was traced), or a child whose
    /// parent-side marks never arrived, which is still reported.
    fn orphan_child(&mut self, e: &Event) -> u32 {
        let m = &e.mark;
        let mut b = Builder::default();
        b.rec.child_pid = Some(m.tid);
        if Some(m.tid) == self.root_pid {
            b.rec.root = true;
            b.rec.comm_before = Some(e.comm());
        } else {
            b.rec.thread = m.tid != m.tgid;
            b.rec
                .incomplete
                .push("parent's fork marks were lost".into());
        }
        self.by_child.insert(m.tid, b);
        m.tid
    }

    fn fork_done(&mut self, e: &Event) {
        let m = &e.mark;
        let child = m.a as u32;
        let mut b = match self.by_parent.remove(&m.tid) {
            Some(b) => b,
            None => {
                let mut b = Builder::default();
                b.rec.parent_pid = Some(m.tgid);
                b.rec.parent_tid = Some(m.tid);
                b.rec.parent_comm = Some(e.comm());
                b.rec.incomplete.push("clone entry not seen".into());
                b
            }
        };
        b.rec.child_pid = Some(child);
        b.rec.parent_cpu = Some(u32::from(m.cpu));
        b.rec.ts.fork_done = Some(m.ts_ns);
        // The parent's CoW faults since its previous fork belong to that fork.
        let (_, cow_now) = unpack_faults(m.b);
        self.resolve_parent_cow(m.tgid, cow_now);
        let forks_mm = b.rec.clone_flags.is_some_and(|f| f & cf::CLONE_VM == 0);
        if forks_mm {
            b.cow_pending = true;
            self.cow_baseline.insert(m.tgid, (child, cow_now));
        }
        if let Entry::Occupied(stale) = self.by_child.entry(child) {
            // pid reuse within one recording: the old record is over.
            let stale = stale.remove();
            self.finish(stale, &["pid was reused before the record completed"]);
        }
        self.by_child.insert(child, b);
        self.parent_open.insert(m.tid, child);
    }

    /// Closes the CoW window of `parent_tgid`'s previous fork; false when
    /// it had none open.
    fn resolve_parent_cow(&mut self, parent_tgid: u32, cow_now: u64) -> bool {
        let Some((prev_child, cow_then)) = self.cow_baseline.remove(&parent_tgid) else {
            return false;
        };
        if let Some(prev) = self.by_child.get_mut(&prev_child) {
            prev.rec.faults.parent_cow_after_fork = Some(cow_now.saturating_sub(cow_then));
            prev.cow_pending = false;
            self.check(prev_child);
        }
        true
    }

    fn clone_exit(&mut self, e: &Event) {
        let m = &e.mark;
        let ret = m.a as i64;
        if let Some(child) = self.parent_open.remove(&m.tid) {
            if ret > 0 && ret as u32 != child {
                self.ns_children.insert((m.tgid, ret as u32), child);
            }
            if let Some(b) = self.by_child.get_mut(&child) {
                b.rec.ts.clone_exit = Some(m.ts_ns);
                b.parent_returned = true;
                self.check(child);
            }
        } else if let Some(mut b) = self.by_parent.remove(&m.tid) {
            // No fork completed: the clone failed.
            b.rec.ts.clone_exit = Some(m.ts_ns);
            self.stats.failed_clones += 1;
            // wrapping: marks are untrusted and -i64::MIN overflows.
            let why = format!("clone failed: errno {}", ret.wrapping_neg());
            self.finish(b, &[why.as_str()]);
        } else {
            self.stats.unmatched_marks += 1;
        }
    }

    fn exec_mark(&mut self, e: &Event) {
        let m = &e.mark;
        let key = match self.child_key(m.tid, m.tgid) {
            Some(k) => k,
            None if Some(m.tgid) == self.root_pid && m.kind == kind::EXEC_ENTER => {
                self.orphan_child(e)
            }
            None => {
                self.stats.unmatched_marks += 1;
                return;
            }
        };
        let b = self.by_child.get_mut(&key).expect("present");
        let r = &mut b.rec;
        let ts = m.ts_ns;
        match m.kind {
            kind::EXEC_ENTER => {
                r.ts.exec_first_enter.get_or_insert(ts);
                r.exec_attempts.push(ExecAttempt {
                    enter: ts,
                    exit: None,
                    ret: None,
                    path: e.text.clone().unwrap_or_default(),
                    path_truncated: e.text_truncated,
                    env_count: None,
                    argc: None,
                    syscall: syscall_name(m.c).into(),
                });
                b.open_attempt = Some(r.exec_attempts.len() - 1);
            }
            kind::EXEC_PREPARE => {
                if r.ts.exec_done.is_none() {
                    r.ts.exec_prepare = Some(ts);
                    // The exec is about to release a vfork parent's memory,
                    // which wakes the parent.
                    if parent_waits_for_release(r) {
                        r.ts.vfork_release = Some(ts);
                    }
                }
            }
            kind::EXEC_DONE => {
                if r.ts.exec_done.is_none() {
                    r.ts.exec_done = Some(ts);
                    r.exec_path = e.text.clone();
                    r.comm_after = Some(e.comm());
                    let known = |v: u64| (v != UNKNOWN_U32).then_some(v);
                    let (argc, bytes, envc) = (m.a >> 32, m.b & UNKNOWN_U32, m.b >> 32);
                    r.env_bytes = known(bytes);
                    r.env_count = known(envc);
                    r.argc = known(argc);
                    let (faults, cow) = unpack_faults(m.c);
                    r.faults.pre_exec = known(faults);
                    r.faults.pre_exec_cow = Some(cow);
                    if let Some(a) = b.open_attempt.and_then(|i| r.exec_attempts.get_mut(i)) {
                        r.ts.exec_enter = Some(a.enter);
                        a.env_count = r.env_count;
                        a.argc = r.argc;
                    }
                }
            }
            _ => {
                let ret = m.a as i64;
                if let Some(a) = b
                    .open_attempt
                    .take()
                    .and_then(|i| r.exec_attempts.get_mut(i))
                {
                    a.exit = Some(ts);
                    a.ret = Some(ret);
                }
                if ret == 0 && r.ts.exec_return.is_none() {
                    r.ts.exec_return = Some(ts);
                }
            }
        }
    }

    fn exit(&mut self, e: &Event) {
        let m = &e.mark;
        let (faults, cow) = unpack_faults(m.b);
        // This process may itself be a parent whose last fork awaits its CoW count.
        let was_parent = self.resolve_parent_cow(m.tgid, cow);
        let Some(key) = self.child_key(m.tgid, m.tgid) else {
            if !was_parent {
                self.stats.unmatched_marks += 1;
            }
            return;
        };
        let b = self.by_child.get_mut(&key).expect("present");
        b.exited = true;
        let r = &mut b.rec;
        r.ts.exit = Some(m.ts_ns);
        // A vfork child that never execs (every attempt failed) releases its
        // parent as its mm goes, just before this tracepoint.
        if r.ts.exec_done.is_none() && r.ts.vfork_release.is_none() && parent_waits_for_release(r) {
            r.ts.vfork_release = Some(m.ts_ns);
        }
        r.faults.total = (faults != UNKNOWN_U32).then_some(faults);
        r.faults.cow_total = Some(cow);
        if m.a != UNKNOWN {
            let code = m.a as i32;
            if code & 0x7f == 0 {
                r.exit_status = Some((code >> 8) & 0xff);
            } else {
                r.exit_signal = Some(code & 0x7f);
            }
        }
        self.check(key);
    }

    fn check(&mut self, child: u32) {
        if self.by_child.get(&child).is_some_and(Builder::done)
            && let Some(b) = self.by_child.remove(&child)
        {
            self.finish(b, &[]);
        }
    }

    fn finish(&mut self, b: Builder, reasons: &[&str]) {
        let mut r = b.rec;
        let f = &mut r.faults;
        if !self.faults.cow {
            (f.pre_exec_cow, f.cow_total, f.parent_cow_after_fork) = (None, None, None);
        }
        if !self.faults.totals {
            (f.pre_exec, f.total) = (None, None);
        }
        r.incomplete.extend(reasons.iter().map(|s| s.to_string()));
        let t0 = self.t0;
        let rel = |v: &mut Option<u64>| *v = v.map(|x| x.saturating_sub(t0));
        let t = &mut r.ts;
        for v in [
            &mut t.clone_enter,
            &mut t.copy_process_enter,
            &mut t.mm_lock_wait,
            &mut t.mm_copy_start,
            &mut t.mm_copy_end,
            &mut t.dup_mmap_enter,
            &mut t.dup_mmap_exit,
            &mut t.copy_process_exit,
            &mut t.newtask,
            &mut t.fork_done,
            &mut t.wakeup_new,
            &mut t.clone_exit,
            &mut t.first_run,
            &mut t.child_return,
            &mut t.exec_first_enter,
            &mut t.exec_enter,
            &mut t.exec_prepare,
            &mut t.vfork_release,
            &mut t.exec_done,
            &mut t.exec_return,
            &mut t.exit,
            &mut t.reap,
        ] {
            rel(v);
        }
        for a in &mut r.exec_attempts {
            a.enter = a.enter.saturating_sub(t0);
            rel(&mut a.exit);
        }
        r.failed_exec_attempts = r
            .exec_attempts
            .iter()
            .filter(|a| a.ret.is_some_and(|v| v != 0))
            .count() as u64;
        r.derive_durations();
        self.out.push(r);
    }

    /// Ends the recording: every spawn still in flight is emitted with the
    /// reasons it is incomplete.
    pub fn finish_all(&mut self) {
        let parents: Vec<Builder> = self.by_parent.drain().map(|(_, b)| b).collect();
        for b in parents {
            self.finish(b, &["recording ended inside the clone"]);
        }
        let mut children: Vec<(u32, Builder)> = self.by_child.drain().collect();
        children.sort_by_key(|(k, _)| *k);
        for (_, b) in children {
            let mut why = Vec::new();
            if !b.rec.thread && !b.rec.root {
                if !b.exited {
                    why.push("still running when the recording ended");
                } else if !b.reaped {
                    why.push("not reaped by its parent during the recording");
                }
            }
            if b.rec.thread && !b.parent_returned {
                why.push("parent's clone return not seen");
            }
            if b.rec.root && !b.exited {
                why.push("still running when the recording ended");
            }
            self.finish(b, &why);
        }
        self.parent_open.clear();
        self.cow_baseline.clear();
    }
}

#[cfg(test)]
mod tests;
