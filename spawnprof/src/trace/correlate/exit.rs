//! The end of a child: its exit (which may also close the CoW window of
//! its own last fork) and its parent's wait that reaps it.
use spawnprof_common::{UNKNOWN, UNKNOWN_U32, unpack_faults};

use super::{Correlator, parent_waits_for_release};
use crate::model::SpawnRecord;
use crate::trace::decode::Event;

impl Correlator {
    pub(super) fn exit(&mut self, e: &Event) {
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
            set_exit_code(r, m.a as i32);
        }
        self.check(key);
    }

    pub(super) fn reap(&mut self, e: &Event) {
        let m = &e.mark;
        let child = self
            .ns_children
            .remove(&(m.tgid, m.a as u32))
            .unwrap_or(m.a as u32);
        match self.by_child.get_mut(&child) {
            // wait4 also returns children that stopped or continued
            // (WUNTRACED, WCONTINUED): before the exit, not a reap.
            Some(b) if b.rec.ts.exit.is_none() => self.stats.wait_reports_before_exit += 1,
            Some(b) => {
                b.rec.ts.reap = Some(m.ts_ns);
                b.reaped = true;
                self.check(child);
            }
            None => self.stats.unmatched_marks += 1,
        }
    }
}

/// A wait status: an exit status, or the signal that ended the child.
fn set_exit_code(r: &mut SpawnRecord, code: i32) {
    if code & 0x7f == 0 {
        r.exit_status = Some((code >> 8) & 0xff);
    } else {
        r.exit_signal = Some(code & 0x7f);
    }
}
