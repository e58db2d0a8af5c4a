//! The child's exec attempts: each execve/execveat from entry to return,
//! the successful one's point of no return and new image, and what
//! `--capture-args`/`--capture-env` read of it. Held by the child's tid, or
//! by its process when a thread of it execs.
use spawnprof_common::{UNKNOWN_U32, kind, unpack_faults};

use super::{Builder, Correlator, parent_waits_for_release, syscall_name};
use crate::model::ExecAttempt;
use crate::trace::decode::Event;

impl Correlator {
    /// EXEC_ENTER, EXEC_PREPARE, EXEC_DONE or EXEC_EXIT.
    pub(super) fn exec_mark(&mut self, e: &Event) {
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
        match m.kind {
            kind::EXEC_ENTER => b.exec_enter(e),
            kind::EXEC_PREPARE => b.exec_prepare(m.ts_ns),
            kind::EXEC_DONE => b.exec_done(e),
            _ => b.exec_exit(m.a as i64, m.ts_ns),
        }
    }

    /// EXEC_ARGS or EXEC_ENV: the new image's strings, NUL-separated.
    pub(super) fn exec_strings(&mut self, e: &Event) {
        let m = &e.mark;
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
}

impl Builder {
    fn exec_enter(&mut self, e: &Event) {
        let (m, r) = (&e.mark, &mut self.rec);
        r.ts.exec_first_enter.get_or_insert(m.ts_ns);
        r.exec_attempts.push(ExecAttempt {
            enter: m.ts_ns,
            exit: None,
            ret: None,
            path: e.text.clone().unwrap_or_default(),
            path_truncated: e.text_truncated,
            env_count: None,
            argc: None,
            syscall: syscall_name(m.c).into(),
        });
        self.open_attempt = Some(r.exec_attempts.len() - 1);
    }

    fn exec_prepare(&mut self, ts: u64) {
        let r = &mut self.rec;
        if r.ts.exec_done.is_none() {
            r.ts.exec_prepare = Some(ts);
            // The exec is about to release a vfork parent's memory,
            // which wakes the parent.
            if parent_waits_for_release(r) {
                r.ts.vfork_release = Some(ts);
            }
        }
    }

    /// The new image is in place: its path, comm, argument and environment
    /// sizes, and the faults the child took before it.
    fn exec_done(&mut self, e: &Event) {
        let (m, r) = (&e.mark, &mut self.rec);
        if r.ts.exec_done.is_some() {
            return;
        }
        r.ts.exec_done = Some(m.ts_ns);
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
        if let Some(a) = self.open_attempt.and_then(|i| r.exec_attempts.get_mut(i)) {
            r.ts.exec_enter = Some(a.enter);
            a.env_count = r.env_count;
            a.argc = r.argc;
        }
    }

    fn exec_exit(&mut self, ret: i64, ts: u64) {
        let r = &mut self.rec;
        if let Some(a) = self
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
