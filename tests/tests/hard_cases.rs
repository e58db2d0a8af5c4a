//! The hard cases of issue 17: one real-kernel test per behaviour that is
//! wrong today. Each drives a real workload (a python script or C program in
//! `tests/workloads/`, the C ones compiled here with gcc, or the reference
//! spawner) and asserts what a correct recording must say. They were
//! written failing, before spawns were assembled in the kernel; they pass
//! now and run with the rest (`cargo xtask test`). The last one checks the
//! lock wait inside dup_mmap.
use std::{
    collections::{BTreeMap, HashSet},
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use spawnprof::{model::SpawnRecord, probe::plan::Mechanism, recording::load_recording};
use spawnprof_tests::{
    Run, lock_wait_within_dup_mmap, out_dir, record, record_spawner, records_json, require_root,
    spawnprof_bin, summary_json,
};

/// A file of `tests/workloads/`.
fn workload(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("workloads")
        .join(name)
}

fn workload_str(name: &str) -> String {
    workload(name).to_str().expect("utf-8 path").to_string()
}

/// The system's python: a version manager's shim (pyenv) would add its own
/// shells and helpers to every recording.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Compiles `tests/workloads/<source>` with gcc into a fresh directory of
/// the test's own and returns the executable.
fn compile(test: &str, source: &str, extra: &[&str]) -> PathBuf {
    let dir = out_dir(&format!("{test}-bin"));
    std::fs::create_dir_all(&dir).expect("create the build directory");
    let exe = dir.join(source.trim_end_matches(".c"));
    let out = Command::new("gcc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&exe)
        .arg(workload(source))
        .args(extra)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc {source}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// `KEY=N` from the traced command's stdout (spawnprof passes it through).
fn printed(run: &Run, key: &str) -> u32 {
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key}=N in the command's output: {stdout}"))
}

fn assert_ok(run: &Run) {
    assert!(
        run.output.status.success(),
        "spawnprof record failed ({}): {}",
        run.output.status,
        run.stderr()
    );
}

fn stage_attached(run: &Run, stage: &str) -> bool {
    run.summary
        .plan
        .iter()
        .any(|r| r.stage == stage && r.mechanism != Mechanism::Unavailable)
}

/// Starts `spawnprof record -o DIR ARGS...` and returns once it says it is
/// tracing, with that line; the rest of its stderr is drained in a thread.
fn start_recording(dir: &Path, args: &[&str]) -> (Child, String) {
    require_root();
    let mut child = Command::new(spawnprof_bin())
        .arg("record")
        .arg("-o")
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start spawnprof");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let mut seen = Vec::new();
    let tracing = loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("spawnprof: tracing") => break l,
            Some(Ok(l)) => seen.push(l),
            other => panic!("stderr ended ({other:?}) before `spawnprof: tracing`: {seen:#?}"),
        }
    };
    // Keep draining so spawnprof never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, tracing)
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pid {} did not finish within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is a live process named `comm` (not gone, not a zombie).
fn alive(pid: u32, comm: &str) -> bool {
    let named =
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm);
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the `(comm)` field.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    named && !matches!(state, None | Some('Z' | 'X'))
}

/// Polls up to `limit` for `pid` to be gone; true if it is.
fn gone_within(pid: u32, comm: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while alive(pid, comm) {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Ends a process the test's command left behind (by its pid only).
fn kill_leftover(pid: u32, comm: &str) {
    if alive(pid, comm) {
        // SAFETY: kill has no memory preconditions; the pid is the traced
        // command this test started, checked by name just above.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

// ---------------------------------------------------------------- bug 1

/// A thread is one spawn: its record must not be finished at its first run
/// and opened again by its own return from clone.
#[test]
fn fifty_python_threads_are_fifty_thread_records() {
    const THREADS: usize = 50;
    let script = "import threading\n\
                  ts = [threading.Thread(target=lambda: None) for _ in range(50)]\n\
                  for t in ts: t.start()\n\
                  for t in ts: t.join()\n";
    let run = record(
        "fifty-threads",
        &["--sample-hz", "0", "--", python(), "-c", script],
    );
    assert_ok(&run);
    let threads: Vec<&SpawnRecord> = run.records.iter().filter(|r| r.thread).collect();
    let distinct: HashSet<_> = threads.iter().map(|r| r.child_pid).collect();
    let said_lost = threads
        .iter()
        .filter(|r| r.incomplete.iter().any(|n| n.contains("lost")))
        .count();
    let counts = &run.summary.counts;
    let what = format!(
        "{} thread records for {} distinct threads, {said_lost} of them saying marks were \
         lost while {} spawns were lost; summary counts {} spawns, {} threads",
        threads.len(),
        distinct.len(),
        run.summary.lost_spawns,
        counts.spawns,
        counts.threads
    );
    assert_eq!(distinct.len(), THREADS, "{what}");
    assert_eq!(threads.len(), THREADS, "one record per thread: {what}");
    assert_eq!(said_lost, 0, "{what}");
    assert_eq!(counts.threads, THREADS as u64, "{what}");
    assert_eq!(counts.spawns, 0, "python started no process: {what}");
}

// ---------------------------------------------------------------- bug 2

/// An execve from a thread that is not the leader: the kernel's de_thread
/// gives the exec'ing thread the process's pid, and the exec must still be
/// recorded on the process with its attempt and its stages.
#[test]
fn an_exec_from_a_non_leader_thread_keeps_its_attempt_and_stages() {
    const CHILDREN: usize = 8;
    let run = record(
        "thread-exec",
        &[
            "--sample-hz",
            "0",
            "--",
            python(),
            &workload_str("thread_exec.py"),
            &CHILDREN.to_string(),
        ],
    );
    assert_ok(&run);
    let script = run.root().child_pid;
    let kids: Vec<&SpawnRecord> = run
        .children()
        .into_iter()
        .filter(|r| r.parent_pid == script)
        .collect();
    assert_eq!(kids.len(), CHILDREN, "one record per forked child");
    let with_load = stage_attached(&run, "exec_prepare");
    let mut wrong = Vec::new();
    for r in &kids {
        let attempts_ok = matches!(
            r.exec_attempts.as_slice(),
            [a] if a.path == "/bin/echo" && a.ret == Some(0) && a.exit.is_some()
        );
        let ok = attempts_ok
            && r.exec_path.as_deref() == Some("/bin/echo")
            && r.ts.exec_enter.is_some()
            && r.ts.exec_done.is_some()
            && r.duration("exec").is_some()
            && (!with_load || r.duration("exec_load").is_some());
        if !ok {
            wrong.push(format!(
                "child {:?}: exec_path {:?}, exec_attempts {:?}, ts.exec_enter {:?}, \
                 ts.exec_prepare {:?}, ts.exec_done {:?}, exec {:?}, exec_load {:?}, \
                 incomplete {:?}",
                r.child_pid,
                r.exec_path,
                r.exec_attempts,
                r.ts.exec_enter,
                r.ts.exec_prepare,
                r.ts.exec_done,
                r.duration("exec"),
                r.duration("exec_load"),
                r.incomplete
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {CHILDREN} children that exec'd /bin/echo from a second thread lost the exec:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------- bug 3

/// `-p PID --follow` records the spawns of the target's descendants, also
/// of those that existed before spawnprof attached (a pre-forking server's
/// workers).
#[test]
fn follow_records_the_spawns_of_workers_forked_before_the_attach() {
    const WORKERS: usize = 8;
    const EACH: usize = 10;
    let dir = out_dir("follow-prefork");
    let flag = dir.with_extension("flag");
    let _ = std::fs::remove_file(&flag);
    let mut server = Command::new(python())
        .arg(workload("prefork_server.py"))
        .arg(&flag)
        .args([WORKERS.to_string(), EACH.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the server prints its workers");
    let workers: HashSet<u32> = line
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect();
    assert_eq!(workers.len(), WORKERS, "workers: {line}");
    let server_pid = server.id().to_string();
    let (mut rec, _) = start_recording(&dir, &["--sample-hz", "0", "-p", &server_pid, "--follow"]);
    // The workers start spawning only now, with every probe attached.
    std::fs::write(&flag, b"go").expect("write the flag");
    let served = wait_with_timeout(&mut server, Duration::from_secs(60));
    let status = wait_with_timeout(&mut rec, Duration::from_secs(60));
    let _ = std::fs::remove_file(&flag);
    assert!(served.success(), "the server: {served}");
    assert!(status.success(), "spawnprof: {status}");
    let (_, records) = load_recording(&dir).expect("the recording");
    let mut per_worker: BTreeMap<u32, usize> = workers.iter().map(|&w| (w, 0)).collect();
    for r in &records {
        if r.exec_path.as_deref() == Some("/bin/true")
            && let Some(n) = r.parent_pid.and_then(|p| per_worker.get_mut(&p))
        {
            *n += 1;
        }
    }
    let total: usize = per_worker.values().sum();
    assert_eq!(
        total,
        WORKERS * EACH,
        "grandchildren recorded per worker (worker pid → /bin/true records): {per_worker:?}; \
         {} records in all",
        records.len()
    );
}

// ---------------------------------------------------------------- bug 4

/// `record -- unshare --pid --fork python3 pid_namespace.py CASE`: the
/// script runs as the init of a new PID namespace.
fn in_a_pid_namespace(test: &str, case: &str) -> Run {
    let run = record(
        test,
        &[
            "--sample-hz",
            "0",
            "--",
            "unshare",
            "--pid",
            "--fork",
            python(),
            &workload_str("pid_namespace.py"),
            case,
        ],
    );
    assert_ok(&run);
    run
}

/// The one record of the `sleep` the case started, or why it is not there.
fn the_sleep<'a>(run: &'a Run, case: &str) -> Result<&'a SpawnRecord, String> {
    let sleeps: Vec<&SpawnRecord> = run
        .children()
        .into_iter()
        .filter(|r| {
            r.exec_path
                .as_deref()
                .is_some_and(|p| p.ends_with("/sleep"))
        })
        .collect();
    match sleeps.as_slice() {
        [one] => Ok(one),
        _ => Err(format!(
            "{case}: {} records of the sleep: {sleeps:?}",
            sleeps.len()
        )),
    }
}

/// What is wrong with the reap of `r`, if anything.
fn reap_problem(case: &str, r: &SpawnRecord) -> Option<String> {
    let not_reaped = r.incomplete.iter().any(|n| n.contains("not reaped"));
    (r.ts.exit.is_none() || r.ts.reap.is_none() || not_reaped).then(|| {
        format!(
            "{case}: child {:?} ts.exit {:?}, ts.reap {:?}, exit status {:?} signal {:?}, \
             incomplete {:?}",
            r.child_pid, r.ts.exit, r.ts.reap, r.exit_status, r.exit_signal, r.incomplete
        )
    })
}

/// In a PID namespace, a waitpid(WUNTRACED) reporting a stop must not use
/// up the child's mapping: the reap that follows is still recorded.
#[test]
fn a_child_stopped_then_killed_in_a_pid_namespace_is_still_reaped() {
    let run = in_a_pid_namespace("pidns-stop", "stop");
    let sleep = the_sleep(&run, "stop").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sleep.exit_signal, Some(libc::SIGKILL), "{sleep:?}");
    if let Some(problem) = reap_problem("stop", sleep) {
        panic!("{problem}; assembly: {:?}", run.summary.assembly);
    }
}

/// An orphan in a PID namespace is reaped by a subreaper
/// (PR_SET_CHILD_SUBREAPER) or by the namespace's init, not by its parent:
/// that reap is still its reap.
#[test]
fn orphans_in_a_pid_namespace_are_reaped_by_a_subreaper_or_by_init() {
    let mut problems = Vec::new();
    for case in ["subreaper", "init"] {
        let run = in_a_pid_namespace(&format!("pidns-{case}"), case);
        match the_sleep(&run, case) {
            Ok(sleep) => {
                assert_eq!(sleep.exit_status, Some(0), "{case}: {sleep:?}");
                problems.extend(reap_problem(case, sleep));
            }
            Err(e) => problems.push(e),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------- bug 5

/// The parent's copy-on-write faults after a fork are counted on that
/// fork's record even when the parent starts a thread, or posix_spawns,
/// between the fork and its writes. `plain` (nothing in between) is the
/// control.
#[test]
fn the_parents_cow_faults_survive_a_thread_or_a_posix_spawn_after_the_fork() {
    let exe = compile("cow-after-fork", "cow_after_fork.c", &["-pthread"]);
    let exe = exe.to_str().expect("utf-8 path");
    let mut seen = Vec::new();
    let mut short = Vec::new();
    for mode in ["plain", "thread", "spawn"] {
        let run = record(
            &format!("cow-{mode}"),
            &["--sample-hz", "0", "--", exe, mode],
        );
        assert_ok(&run);
        if !stage_attached(&run, "page_faults") {
            println!("SKIPPED: no page-fault probe on this kernel");
            return;
        }
        let child = printed(&run, "fork_child");
        let pages = printed(&run, "pages") as u64;
        let fork = run
            .children()
            .into_iter()
            .find(|r| r.child_pid == Some(child))
            .unwrap_or_else(|| panic!("{mode}: no record of the forked child {child}"));
        let cow = fork.faults.parent_cow_after_fork;
        let line = format!("{mode}: parent_cow_after_fork {cow:?} for {pages} pages written");
        if cow.is_none_or(|c| c * 10 < pages * 8) {
            short.push(line.clone());
        }
        seen.push(line);
    }
    assert!(
        short.is_empty(),
        "the parent's CoW faults fell short of 80% of the pages it wrote:\n{}",
        seen.join("\n")
    );
}

// ---------------------------------------------------------------- bug 6

/// With a ring buffer far too small for a burst, whole spawns go missing;
/// the recording must say how many: the records plus `lost_spawns` are
/// every process the workload spawned.
#[test]
fn records_plus_lost_spawns_are_every_spawn_of_a_burst_into_a_64k_ring() {
    const COUNT: usize = 20_000;
    // The spawner runs its minimal child once to check that it can
    // (workload/minimal.rs), then COUNT times.
    const SPAWNED: usize = COUNT + 1;
    let count = COUNT.to_string();
    let run = record_spawner(
        "lost-spawns",
        &["--sample-hz", "0", "--ring-buffer", "64K"],
        &[
            "--method",
            "posix-spawn",
            "--minimal-child",
            "--threads",
            "2",
            "--mode",
            "batched",
            "--count",
            &count,
            "--warmup",
            "0",
        ],
    );
    let records = run.children().len();
    let summary = summary_json(&run.dir);
    let lost_spawns = &summary["lost_spawns"];
    let what = format!(
        "{records} process records of {SPAWNED} spawned, lost_spawns {lost_spawns}, \
         lost {:?}, assembly {:?}",
        run.summary.lost, run.summary.assembly
    );
    assert!(
        !run.summary.lost.is_empty(),
        "the burst must overflow a 64 KiB ring for this test to mean anything: {what}"
    );
    let lost_spawns = lost_spawns
        .as_u64()
        .unwrap_or_else(|| panic!("summary.json has no integer lost_spawns: {what}"));
    assert_eq!(records as u64 + lost_spawns, SPAWNED as u64, "{what}");
    // The spawner reaps every child: none may have lost its reap.
    let unreaped = run
        .children()
        .iter()
        .filter(|r| r.ts.reap.is_none())
        .count();
    assert_eq!(unreaped, 0, "reaps missing: {what}");
}

// ---------------------------------------------------------------- bug 7

/// `duration_ns` is the time traced: a `-p PID --duration 4s` recording
/// lasted 4 s, not 4 s plus the detach and the writing of the files.
#[test]
fn a_four_second_pid_recording_says_it_lasted_four_seconds() {
    let mut target = Command::new("sh")
        .args(["-c", "while :; do /bin/true; sleep 0.01; done"])
        .spawn()
        .expect("start the target");
    let dir = out_dir("pid-duration");
    require_root();
    // Stack sampling stays on (the default): symbolizing is part of the
    // after-the-fact work that must not count.
    let out = Command::new(spawnprof_bin())
        .arg("record")
        .arg("-o")
        .arg(&dir)
        .args(["-p", &target.id().to_string(), "--duration", "4s"])
        .output()
        .expect("run spawnprof");
    let _ = target.kill();
    let _ = target.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (summary, records) = load_recording(&dir).expect("the recording");
    assert!(!records.is_empty(), "the target spawned while traced");
    let d = summary.duration_ns;
    assert!(
        (3_800_000_000..=4_200_000_000).contains(&d),
        "duration_ns {d} ({:.2} s) for --duration 4s (4 s ± 5%)",
        d as f64 / 1e9
    );
}

/// Compiles the C workload `source` and records it without stack sampling;
/// the recording must succeed.
fn record_program(name: &str, source: &str) -> Run {
    let exe = compile(name, source, &[]);
    let run = record(
        name,
        &["--sample-hz", "0", "--", exe.to_str().expect("utf-8 path")],
    );
    assert_ok(&run);
    run
}

// ---------------------------------------------------------------- bug 8

/// A fork child execs paths that are string literals in pages it has not
/// touched (the probe cannot read them at syscall entry): each attempt has
/// its real path, or says the path was unreadable, never a bare `""` that
/// looks like an AT_EMPTY_PATH exec.
#[test]
fn an_exec_path_in_an_untouched_page_is_recorded_or_flagged_unreadable() {
    let run = record_program("untouched-path", "exec_untouched_path.c");
    let child = printed(&run, "child");
    let raw = records_json(&run.dir);
    let record = raw
        .iter()
        .find(|r| r["child_pid"] == child && r["root"] == false)
        .unwrap_or_else(|| panic!("no record of the child {child}"));
    let attempts = record["exec_attempts"].as_array().expect("exec_attempts");
    let rets: Vec<_> = attempts.iter().map(|a| a["ret"].as_i64()).collect();
    assert_eq!(
        rets,
        [Some(-libc::ENOENT as i64), Some(0)],
        "a failed then a successful attempt: {attempts:#?}"
    );
    let bare: Vec<_> = attempts
        .iter()
        .filter(|a| a["path"].as_str().is_none_or(str::is_empty) && a["path_unreadable"] != true)
        .collect();
    assert!(
        bare.is_empty(),
        "exec attempts with an empty path and no path_unreadable flag: {bare:#?}"
    );
}

// ---------------------------------------------------------------- bug 9

/// Under a storm of spawns from two CPUs, every child has its first run or
/// a note that names it, and no child stays remembered in the kernel (the
/// first-run gate closes).
#[test]
fn every_child_of_a_spawn_storm_has_its_first_run_and_the_gate_closes() {
    let run = record_spawner(
        "first-run-storm",
        &["--sample-hz", "0", "--probe-cost"],
        &[
            "--method",
            "fork-exec",
            "--minimal-child",
            "--threads",
            "2",
            "--mode",
            "batched",
            "--count",
            "30000",
            "--warmup",
            "0",
        ],
    );
    if !stage_attached(&run, "first_run") {
        println!("SKIPPED: no first_run probe on this kernel");
        return;
    }
    let kids = run.children();
    let unexplained: Vec<&SpawnRecord> = kids
        .iter()
        .copied()
        .filter(|r| r.ts.first_run.is_none())
        .filter(|r| {
            !r.incomplete
                .iter()
                .any(|n| n.contains("first run") || n.contains("first_run"))
        })
        .collect();
    let gates = run
        .summary
        .probe_cost
        .as_ref()
        .and_then(|c| c.gates_at_end)
        .expect("--probe-cost reads the gates back");
    let sample: Vec<_> = unexplained
        .iter()
        .take(5)
        .map(|r| (r.child_pid, &r.incomplete))
        .collect();
    let what = format!(
        "{} of {} children have no first run and no note naming it (e.g. {sample:?}); \
         gates at the end: {gates:?}; {} spawns lost",
        unexplained.len(),
        kids.len(),
        run.summary.lost_spawns
    );
    assert!(unexplained.is_empty(), "{what}");
    assert_eq!(gates.awaiting_first_run, 0, "{what}");
}

// ---------------------------------------------------------------- bug 10

/// `record --duration 1s -- sleep 7` does what `timeout` does: the command
/// is ended with SIGTERM, spawnprof says so and exits 124.
#[test]
fn a_duration_ends_the_command_as_timeout_does() {
    require_root();
    let dir = out_dir("duration-ends-command");
    let stderr_path = dir.with_extension("stderr");
    std::fs::create_dir_all(dir.parent().expect("under itest-out")).unwrap();
    // The command's stdout and stderr are spawnprof's: files, so nothing
    // here waits for a pipe the command still holds.
    let mut rec = Command::new(spawnprof_bin())
        .arg("record")
        .arg("-o")
        .arg(&dir)
        .args([
            "--sample-hz",
            "0",
            "--duration",
            "1s",
            "--",
            "sleep",
            "7.25",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start spawnprof");
    let status = wait_with_timeout(&mut rec, Duration::from_secs(30));
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let (_, records) = load_recording(&dir).expect("the recording");
    let sleep = records
        .iter()
        .find(|r| r.root)
        .and_then(|r| r.child_pid)
        .expect("the command's record has its pid");
    let ended = gone_within(sleep, "sleep", Duration::from_secs(1));
    kill_leftover(sleep, "sleep");
    assert!(
        ended,
        "`sleep 7.25` (pid {sleep}) outlived spawnprof, which exited {status}; stderr:\n{stderr}"
    );
    assert_eq!(
        status.code(),
        Some(124),
        "as timeout exits; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("SIGTERM"),
        "spawnprof says it sent SIGTERM; stderr:\n{stderr}"
    );
}

/// A SIGINT sent to spawnprof alone (not to the terminal's process group)
/// ends the traced command too.
#[test]
fn a_sigint_to_spawnprof_alone_ends_the_command() {
    let dir = out_dir("sigint-ends-command");
    let (mut rec, tracing) = start_recording(&dir, &["--sample-hz", "0", "--", "sleep", "30.25"]);
    // `spawnprof: tracing sleep 30.25 (pid N); Ctrl-C to stop`
    let sleep: u32 = tracing
        .split_once("(pid ")
        .and_then(|(_, rest)| rest.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {tracing:?}"));
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
    let status = wait_with_timeout(&mut rec, Duration::from_secs(30));
    let ended = gone_within(sleep, "sleep", Duration::from_secs(1));
    kill_leftover(sleep, "sleep");
    assert!(
        ended,
        "`sleep 30.25` (pid {sleep}) outlived spawnprof, which exited {status}"
    );
    assert_eq!(status.code(), Some(130), "an interrupted recording");
}

// ---------------------------------------------------------------- bug 11

/// Without `--capture-args` only the program path of the traced command is
/// kept: its arguments appear in no file of the recording.
#[test]
fn the_commands_arguments_stay_out_of_every_file_without_capture_args() {
    const SECRET: &str = "hunter2";
    let password = format!("--password={SECRET}");
    // Stack sampling on (the default), so every report is written.
    let run = record("no-args", &["--", "sh", "-c", "true", &password]);
    assert_ok(&run);
    assert!(
        run.summary
            .captured
            .iter()
            .any(|c| c.contains("no argument strings")),
        "{:?}",
        run.summary.captured
    );
    let mut files = Vec::new();
    let mut dirs = vec![run.dir.clone()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("read the recording") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 5, "the recording's files: {files:?}");
    let leaking: Vec<String> = files
        .iter()
        .filter(|f| {
            std::fs::read(f)
                .is_ok_and(|bytes| bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()))
        })
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        leaking.is_empty(),
        "`{SECRET}` from the command line is in {leaking:?} without --capture-args"
    );
}

// ---------------------------------------------------------------- bug 12

/// Every clone flag with a name is printed by name: the namespace flags,
/// CLONE_PIDFD, CLONE_SYSVSEM and CLONE_INTO_CGROUP, and CLONE_NEWTIME
/// (clone3 only, where its bit would otherwise be read as part of the exit
/// signal).
#[test]
fn clone_flags_name_namespaces_pidfd_sysvsem_and_into_cgroup() {
    let run = record_program("clone-flags", "clone_flags.c");
    let cases: [(&str, &[&str]); 3] = [
        (
            "namespaces",
            &[
                "CLONE_NEWNS",
                "CLONE_NEWUTS",
                "CLONE_NEWIPC",
                "CLONE_NEWNET",
                "CLONE_NEWCGROUP",
                "CLONE_NEWUSER",
                "SIGCHLD",
            ],
        ),
        (
            "pidfd_sysvsem_cgroup",
            &[
                "CLONE_PIDFD",
                "CLONE_SYSVSEM",
                "CLONE_INTO_CGROUP",
                "SIGCHLD",
            ],
        ),
        ("newtime", &["CLONE_NEWTIME", "SIGCHLD"]),
    ];
    let mut wrong = Vec::new();
    for (case, names) in cases {
        let pid = printed(&run, case);
        let r = run
            .children()
            .into_iter()
            .find(|r| r.child_pid == Some(pid))
            .unwrap_or_else(|| panic!("{case}: no record of child {pid}"));
        let flags = r.flags.as_deref().unwrap_or("");
        let parts: HashSet<&str> = flags.split('|').collect();
        let missing: Vec<_> = names.iter().filter(|n| !parts.contains(*n)).collect();
        if !missing.is_empty() || flags.contains("0x") || flags.contains("sig") {
            wrong.push(format!(
                "{case}: flags {flags:?} (clone_flags {:#x?}, {:?}), not named: {missing:?}",
                r.clone_flags, r.syscall
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ------------------------------------------------ dup_mmap's lock wait

/// A fork whose parent's mmap lock is held by another of its threads (here
/// an mprotect of 256 MiB, rewriting every page table entry) waits for it
/// inside dup_mmap: the wait is recorded apart from the copy, within it,
/// and is far longer than an uncontended fork's (about 0.1 µs).
#[test]
fn a_fork_waiting_for_its_parents_mmap_lock_has_that_wait_within_dup_mmap() {
    let exe = compile("fork-under-lock", "fork_under_lock.c", &["-pthread"]);
    let run = record(
        "fork-under-lock",
        &["--sample-hz", "0", "--", exe.to_str().expect("utf-8 path")],
    );
    assert_ok(&run);
    assert_eq!(printed(&run, "forks"), 20);
    let forks = run.forks_of_root();
    assert_eq!(forks.len(), 20, "every fork has its record");
    let mut long_waits = 0;
    for r in &forks {
        let wait = lock_wait_within_dup_mmap(r)
            .unwrap_or_else(|| panic!("a fork without its dup_mmap: {r:#?}"));
        if wait >= 100_000 {
            long_waits += 1;
        }
    }
    assert!(
        long_waits >= 5,
        "only {long_waits} of 20 forks waited 100 µs or more for the lock an mprotect held"
    );
}
