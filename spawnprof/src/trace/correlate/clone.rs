//! The parent's side, inside its clone: clone entry, the stages of
//! copy_process (held by the parent's tid), the fork that names the child
//! (and moves the spawn to the child's tid), the child's wakeup, and the
//! parent's return from clone.
use std::collections::hash_map::Entry;

use spawnprof_common::{clone_flags as cf, kind, unpack_faults};

use super::{Builder, Correlator, syscall_name};
use crate::model::{KernelFnTimes, describe_flags, method_of};
use crate::trace::decode::Event;

impl Correlator {
    pub(super) fn clone_enter(&mut self, e: &Event) {
        let m = &e.mark;
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
        r.ts.clone_enter = Some(m.ts_ns);
        self.by_parent.insert(m.tid, b);
    }

    /// A stage boundary inside copy_process, or the kernel's sums of it.
    pub(super) fn inside_clone(&mut self, e: &Event) {
        let m = &e.mark;
        let Some(b) = self.by_parent.get_mut(&m.tid) else {
            self.stats.unmatched_marks += 1;
            return;
        };
        let (t, ts) = (&mut b.rec.ts, Some(m.ts_ns));
        match m.kind {
            kind::COPY_PROCESS_ENTER => t.copy_process_enter = ts,
            kind::COPY_PROCESS_EXIT => t.copy_process_exit = ts,
            kind::MM_LOCK_WAIT => t.mm_lock_wait = ts,
            kind::MM_LOCK_ACQUIRED => t.mm_copy_start = ts,
            kind::MM_LOCK_RELEASED => t.mm_copy_end = ts,
            kind::DUP_MMAP_ENTER => t.dup_mmap_enter = ts,
            kind::DUP_MMAP_EXIT => t.dup_mmap_exit = ts,
            kind::NEWTASK => {
                t.newtask = ts;
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

    pub(super) fn fork_done(&mut self, e: &Event) {
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
    pub(super) fn resolve_parent_cow(&mut self, parent_tgid: u32, cow_now: u64) -> bool {
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

    /// The scheduler made the new child runnable (a mark of the parent's
    /// that names the child).
    pub(super) fn wakeup_new(&mut self, e: &Event) {
        let m = &e.mark;
        match self.by_child.get_mut(&(m.a as u32)) {
            Some(b) => b.rec.ts.wakeup_new = Some(m.ts_ns),
            None => self.stats.unmatched_marks += 1,
        }
    }

    pub(super) fn clone_exit(&mut self, e: &Event) {
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
}
