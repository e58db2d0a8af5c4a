//! Page faults and copy-on-write faults per process, and the probe gates
//! that keep the per-fault and per-lock probes cheap: a fork opens a
//! copy-on-write window (so its child's stack write is counted), a vfork-style
//! spawn never does, and every gate is closed again at the end.
use spawnprof::model::SpawnRecord;
use spawnprof_tests::{Run, record_spawner};

fn spawner(test: &str, method: &str) -> Run {
    record_spawner(
        test,
        &["--probe-cost", "--sample-hz", "0"],
        &["--method", method, "--count", "10", "--warmup", "0"],
    )
}

fn assert_gates_closed(run: &Run) {
    let cost = run
        .summary
        .probe_cost
        .as_ref()
        .expect("--probe-cost fills summary.probe_cost");
    let gates = cost.gates_at_end.as_ref().expect("gates read back");
    assert_eq!(gates.forks_in_flight, 0, "a traced fork never returned?");
    assert_eq!(gates.cow_windows, 0, "a copy-on-write window stayed open");
    assert!(
        gates.awaiting_first_run <= 1,
        "children awaiting their first run at the end: {}",
        gates.awaiting_first_run
    );
    assert!(cost.bpf_runs > 0 && cost.bpf_ns > 0, "{cost:?}");
    assert!(
        cost.programs.iter().any(|p| p.name.contains("clone")),
        "{cost:?}"
    );
}

#[test]
fn a_forked_child_counts_its_stack_copy_on_write_and_its_faults() {
    let run = spawner("faults-fork", "fork-exec");
    let kids = run.children_of_root();
    assert_eq!(kids.len(), 10);
    for r in &kids {
        let f = &r.faults;
        let pre = f.pre_exec.expect("pre-exec faults from the task counters");
        let pre_cow = f.pre_exec_cow.expect("pre-exec CoW faults");
        let total = f.total.expect("fault total at exit");
        // Returning from fork, the child writes to its stack, which it
        // shares copy-on-write with the parent: at least one CoW fault.
        assert!(pre_cow >= 1, "{f:?}");
        assert!(pre >= pre_cow, "{f:?}");
        // /bin/true after its exec maps and touches pages of its own.
        assert!(total >= pre + 10, "{f:?}");
        assert!(f.cow_total.is_some_and(|c| c >= pre_cow), "{f:?}");
    }
    // The spawner writes to its own stack after each fork returns.
    let parent_cow: Vec<_> = kids
        .iter()
        .filter_map(|r| r.faults.parent_cow_after_fork)
        .collect();
    assert!(!parent_cow.is_empty(), "no parent CoW counts");
    assert!(parent_cow.iter().any(|&c| c >= 1), "{parent_cow:?}");
    assert_gates_closed(&run);
}

#[test]
fn a_vfork_style_spawn_opens_no_copy_on_write_window() {
    let run = spawner("faults-vfork", "posix-spawn");
    let kids = run.children_of_root();
    assert_eq!(kids.len(), 10);
    for r in &kids {
        let f = &r.faults;
        // The child borrows the parent's memory: nothing is shared
        // copy-on-write, so nothing is counted as a CoW break...
        assert_eq!(f.pre_exec_cow, Some(0), "{f:?}");
        assert_eq!(f.cow_total, Some(0), "{f:?}");
        assert_eq!(f.parent_cow_after_fork, None, "{f:?}");
        // ...but its faults still are, from the kernel's counters.
        assert!(f.total.is_some_and(|t| t >= 10), "{f:?}");
    }
    assert_gates_closed(&run);
}

#[test]
fn every_process_of_a_fork_chain_breaks_copy_on_write() {
    // Each generation writes a page it shares with its parent, then forks.
    let run = spawner("faults-chain", "fork-chain");
    let chain: Vec<_> = run.children();
    assert!(chain.len() >= 10, "{} records", chain.len());
    let counted = chain
        .iter()
        .filter(|r| r.faults.cow_total.is_some_and(|c| c >= 1))
        .count();
    // The last generation may be cut off by the end of the recording.
    assert!(counted + 1 >= chain.len(), "{counted} of {}", chain.len());
    assert_gates_closed(&run);
}

#[test]
fn without_the_first_run_stage_no_child_stays_remembered() {
    // Only the first-run probes used to forget a forked child: skipping
    // them left every child in the kernel's map (and its gate open) for the
    // rest of the recording, until the map filled and wakeups went unseen.
    for skipped in [&["first_run"][..], &["first_run", "wakeup_new"][..]] {
        let mut args = vec!["--probe-cost", "--sample-hz", "0"];
        for s in skipped {
            args.extend(["--skip-stage", s]);
        }
        let run = record_spawner(
            &format!("await-{}", skipped.join("-")),
            &args,
            &["--method", "fork-exec", "--count", "10", "--warmup", "0"],
        );
        let gates = run
            .summary
            .probe_cost
            .as_ref()
            .unwrap()
            .gates_at_end
            .unwrap();
        assert_eq!(gates.awaiting_first_run, 0, "skipping {skipped:?}");
        let kids = run.children_of_root();
        assert_eq!(kids.len(), 10);
        let woken = kids.iter().filter(|r| r.ts.wakeup_new.is_some()).count();
        let expected = if skipped.contains(&"wakeup_new") {
            0
        } else {
            10
        };
        assert_eq!(woken, expected, "wakeups seen, skipping {skipped:?}");
        assert!(kids.iter().all(|r| r.ts.first_run.is_none()));
    }
}

/// `--low-overhead` leaves out the context-switch probe on this kernel
/// (no fentry or kprobe for schedule_tail), so the first run comes from
/// the scheduler's own wait count, read at the child's return from clone:
/// each child then has one, between its wake-up and that return, and no
/// child stays remembered.
#[test]
fn low_overhead_leaves_out_the_per_event_probes_and_remembers_no_child() {
    let run = record_spawner(
        "low-overhead",
        &["--probe-cost", "--low-overhead"],
        &["--method", "fork-exec", "--count", "10", "--warmup", "0"],
    );
    let s = &run.summary;
    assert_eq!(s.stack_sampling, "off (--sample-hz 999 turns it on)");
    let cost = s.probe_cost.as_ref().unwrap();
    let per_event: Vec<&str> = cost
        .programs
        .iter()
        .map(|p| p.name.as_str())
        .filter(|n| {
            n.contains("mmap_lock") || n.contains("page_fault") || n.contains("sched_switch")
        })
        .collect();
    assert!(per_event.is_empty(), "per-event probes ran: {per_event:?}");
    let first_run = s.plan.iter().find(|r| r.stage == "first_run").unwrap();
    assert!(
        first_run
            .rejected
            .iter()
            .any(|r| r.reason.contains("--low-overhead")),
        "{first_run:?}"
    );
    assert_eq!(cost.gates_at_end.unwrap().awaiting_first_run, 0);
    let kids = run.children_of_root();
    assert_eq!(kids.len(), 10);
    if first_run.mechanism == spawnprof::probe::plan::Mechanism::SchedInfo {
        first_runs_come_from_the_wait(&kids);
    } else {
        println!("SKIPPED: first runs from sched_info: {first_run:?}");
    }
    // The wake-up is still seen: its probe fires once per new task.
    assert!(kids.iter().all(|r| r.ts.wakeup_new.is_some()), "{kids:?}");
    assert!(kids.iter().all(|r| r.faults.total.is_some()));
    // No page-fault probe: the CoW counts are unknown, not zero.
    let page_faults = s.plan.iter().find(|r| r.stage == "page_faults").unwrap();
    if page_faults.mechanism == spawnprof::probe::plan::Mechanism::Unavailable {
        assert!(
            kids.iter().all(|r| r.faults.pre_exec_cow.is_none()
                && r.faults.cow_total.is_none()
                && r.faults.parent_cow_after_fork.is_none()),
            "{:?}",
            kids[0].faults
        );
    }
}

/// A child that starts on another CPU waits for that CPU to leave idle,
/// and the scheduler's wait count misses that time (its clock update is
/// skipped when the new task preempts the idle one): taken from the count,
/// such a child's first run would fall on its wake-up. Its first run is
/// its own return from the clone instead, so its sched_delay keeps the
/// wake-up of the other CPU.
#[test]
fn low_overhead_keeps_the_wait_of_a_child_started_on_another_cpu() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        println!("SKIPPED: a child on another CPU needs two CPUs");
        return;
    }
    let run = record_spawner(
        "low-overhead-other-cpu",
        &["--low-overhead"],
        &["--method", "posix-spawn", "--count", "400", "--warmup", "0"],
    );
    let first_run = run.summary.plan.iter().find(|r| r.stage == "first_run");
    if first_run.is_none_or(|r| r.mechanism != spawnprof::probe::plan::Mechanism::SchedInfo) {
        println!("SKIPPED: first runs from sched_info: {first_run:?}");
        return;
    }
    let kids = run.children_of_root();
    let elsewhere: Vec<_> = kids
        .iter()
        .filter(|r| r.child_first_cpu.is_some() && r.child_first_cpu != r.parent_cpu)
        .collect();
    if elsewhere.len() < 5 {
        println!(
            "SKIPPED: only {} of {} children started on another CPU",
            elsewhere.len(),
            kids.len()
        );
        return;
    }
    let mut delays: Vec<u64> = elsewhere
        .iter()
        .map(|r| {
            let t = &r.ts;
            let ran = t.first_run.expect("a first run");
            assert!(Some(ran) <= t.child_return, "{r:?}");
            ran - t.wakeup_new.expect("a wake-up")
        })
        .collect();
    delays.sort_unstable();
    let median = delays[delays.len() / 2];
    assert!(
        median >= 1_000,
        "children started on another CPU waited {median} ns (median of {}): the other CPU's \
         wake-up is missing",
        delays.len()
    );
}

fn first_runs_come_from_the_wait(kids: &[&SpawnRecord]) {
    for r in kids {
        let t = &r.ts;
        let (woken, ran, back) = (t.wakeup_new.unwrap(), t.first_run, t.child_return);
        assert!(r.first_run_from_run_delay, "{r:?}");
        assert!(r.incomplete.is_empty(), "{:?}", r.incomplete);
        assert!(
            ran.is_some_and(|ran| woken <= ran && Some(ran) <= back),
            "woken {woken}, first run {ran:?}, returned {back:?}"
        );
        assert!(r.child_first_cpu.is_some(), "{r:?}");
        let sched_delay = r.durations.iter().find(|(s, _)| *s == "sched_delay");
        assert!(sched_delay.is_some_and(|(_, ns)| ns.is_some()), "{r:?}");
    }
}

/// A parent that forked once and lives on keeps a copy-on-write window
/// open (a shell waiting for its job does): the page-fault probe must stay
/// to count that fork's copy-on-write faults, but the mmap-lock probes,
/// which only a fork in flight needs, still park after 32 spawns without
/// a fork.
#[test]
fn an_open_copy_on_write_window_parks_the_lock_probes_and_keeps_the_fault_one() {
    let script = "import os, time\n\
        buf = bytearray(8 << 20)\n\
        pid = os.fork()\n\
        if pid == 0:\n    \
            time.sleep(1)\n    \
            os._exit(0)\n\
        for _ in range(400):\n    \
            os.waitpid(os.posix_spawn('/bin/true', ['true'], {}), 0)\n\
        time.sleep(0.3)\n\
        buf[0:len(buf):4096] = b'x' * (len(buf) // 4096)\n\
        os.waitpid(pid, 0)\n";
    let run = spawnprof_tests::record(
        "park-window",
        &["--probe-cost", "--", "/usr/bin/python3", "-c", script],
    );
    assert!(run.output.status.success(), "{}", run.stderr());
    let counts = run.summary.fork_probes;
    assert!(counts.parked >= 1, "nothing parked: {counts:?}");
    let fork = *run.forks_of_root().first().expect("the fork's record");
    assert!(fork.duration("dup_mmap").is_some(), "{fork:#?}");
    assert!(fork.incomplete.is_empty(), "{:?}", fork.incomplete);
    let cow = fork
        .faults
        .parent_cow_after_fork
        .expect("parent's CoW count");
    assert!(cow >= 1000, "the parent wrote 2048 shared pages: {cow}");
    // Parked: the lock programs alone. The fault one saw every write.
    let cost = run.summary.probe_cost.as_ref().expect("--probe-cost");
    let fault_runs: u64 = cost
        .programs
        .iter()
        .filter(|p| p.name.contains("page_fault"))
        .map(|p| p.runs)
        .sum();
    assert!(
        fault_runs >= 2048,
        "the fault probe missed the writes: {fault_runs}"
    );
}

/// A workload that forks once every 40 spawns: the probes park after the
/// first 32 spawns without a fork, the next fork brings them back and
/// doubles the threshold to 64, which the workload never reaches again. So
/// one fork in ten loses its dup_mmap, not every one.
#[test]
fn the_parking_threshold_doubles_when_a_fork_brings_the_probes_back() {
    let script = "import os\n\
        for _ in range(10):\n    \
            for _ in range(40):\n        \
                os.waitpid(os.posix_spawn('/bin/true', ['true'], {}), 0)\n    \
            pid = os.fork()\n    \
            if pid == 0:\n        \
                os._exit(0)\n    \
            os.waitpid(pid, 0)\n";
    let run = spawnprof_tests::record("park-backoff", &["--", "/usr/bin/python3", "-c", script]);
    assert!(run.output.status.success(), "{}", run.stderr());
    let counts = run.summary.fork_probes;
    assert_eq!((counts.parked, counts.resumed), (1, 1), "{counts:?}");
    let forks = run.forks_of_root();
    assert_eq!(forks.len(), 10, "{forks:#?}");
    let timed = forks
        .iter()
        .filter(|r| r.duration("dup_mmap").is_some())
        .count();
    assert!(timed >= 9, "{timed} of 10 forks have their dup_mmap");
}

/// The mmap-lock and page-fault probes fire for every such event of the
/// machine, and only a fork needs them: after 32 spawns without a fork
/// they are parked, and the next fork brings them back. The fork that
/// finds them parked says what it misses; the forks after it have their
/// dup_mmap and their parent's copy-on-write count again.
#[test]
fn fork_only_probes_park_while_nothing_forks_and_return_at_a_fork() {
    let script = "import os, time\n\
        for _ in range(400):\n    \
            os.waitpid(os.posix_spawn('/bin/true', ['true'], {}), 0)\n\
        time.sleep(0.3)\n\
        buf = bytearray(8 << 20)\n\
        for _ in range(20):\n    \
            pid = os.fork()\n    \
            if pid == 0:\n        \
                os.execv('/bin/true', ['true'])\n    \
            buf[0:len(buf):4096] = b'x' * (len(buf) // 4096)\n    \
            os.waitpid(pid, 0)\n    \
            time.sleep(0.05)\n";
    let run = spawnprof_tests::record("park", &["--", "/usr/bin/python3", "-c", script]);
    assert!(run.output.status.success(), "{}", run.stderr());
    let counts = run.summary.fork_probes;
    assert!(counts.parked >= 1 && counts.resumed >= 1, "{counts:?}");
    let forks = run.forks_of_root();
    assert_eq!(forks.len(), 20, "{forks:#?}");
    let (missed, seen): (Vec<&SpawnRecord>, Vec<&SpawnRecord>) =
        forks.iter().copied().partition(|r| {
            r.incomplete
                .iter()
                .any(|w| w.contains("fork-only probes were parked"))
        });
    assert!(missed.len() <= 2, "{} forks unwatched", missed.len());
    for r in &missed {
        assert_eq!(r.faults.parent_cow_after_fork, None, "{r:#?}");
    }
    for r in &seen {
        assert!(r.duration("dup_mmap").is_some(), "{r:#?}");
        let cow = r.faults.parent_cow_after_fork.expect("parent's CoW count");
        assert!(cow >= 1000, "the parent wrote 2048 shared pages: {cow}");
    }
}
