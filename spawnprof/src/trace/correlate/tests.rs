//! The correlator on synthetic mark sequences: no kernel needed.
use spawnprof_common::{Mark, UNKNOWN, pack_faults};

use super::*;

const PARENT: u32 = 100;
const CHILD: u32 = 200;
const SIGCHLD: u64 = 17;

/// Builds synthetic mark sequences.
struct Script {
    events: Vec<Event>,
    t: u64,
    coverage: FaultCoverage,
}

impl Script {
    fn new() -> Self {
        Self {
            events: Vec::new(),
            t: 1_000,
            coverage: FaultCoverage::ALL,
        }
    }
    fn at(&mut self, dt: u64, kind: u16, tid: u32, tgid: u32, abc: (u64, u64, u64)) -> &mut Self {
        self.text_at(dt, kind, tid, tgid, abc, None)
    }
    fn text_at(
        &mut self,
        dt: u64,
        kind: u16,
        tid: u32,
        tgid: u32,
        (a, b, c): (u64, u64, u64),
        text: Option<&str>,
    ) -> &mut Self {
        self.t += dt;
        self.events.push(Event {
            mark: Mark {
                ts_ns: self.t,
                tid,
                tgid,
                kind,
                a,
                b,
                c,
                ..Default::default()
            },
            text: text.map(str::to_string),
            text_truncated: false,
        });
        self
    }
    /// PARENT enters a clone with `flags` through `syscall`, 10 ns on.
    fn clone_enter(&mut self, flags: u64, syscall: u64) -> &mut Self {
        self.at(10, kind::CLONE_ENTER, PARENT, PARENT, (flags, syscall, 0))
    }
    /// `child` enters execve of `path`, `dt` ns on (`a`: a value the
    /// correlator ignores).
    fn exec_enter(&mut self, dt: u64, child: u32, a: u64, path: &str) -> &mut Self {
        let abc = (a, 1, syscall::EXECVE);
        self.text_at(dt, kind::EXEC_ENTER, child, child, abc, Some(path))
    }
    /// Puts the last mark on `cpu`.
    fn on_cpu(&mut self, cpu: u16) -> &mut Self {
        self.events.last_mut().expect("a mark").mark.cpu = cpu;
        self
    }
    /// A posix_spawn-style clone3 (CLONE_VM|CLONE_VFORK) up to the
    /// child's first run.
    fn vfork(&mut self, child: u32) -> &mut Self {
        let vfork = cf::CLONE_VM | cf::CLONE_VFORK | SIGCHLD;
        self.clone_enter(vfork, syscall::CLONE3)
            .at(20, kind::NEWTASK, PARENT, PARENT, (child as u64, vfork, 0))
            .at(5, kind::FORK_DONE, PARENT, PARENT, (child as u64, 0, 0))
            .at(5, kind::WAKEUP_NEW, PARENT, PARENT, (child as u64, 0, 0))
            .at(5, kind::FIRST_RUN, child, child, (0, 0, 0))
    }

    /// fork() by PARENT of CHILD with an mm copy, up to the parent's return.
    fn fork(&mut self, child: u32) -> &mut Self {
        self.clone_enter(SIGCHLD, syscall::CLONE)
            .at(5, kind::MM_LOCK_WAIT, PARENT, PARENT, (0xabc, 0, 0))
            .at(5, kind::MM_LOCK_ACQUIRED, PARENT, PARENT, (0xabc, 1, 0))
            .at(500, kind::MM_LOCK_RELEASED, PARENT, PARENT, (0xabc, 0, 0))
            .at(
                20,
                kind::NEWTASK,
                PARENT,
                PARENT,
                (child as u64, SIGCHLD, 0),
            )
            .at(
                5,
                kind::FORK_DONE,
                PARENT,
                PARENT,
                (child as u64, pack_faults(10, 2), 0),
            )
            .at(5, kind::WAKEUP_NEW, PARENT, PARENT, (child as u64, 1, 0))
            .at(5, kind::CLONE_EXIT, PARENT, PARENT, (child as u64, 0, 0))
    }
    /// The child runs, execs `path` after `misses` PATH misses, exits.
    fn child_life(&mut self, child: u32, misses: usize, path: &str) -> &mut Self {
        self.at(30, kind::FIRST_RUN, child, child, (1, 0, 0)).at(
            5,
            kind::CHILD_RETURN,
            child,
            child,
            (0, 0, 0),
        );
        for i in 0..misses {
            let p = format!("/nonexistent/{i}/true");
            self.exec_enter(20, child, 3, &p).at(
                10,
                kind::EXEC_EXIT,
                child,
                child,
                (-2i64 as u64, 0, 0),
            );
        }
        self.exec_enter(20, child, 3, path)
            .at(50, kind::EXEC_PREPARE, child, child, (0, 0, 0))
            .text_at(
                100,
                kind::EXEC_DONE,
                child,
                child,
                (child as u64 | (1 << 32), 42 | (3 << 32), pack_faults(4, 1)),
                Some(path),
            )
            .at(10, kind::EXEC_EXIT, child, child, (0, 0, 0))
            .at(300, kind::EXIT, child, child, (0, pack_faults(30, 5), 0))
    }
    fn reap(&mut self, child: u32) -> &mut Self {
        self.at(10, kind::REAP, PARENT, PARENT, (child as u64, 0, 0))
    }
    fn parent_exit(&mut self, cow: u64) -> &mut Self {
        self.at(
            10,
            kind::EXIT,
            PARENT,
            PARENT,
            (0, pack_faults(100, cow), 0),
        )
    }
    fn run(&self) -> (Vec<SpawnRecord>, CorrelationStats) {
        let mut c = Correlator::new(1_000, None).with_fault_coverage(self.coverage);
        for e in &self.events {
            c.feed(e);
        }
        c.finish_all();
        (c.take_finished(), c.stats())
    }
}

#[test]
fn fork_exec_exit_reap_yields_one_complete_record() {
    let (recs, stats) = Script::new()
        .fork(CHILD)
        .child_life(CHILD, 0, "/bin/true")
        .reap(CHILD)
        .parent_exit(9)
        .run();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert!(r.incomplete.is_empty(), "{:?}", r.incomplete);
    assert_eq!((r.parent_pid, r.child_pid), (Some(PARENT), Some(CHILD)));
    assert_eq!(r.method.as_deref(), Some("fork"));
    assert_eq!(r.flags.as_deref(), Some("SIGCHLD"));
    assert_eq!(
        r.duration("dup_mmap"),
        Some(505),
        "lock wait start to release"
    );
    assert_eq!(r.duration("mm_lock_wait"), Some(5));
    assert_eq!(r.exec_path.as_deref(), Some("/bin/true"));
    assert_eq!(r.env_bytes, Some(42));
    assert_eq!(r.env_count, Some(3));
    assert_eq!(r.faults.pre_exec, Some(4));
    assert_eq!(r.faults.total, Some(30));
    assert_eq!(
        r.faults.parent_cow_after_fork,
        Some(7),
        "9 at exit - 2 at fork"
    );
    assert_eq!(r.exit_status, Some(0));
    assert_eq!(r.ts.clone_enter, Some(10), "relative to t0");
    assert_eq!(stats.unmatched_marks, 0);
    assert_eq!(stats.marks_by_kind["clone_enter"], 1);
    assert_eq!(
        stats.marks_by_kind["exit"], 2,
        "the child's and the parent's"
    );
    assert_eq!(stats.marks_by_kind.values().sum::<u64>(), stats.marks);
    // Parent-side stages tile the clone syscall.
    let parts: u64 = ["copy_process", "fork_wakeup", "parent_return"]
        .iter()
        .map(|s| r.duration(s).unwrap())
        .sum();
    assert_eq!(parts, r.duration("clone").unwrap());
}

#[test]
fn a_parent_in_a_pid_namespace_reaps_by_its_own_number_for_the_child() {
    const NS_CHILD: u32 = 4;
    let mut script = Script::new();
    script.fork(CHILD);
    // The clone returned the child's pid as the parent's namespace
    // numbers it, and wait4 returns that number too.
    let clone_exit = &mut script.events.last_mut().expect("a mark").mark;
    assert_eq!(clone_exit.kind, kind::CLONE_EXIT);
    clone_exit.a = NS_CHILD as u64;
    let (recs, stats) = script
        .child_life(CHILD, 0, "/bin/true")
        .reap(NS_CHILD)
        .run();
    assert_eq!(recs.len(), 1);
    assert!(recs[0].incomplete.is_empty(), "{:?}", recs[0].incomplete);
    assert!(recs[0].duration("reap_delay").is_some());
    assert_eq!(stats.unmatched_marks, 0);
}

#[test]
fn path_misses_are_failed_attempts_before_the_success() {
    let (recs, _) = Script::new()
        .fork(CHILD)
        .child_life(CHILD, 10, "/usr/bin/true")
        .reap(CHILD)
        .run();
    let r = &recs[0];
    assert_eq!(r.exec_attempts.len(), 11);
    assert_eq!(r.failed_exec_attempts, 10);
    assert!(r.exec_attempts[..10].iter().all(|a| a.ret == Some(-2)));
    assert!(r.exec_attempts[10].succeeded());
    assert_eq!(r.duration("path_search"), Some(10 * 30));
}

#[test]
fn vfork_parent_returns_after_the_childs_exec() {
    let mut s = Script::new();
    s.vfork(CHILD)
        .at(5, kind::CHILD_RETURN, CHILD, CHILD, (0, 0, 0))
        .exec_enter(5, CHILD, 1, "/bin/true")
        .at(20, kind::EXEC_PREPARE, CHILD, CHILD, (0, 0, 0))
        .text_at(
            30,
            kind::EXEC_DONE,
            CHILD,
            CHILD,
            (CHILD as u64, 8, 0),
            Some("/bin/true"),
        )
        .at(2, kind::CLONE_EXIT, PARENT, PARENT, (CHILD as u64, 0, 0))
        .at(8, kind::EXEC_EXIT, CHILD, CHILD, (0, 0, 0))
        .at(100, kind::EXIT, CHILD, CHILD, (0, 0, 0))
        .reap(CHILD);
    let (recs, _) = s.run();
    let r = &recs[0];
    assert_eq!(r.method.as_deref(), Some("vfork"));
    assert_eq!(r.syscall.as_deref(), Some("clone3"));
    assert_eq!(r.duration("dup_mmap"), None, "no mm copy at all");
    assert_eq!(r.duration("parent_return"), Some(5 + 5 + 5 + 50 + 2));
    // Released at the exec's point of no return, back 32 ns later.
    assert_eq!(r.ts.vfork_release, r.ts.exec_prepare);
    assert_eq!(r.duration("vfork_resume"), Some(30 + 2));
    assert_eq!(r.faults.parent_cow_after_fork, None, "shared mm: no CoW");
    assert!(r.incomplete.is_empty(), "{:?}", r.incomplete);
}

#[test]
fn a_vfork_child_that_never_execs_releases_its_parent_as_it_exits() {
    let mut s = Script::new();
    s.vfork(CHILD)
        .exec_enter(5, CHILD, 1, "/nonexistent/x")
        .at(8, kind::EXEC_EXIT, CHILD, CHILD, (-2i64 as u64, 0, 0))
        .at(40, kind::EXIT, CHILD, CHILD, (127 << 8, 0, 0))
        .at(6, kind::CLONE_EXIT, PARENT, PARENT, (CHILD as u64, 0, 0))
        .reap(CHILD);
    let (recs, _) = s.run();
    let r = &recs[0];
    assert_eq!(r.ts.exec_done, None);
    assert_eq!(r.ts.vfork_release, r.ts.exit);
    assert_eq!(r.duration("vfork_resume"), Some(6));
}

#[test]
fn fault_figures_no_probe_counted_are_null_not_zero() {
    let script = || {
        let mut s = Script::new();
        s.fork(CHILD)
            .at(30, kind::FIRST_RUN, CHILD, CHILD, (0, 0, 0))
            .at(100, kind::EXIT, CHILD, CHILD, (0, pack_faults(30, 0), 0))
            .reap(CHILD)
            .parent_exit(0);
        s
    };
    let (counted, _) = script().run();
    assert_eq!(counted[0].faults.cow_total, Some(0));
    assert_eq!(counted[0].faults.total, Some(30));
    let mut s = script();
    s.coverage = FaultCoverage {
        cow: false,
        totals: false,
    };
    let (uncounted, _) = s.run();
    let f = &uncounted[0].faults;
    assert_eq!(
        (f.pre_exec_cow, f.cow_total, f.parent_cow_after_fork),
        (None, None, None)
    );
    assert_eq!((f.pre_exec, f.total), (None, None));
}

#[test]
fn a_fork_parent_is_never_released_by_its_childs_exec() {
    let mut s = Script::new();
    s.fork(CHILD)
        .at(30, kind::FIRST_RUN, CHILD, CHILD, (0, 0, 0))
        .at(10, kind::EXEC_PREPARE, CHILD, CHILD, (0, 0, 0))
        .at(100, kind::EXIT, CHILD, CHILD, (0, 0, 0))
        .reap(CHILD);
    let (recs, _) = s.run();
    assert!(recs[0].ts.exec_prepare.is_some());
    assert_eq!(recs[0].ts.vfork_release, None);
    assert_eq!(recs[0].duration("vfork_resume"), None);
}

#[test]
fn the_parents_cpu_at_fork_and_the_childs_first_cpu_are_kept() {
    let mut s = Script::new();
    s.clone_enter(SIGCHLD, syscall::CLONE)
        .on_cpu(1)
        .at(5, kind::FORK_DONE, PARENT, PARENT, (CHILD as u64, 0, 0))
        .on_cpu(0)
        .at(5, kind::WAKEUP_NEW, PARENT, PARENT, (CHILD as u64, 0, 0))
        .on_cpu(0)
        .at(5, kind::CLONE_EXIT, PARENT, PARENT, (CHILD as u64, 0, 0))
        .at(30, kind::FIRST_RUN, CHILD, CHILD, (0, 0, 0))
        .on_cpu(3)
        .at(5, kind::CHILD_RETURN, CHILD, CHILD, (0, 0, 0))
        // A later switch-in elsewhere is not the first run.
        .at(5, kind::FIRST_RUN, CHILD, CHILD, (0, 0, 0))
        .on_cpu(2)
        .at(100, kind::EXIT, CHILD, CHILD, (0, 0, 0))
        .reap(CHILD);
    let (recs, _) = s.run();
    let r = &recs[0];
    // At fork, not at clone entry: the parent may have moved in between,
    // and the fork is where the scheduler picks the child's CPU.
    assert_eq!(r.parent_cpu, Some(0));
    assert_eq!(r.child_first_cpu, Some(3));
    assert_eq!(r.duration("sched_delay"), Some(35));
}

#[test]
fn failed_exec_is_recorded_not_missing() {
    let mut s = Script::new();
    s.fork(CHILD)
        .at(30, kind::FIRST_RUN, CHILD, CHILD, (0, 0, 0))
        .exec_enter(10, CHILD, 1, "/no/such")
        .at(10, kind::EXEC_EXIT, CHILD, CHILD, (-2i64 as u64, 0, 0))
        .at(10, kind::EXIT, CHILD, CHILD, (127 << 8, 0, 0))
        .reap(CHILD);
    let (recs, _) = s.run();
    let r = &recs[0];
    assert_eq!(r.exec_attempts.len(), 1);
    assert_eq!(r.exec_attempts[0].ret, Some(-2));
    assert_eq!(r.exec_path, None);
    assert_eq!(r.exit_status, Some(127));
    assert_eq!(r.duration("exec"), None);
}

#[test]
fn thread_spawns_complete_without_exit_or_reap() {
    let flags = cf::CLONE_VM | cf::CLONE_THREAD | cf::CLONE_SIGHAND;
    let mut s = Script::new();
    s.clone_enter(flags, syscall::CLONE3)
        .at(10, kind::FORK_DONE, PARENT, PARENT, (201, 0, 0))
        .at(5, kind::WAKEUP_NEW, PARENT, PARENT, (201, 0, 0))
        .at(5, kind::CLONE_EXIT, PARENT, PARENT, (201, 0, 0))
        .at(5, kind::FIRST_RUN, 201, PARENT, (0, 0, 0));
    let mut c = Correlator::new(0, None);
    for e in &s.events {
        c.feed(e);
    }
    let recs = c.take_finished();
    assert_eq!(recs.len(), 1, "emitted before the recording ends");
    assert!(recs[0].thread);
    assert_eq!(recs[0].method.as_deref(), Some("thread"));
}

#[test]
fn lost_parent_marks_still_report_the_child_as_incomplete() {
    let mut s = Script::new();
    s.child_life(CHILD, 0, "/bin/true");
    let (recs, stats) = s.run();
    assert_eq!(recs.len(), 1);
    assert!(recs[0].incomplete.iter().any(|w| w.contains("lost")));
    assert_eq!(recs[0].exec_path.as_deref(), Some("/bin/true"));
    assert_eq!(stats.unmatched_marks, 0);
}

#[test]
fn a_parent_exiting_first_leaves_its_child_unreaped_but_reported() {
    let (recs, _) = Script::new()
        .fork(CHILD)
        .parent_exit(3)
        .child_life(CHILD, 0, "/bin/true")
        .run();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].faults.parent_cow_after_fork, Some(1));
    assert!(recs[0].incomplete.iter().any(|w| w.contains("not reaped")));
}

#[test]
fn a_wait_report_before_the_exit_is_a_stop_not_a_reap() {
    let (recs, stats) = Script::new()
        .fork(CHILD)
        .reap(CHILD) // wait4 with WUNTRACED: the child stopped
        .child_life(CHILD, 0, "/bin/true")
        .reap(CHILD)
        .run();
    assert_eq!(recs.len(), 1);
    assert_eq!(stats.wait_reports_before_exit, 1);
    let r = &recs[0];
    assert!(r.incomplete.is_empty(), "{:?}", r.incomplete);
    assert!(r.ts.reap > r.ts.exit, "the reap is the wait after the exit");
}

#[test]
fn back_to_back_forks_attribute_cow_to_the_earlier_fork() {
    let (recs, _) = Script::new()
        .fork(CHILD)
        .child_life(CHILD, 0, "/bin/true")
        .reap(CHILD)
        .fork(CHILD + 1)
        .child_life(CHILD + 1, 0, "/bin/true")
        .reap(CHILD + 1)
        .parent_exit(2)
        .run();
    assert_eq!(recs.len(), 2);
    // Both forks saw the parent's counter at 2 (the script's constant).
    assert!(
        recs.iter()
            .all(|r| r.faults.parent_cow_after_fork == Some(0))
    );
    assert!(recs.iter().all(|r| r.incomplete.is_empty()));
}

#[test]
fn a_first_run_after_the_child_already_ran_is_not_trusted() {
    let mut s = Script::new();
    s.fork(CHILD)
        .at(5, kind::CHILD_RETURN, CHILD, CHILD, (0, 0, 0))
        .at(50, kind::FIRST_RUN, CHILD, CHILD, (0, 0, 0))
        .reap(CHILD);
    let (recs, stats) = s.run();
    assert_eq!(recs[0].ts.first_run, None);
    assert_eq!(stats.late_first_runs, 1);
}

/// A fork whose clone returns `ret` without having forked.
fn failed_clone(ret: i64) -> (Vec<SpawnRecord>, CorrelationStats) {
    let mut s = Script::new();
    s.clone_enter(SIGCHLD, syscall::CLONE).at(
        10,
        kind::CLONE_EXIT,
        PARENT,
        PARENT,
        (ret as u64, 0, 0),
    );
    s.run()
}

#[test]
fn a_failed_clone_is_reported_with_its_errno() {
    let (recs, stats) = failed_clone(-11);
    assert_eq!(stats.failed_clones, 1);
    assert!(recs[0].incomplete[0].contains("errno 11"));
}

/// A clone return value of i64::MIN (not one the kernel gives, but marks
/// are not trusted) overflowed negating it into an errno: a panic in
/// debug builds.
#[test]
fn a_failed_clone_with_any_return_value_is_reported() {
    let (recs, stats) = failed_clone(i64::MIN);
    assert_eq!(stats.failed_clones, 1);
    assert!(recs[0].incomplete[0].starts_with("clone failed: errno "));
}

/// Writes the records and counters a seeded storm of plausible marks
/// (few tids, so spawns collide, go stale and lose sides) gives, one JSON
/// line each, to `$SPAWNPROF_CORRELATE_DUMP`: run it before and after a
/// change to the correlator and compare the files.
/// `SPAWNPROF_CORRELATE_DUMP=FILE cargo test -p spawnprof --lib mark_storm -- --ignored`
#[test]
#[ignore]
fn mark_storm_records_for_comparing_versions() {
    let path = std::env::var_os("SPAWNPROF_CORRELATE_DUMP").expect("SPAWNPROF_CORRELATE_DUMP");
    let mut seed = 0x5eed_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = String::new();
    for round in 0..20u64 {
        let s = mark_storm(&mut next);
        let mut c = Correlator::new(1_000, (round % 2 == 0).then_some(200)).with_fault_coverage(
            FaultCoverage {
                cow: round % 3 != 0,
                totals: round % 5 != 0,
            },
        );
        for (i, e) in s.events.iter().enumerate() {
            c.feed(e);
            if i % 97 == 0 {
                for r in c.drain_finished() {
                    out.push_str(&serde_json::to_string(&r).unwrap());
                    out.push('\n');
                }
                out.push_str(&format!("in flight {}\n", c.in_flight()));
            }
        }
        c.finish_all();
        // Sorted: the spawns still inside a clone come out in hash order.
        let mut last: Vec<String> = c
            .take_finished()
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        last.sort();
        for line in last {
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str(&serde_json::to_string(&c.stats()).unwrap());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

/// 5,000 marks of every kind (and one out of range) drawn from `next`,
/// between six tids; their values mostly those tids, flags, errnos and
/// fault counts, sometimes anything.
fn mark_storm(next: &mut impl FnMut() -> u64) -> Script {
    let tids = [100u32, 101, 200, 201, 202, 203];
    let flags = [
        SIGCHLD,
        cf::CLONE_VM | cf::CLONE_VFORK | SIGCHLD,
        cf::CLONE_VM | cf::CLONE_THREAD | cf::CLONE_SIGHAND,
    ];
    let mut s = Script::new();
    for _ in 0..5_000 {
        let kind = (next() % u64::from(kind::COUNT + 1)) as u16;
        let tid = tids[(next() % 6) as usize];
        let tgid = if next().is_multiple_of(4) { 100 } else { tid };
        let pick = u64::from(tids[(next() % 6) as usize]);
        let a = match kind {
            kind::CLONE_ENTER => flags[(next() % 3) as usize],
            kind::CLONE_EXIT | kind::EXEC_EXIT => match next() % 4 {
                0 => -(next() as i64 % 40) as u64,
                1 => next() % 8,
                _ => pick,
            },
            kind::EXIT => match next() % 3 {
                0 => UNKNOWN,
                _ => next() % 0x10000,
            },
            _ if next().is_multiple_of(8) => next(),
            _ => pick,
        };
        let b = match next() % 3 {
            0 => pack_faults(next() % 100, next() % 50),
            1 => next() % 3,
            _ => next(),
        };
        let c = match next() % 3 {
            0 => pack_faults(next() % 100, next() % 50),
            1 => next() % 8,
            _ => next(),
        };
        let text = (!next().is_multiple_of(3)).then(|| format!("/bin/x{}\0arg\0", next() % 5));
        s.text_at(next() % 1_000, kind, tid, tgid, (a, b, c), text.as_deref())
            .on_cpu((next() % 4) as u16);
        s.events.last_mut().expect("a mark").mark.comm[..2]
            .copy_from_slice(&[b'a' + (next() % 26) as u8, b'z']);
    }
    s
}
