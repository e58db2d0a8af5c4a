//! The assembler on synthetic kernel records: no kernel needed. What the
//! kernel side does with real spawns is covered by the real-kernel tests.
use spawnprof_common::{ExecEvent, SpawnEvent, TEXT_LEN, TextEvent, rec, spawn, syscall, ts};

use super::*;
use crate::trace::decode::{Record, zeroed};

const T0: u64 = 1_000_000;
const SIGCHLD: u64 = 17;

fn text(s: &str) -> ([u8; TEXT_LEN], u16) {
    let mut buf = [0u8; TEXT_LEN];
    buf[..s.len()].copy_from_slice(s.as_bytes());
    (buf, s.len() as u16 + 1)
}

/// A fork+exec+exit+reap of `/bin/true` by `sh`, every boundary at T0 + 100·slot.
fn fork_exec() -> SpawnEvent {
    let mut s: SpawnEvent = zeroed();
    s.kind = rec::SPAWN;
    s.spawn_id = 42;
    s.syscall = syscall::CLONE;
    s.clone_flags = SIGCHLD;
    s.exit_signal = spawnprof_common::SIGNAL_IN_FLAGS.into();
    s.parent_tgid = 100;
    s.parent_tid = 100;
    s.child_tid = 200;
    s.child_tgid = 200;
    s.parent_cpu = 1;
    s.first_cpu = 0;
    s.mark(
        spawn::PARENT_RETURNED
            | spawn::EXITED
            | spawn::REAPED
            | spawn::EXECED
            | spawn::PARENT_COW_KNOWN,
    );
    s.parent_comm[..2].copy_from_slice(b"sh");
    for slot in 0..ts::COUNT {
        s.ts[slot] = T0 + 100 * slot as u64;
    }
    (s.exec_path, s.exec_path_len) = text("/bin/true");
    s.exec_syscall = syscall::EXECVE;
    s.exec_attempts = 1;
    (s.argc, s.envc, s.env_bytes) = (1, 3, 77);
    (
        s.faults_pre_exec,
        s.cow_pre_exec,
        s.faults_total,
        s.cow_total,
    ) = (10, 2, 50, 3);
    s.parent_cow = 4000;
    s
}

fn unmark(s: &mut SpawnEvent, bits: u32) {
    for (i, b) in s.progress.iter_mut().enumerate() {
        if bits & (1 << i) != 0 {
            *b = 0;
        }
    }
}

fn failed_attempt(enter: u64, path: &str) -> ExecEvent {
    let mut e: ExecEvent = zeroed();
    e.kind = rec::EXEC;
    e.spawn_id = 42;
    e.child_tgid = 200;
    e.tid = 200;
    e.syscall = syscall::EXECVE;
    e.enter = enter;
    e.exit = enter + 10;
    e.ret = -2;
    (e.path, e.path_len) = text(path);
    e
}

fn assemble(records: Vec<Record>, coverage: FaultCoverage) -> (Vec<SpawnRecord>, AssemblyStats) {
    let mut a = Assembler::new(T0, coverage);
    let out = records.into_iter().filter_map(|r| a.feed(r)).collect();
    (out, a.stats())
}

#[test]
fn a_fork_exec_exit_reap_is_one_complete_record() {
    let (recs, stats) = assemble(
        vec![Record::Spawn(Box::new(fork_exec()))],
        FaultCoverage::ALL,
    );
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(
        (r.parent_pid, r.child_pid, r.parent_comm.as_deref()),
        (Some(100), Some(200), Some("sh"))
    );
    assert_eq!(r.method.as_deref(), Some("fork"));
    assert_eq!(r.flags.as_deref(), Some("SIGCHLD"));
    assert_eq!(r.ts.clone_enter, Some(0));
    assert_eq!(r.ts.reap, Some(100 * ts::REAP as u64));
    assert_eq!(r.ts.vfork_release, None, "a fork parent is never released");
    assert_eq!(r.exec_path.as_deref(), Some("/bin/true"));
    assert_eq!(r.exec_attempts.len(), 1);
    assert_eq!(r.exec_attempts[0].ret, Some(0));
    assert_eq!(r.exec_attempts[0].argc, Some(1));
    assert_eq!(r.faults.parent_cow_after_fork, Some(4000));
    assert_eq!(r.faults.total, Some(50));
    assert_eq!(r.exit_status, Some(0));
    assert!(r.incomplete.is_empty(), "{:?}", r.incomplete);
    assert!(r.duration("clone").is_some() && r.duration("exec").is_some());
    assert_eq!(stats.spawn_records, 1);
}

#[test]
fn path_misses_come_before_the_success_in_order() {
    let mut s = fork_exec();
    s.exec_attempts = 3;
    s.failed_attempts = 2;
    let base = T0 + 100 * ts::EXEC_FIRST_ENTER as u64;
    let records = vec![
        Record::Exec(failed_attempt(base + 5, "/usr/local/bin/true")),
        Record::Exec(failed_attempt(base, "/usr/local/sbin/true")),
        Record::Spawn(Box::new(s)),
    ];
    let (recs, stats) = assemble(records, FaultCoverage::ALL);
    let paths: Vec<&str> = recs[0]
        .exec_attempts
        .iter()
        .map(|a| a.path.as_str())
        .collect();
    assert_eq!(
        paths,
        ["/usr/local/sbin/true", "/usr/local/bin/true", "/bin/true"]
    );
    assert_eq!(recs[0].failed_exec_attempts, 2);
    assert_eq!(stats.exec_records, 2);
    assert_eq!(stats.orphan_records, 0);
}

#[test]
fn an_unreadable_path_is_flagged_not_empty_and_silent() {
    let mut e = failed_attempt(T0 + 1, "");
    e.path_len = spawnprof_common::PATH_UNREADABLE;
    let mut s = fork_exec();
    s.exec_attempts = 2;
    let (recs, _) = assemble(
        vec![Record::Exec(e), Record::Spawn(Box::new(s))],
        FaultCoverage::ALL,
    );
    let a = &recs[0].exec_attempts[0];
    assert!(a.path.is_empty() && a.path_unreadable);
    assert!(!recs[0].exec_attempts[1].path_unreadable);
}

#[test]
fn a_vfork_parent_is_released_at_the_exec_or_the_exit() {
    let mut s = fork_exec();
    s.clone_flags = cf::CLONE_VM | cf::CLONE_VFORK | SIGCHLD;
    unmark(&mut s, spawn::PARENT_COW_KNOWN);
    let (recs, _) = assemble(vec![Record::Spawn(Box::new(s))], FaultCoverage::ALL);
    assert_eq!(recs[0].method.as_deref(), Some("vfork"));
    assert_eq!(recs[0].ts.vfork_release, recs[0].ts.exec_prepare);
    let mut never_execs = s;
    unmark(&mut never_execs, spawn::EXECED);
    never_execs.ts[ts::EXEC_PREPARE] = 0;
    let (recs, _) = assemble(
        vec![Record::Spawn(Box::new(never_execs))],
        FaultCoverage::ALL,
    );
    assert_eq!(recs[0].ts.vfork_release, recs[0].ts.exit);
    assert!(recs[0].exec_attempts.is_empty());
}

#[test]
fn fault_figures_no_probe_counted_are_null_not_zero() {
    let s = fork_exec();
    let none = FaultCoverage {
        cow: false,
        totals: false,
    };
    let (recs, _) = assemble(vec![Record::Spawn(Box::new(s))], none);
    assert_eq!(recs[0].faults, Faults::default());
    let mut unknown = s;
    unknown.faults_total = FAULTS_UNKNOWN;
    let (recs, _) = assemble(vec![Record::Spawn(Box::new(unknown))], FaultCoverage::ALL);
    assert_eq!(recs[0].faults.total, None);
    assert_eq!(recs[0].faults.cow_total, Some(3));
}

#[test]
fn a_failed_clone_says_its_errno() {
    let mut s = fork_exec();
    s.progress = [0; spawn::COUNT];
    s.mark(spawn::CLONE_FAILED | spawn::PARENT_RETURNED);
    s.clone_ret = -11;
    let (recs, stats) = assemble(vec![Record::Spawn(Box::new(s))], FaultCoverage::ALL);
    assert_eq!(recs[0].incomplete, ["clone failed: errno 11"]);
    assert_eq!(stats.failed_clones, 1);
}

#[test]
fn a_spawn_collected_at_the_end_says_what_had_not_happened() {
    let mut s = fork_exec();
    s.progress = [0; spawn::COUNT];
    s.mark(spawn::PARENT_RETURNED | spawn::EXITED | spawn::EXECED | spawn::RECORDING_ENDED);
    let (recs, stats) = assemble(vec![Record::Spawn(Box::new(s))], FaultCoverage::ALL);
    assert_eq!(
        recs[0].incomplete,
        ["not reaped by its parent during the recording"]
    );
    assert_eq!(stats.collected_at_end, 1);
    let mut thread = fork_exec();
    thread.progress = [0; spawn::COUNT];
    thread.mark(spawn::THREAD | spawn::RECORDING_ENDED | spawn::AWAITING_FIRST_RUN);
    thread.exec_attempts = 0;
    let (recs, _) = assemble(vec![Record::Spawn(Box::new(thread))], FaultCoverage::ALL);
    assert_eq!(
        recs[0].incomplete,
        [
            "still running when the recording ended",
            "parent's clone return not seen",
            "first run not seen"
        ]
    );
}

#[test]
fn a_first_run_derived_from_the_wait_is_whole_and_says_so() {
    let mut s = fork_exec();
    s.mark(spawn::FIRST_RUN_FROM_RUN_DELAY);
    let (recs, _) = assemble(vec![Record::Spawn(Box::new(s))], FaultCoverage::ALL);
    assert!(recs[0].first_run_from_run_delay);
    assert!(recs[0].incomplete.is_empty(), "{:?}", recs[0].incomplete);
    let (recs, _) = assemble(
        vec![Record::Spawn(Box::new(fork_exec()))],
        FaultCoverage::ALL,
    );
    assert!(!recs[0].first_run_from_run_delay);
}

#[test]
fn captures_and_missing_attempts_join_their_spawn() {
    let mut t: TextEvent = zeroed();
    t.kind = rec::CAPTURE_ARGS;
    t.spawn_id = 42;
    t.child_tgid = 200;
    t.text[..9].copy_from_slice(b"true\0-x\0\0");
    t.len = 9;
    let mut s = fork_exec();
    s.exec_attempts = 3;
    let orphan = failed_attempt(T0, "/x");
    let orphan = ExecEvent {
        spawn_id: 7,
        ..orphan
    };
    let (recs, stats) = assemble(
        vec![
            Record::Text(t),
            Record::Exec(orphan),
            Record::Spawn(Box::new(s)),
        ],
        FaultCoverage::ALL,
    );
    assert_eq!(
        recs[0].args.as_deref(),
        Some(&["true".into(), "-x".into()][..])
    );
    assert_eq!(
        recs[0].incomplete,
        ["2 exec attempt record(s) lost (ring buffer full)"]
    );
    assert_eq!(
        stats.orphan_records, 1,
        "the attempt of spawn 7, never sent"
    );
}

#[test]
fn a_spawn_sent_twice_counts_once() {
    let s = fork_exec();
    let (recs, stats) = assemble(
        vec![Record::Spawn(Box::new(s)), Record::Spawn(Box::new(s))],
        FaultCoverage::ALL,
    );
    assert_eq!(recs.len(), 1);
    assert_eq!(stats.duplicate_spawns, 1);
}
