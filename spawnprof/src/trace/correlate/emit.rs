//! Records leave the correlator here: when a spawn can no longer change,
//! or when the recording ends; timestamps become relative to its start.
use super::{Builder, Correlator};
use crate::model::SpawnRecord;

impl Correlator {
    /// Emits the spawn held for `child` if it is complete.
    pub(super) fn check(&mut self, child: u32) {
        if self.by_child.get(&child).is_some_and(Builder::done)
            && let Some(b) = self.by_child.remove(&child)
        {
            self.finish(b, &[]);
        }
    }

    /// Hands the record out, its timestamps relative to the recording's
    /// start and its fault figures null where nothing counted them.
    pub(super) fn finish(&mut self, b: Builder, reasons: &[&str]) {
        let mut r = b.rec;
        let f = &mut r.faults;
        if !self.faults.cow {
            (f.pre_exec_cow, f.cow_total, f.parent_cow_after_fork) = (None, None, None);
        }
        if !self.faults.totals {
            (f.pre_exec, f.total) = (None, None);
        }
        r.incomplete.extend(reasons.iter().map(|s| s.to_string()));
        relative_to(&mut r, self.t0);
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
            let why = b.why_unfinished();
            self.finish(b, &why);
        }
        self.parent_open.clear();
        self.cow_baseline.clear();
    }
}

impl Builder {
    /// Why a spawn still held when the recording ends is incomplete.
    fn why_unfinished(&self) -> Vec<&'static str> {
        let mut why = Vec::new();
        if !self.rec.thread && !self.rec.root {
            if !self.exited {
                why.push("still running when the recording ended");
            } else if !self.reaped {
                why.push("not reaped by its parent during the recording");
            }
        }
        if self.rec.thread && !self.parent_returned {
            why.push("parent's clone return not seen");
        }
        if self.rec.root && !self.exited {
            why.push("still running when the recording ended");
        }
        why
    }
}

/// Absolute CLOCK_MONOTONIC timestamps to ns since `t0`.
fn relative_to(r: &mut SpawnRecord, t0: u64) {
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
}
