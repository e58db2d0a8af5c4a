//! The child's first marks: its first switch-in and its return from clone.
//! A child with no spawn behind it starts one here (an orphan).
use spawnprof_common::kind;

use super::{Builder, Correlator};
use crate::trace::decode::Event;

impl Correlator {
    /// FIRST_RUN or CHILD_RETURN.
    pub(super) fn child_runs(&mut self, e: &Event) {
        let m = &e.mark;
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
                b.rec.ts.first_run = Some(m.ts_ns);
                b.rec.child_first_cpu = Some(u32::from(m.cpu));
            }
        } else {
            b.rec.ts.child_return = Some(m.ts_ns);
            b.rec.comm_before = Some(e.comm());
        }
        self.check(key);
    }

    /// A child-side mark of a task with no spawn yet: the root command
    /// (forked by spawnprof before it was traced), or a child whose
    /// parent-side marks never arrived, which is still reported.
    pub(super) fn orphan_child(&mut self, e: &Event) -> u32 {
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
}
