//! `spawnprof record -p PID`: attaching to a running process, --follow,
//! --duration, the target exiting, and Ctrl-C.
use std::{
    io::{BufRead as _, BufReader, Lines},
    path::Path,
    process::{Child, ChildStderr, Command, Stdio},
    time::{Duration, Instant},
};

use spawnprof::recording::load_recording;
use spawnprof_tests::{out_dir, require_root, spawnprof_bin};

/// A shell that waits for `flag` to exist, then runs `script`.
fn gated_target(flag: &Path, script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while [ ! -e {} ]; do sleep 0.02; done; {script}",
            flag.display()
        ))
        .spawn()
        .expect("start target")
}

/// Starts `spawnprof record -o DIR ARGS...` with its stderr piped.
fn spawn_recording(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    require_root();
    Command::new(spawnprof_bin())
        .arg("record")
        .arg("-o")
        .arg(dir)
        .args(args)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start spawnprof")
}

/// spawnprof's stderr, read line by line; the lines read so far are kept
/// for assertions and failure messages.
struct Stderr {
    lines: Lines<BufReader<ChildStderr>>,
    seen: Vec<String>,
}

impl Stderr {
    fn of(child: &mut Child) -> Self {
        Self {
            lines: BufReader::new(child.stderr.take().expect("piped")).lines(),
            seen: Vec::new(),
        }
    }

    /// Reads up to the first line that contains any of `what`.
    fn wait_for(&mut self, what: &[&str]) {
        loop {
            match self.lines.next() {
                Some(Ok(l)) => {
                    let hit = what.iter().any(|w| l.contains(w));
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                other => panic!(
                    "stderr ended ({other:?}) before any of {what:?}: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Everything, once spawnprof (and whatever holds its stderr) is gone.
    fn all(mut self) -> Vec<String> {
        self.seen.extend(self.lines.map_while(Result::ok));
        self.seen
    }
}

/// Starts `spawnprof record` and waits until it says it is tracing.
fn start_recording(dir: &Path, args: &[&str]) -> Child {
    let mut child = spawn_recording(dir, args, &[]);
    let mut stderr = Stderr::of(&mut child);
    stderr.wait_for(&["spawnprof: tracing"]);
    // Keep draining stderr so spawnprof never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines {});
    child
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(start.elapsed() < limit, "did not finish within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn attaching_to_a_pid_records_its_spawns_and_ends_when_it_exits() {
    let dir = out_dir("pid");
    let flag = dir.with_extension("flag");
    let _ = std::fs::remove_file(&flag);
    let mut target = gated_target(
        &flag,
        "for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done; exit 0",
    );
    let pid = target.id().to_string();
    let mut rec = start_recording(&dir, &["-p", &pid]);
    std::fs::write(&flag, b"go").unwrap();
    target.wait().unwrap();
    let status = wait_with_timeout(&mut rec, Duration::from_secs(20));
    assert!(status.success());
    let (summary, records) = load_recording(&dir).unwrap();
    let target_pid: u32 = pid.parse().unwrap();
    let trues: Vec<_> = records
        .iter()
        .filter(|r| r.exec_path.as_deref() == Some("/bin/true"))
        .collect();
    assert_eq!(trues.len(), 10);
    assert!(trues.iter().all(|r| r.parent_pid == Some(target_pid)));
    assert!(!summary.interrupted);
    let _ = std::fs::remove_file(&flag);
}

#[test]
fn follow_decides_whether_grandchildren_spawns_are_recorded() {
    for follow in [false, true] {
        let dir = out_dir("follow");
        let flag = dir.with_extension("flag");
        let _ = std::fs::remove_file(&flag);
        let mut target = gated_target(&flag, "sh -c '/bin/true; /bin/true; exit 0'; exit 0");
        let pid = target.id().to_string();
        let mut args = vec!["-p", pid.as_str()];
        if follow {
            args.push("--follow");
        }
        let mut rec = start_recording(&dir, &args);
        std::fs::write(&flag, b"go").unwrap();
        target.wait().unwrap();
        assert!(wait_with_timeout(&mut rec, Duration::from_secs(20)).success());
        let (_, records) = load_recording(&dir).unwrap();
        let grandchildren = records
            .iter()
            .filter(|r| r.exec_path.as_deref() == Some("/bin/true"))
            .count();
        // The target's own `sleep 0.02` polls of the gate may be recorded
        // too, if tracing began before the flag appeared: count the inner sh.
        let children = records
            .iter()
            .filter(|r| r.parent_pid == Some(pid.parse().unwrap()))
            .filter(|r| r.exec_path.as_deref().is_some_and(|p| p.ends_with("/sh")))
            .count();
        assert_eq!(
            children, 1,
            "the inner sh is always recorded (follow={follow})"
        );
        assert_eq!(grandchildren, if follow { 2 } else { 0 }, "follow={follow}");
        let _ = std::fs::remove_file(&flag);
    }
}

#[test]
fn duration_ends_the_recording_and_keeps_it() {
    let mut target = Command::new("sleep").arg("30").spawn().unwrap();
    let dir = out_dir("duration");
    let start = Instant::now();
    let mut rec = start_recording(&dir, &["-p", &target.id().to_string(), "--duration", "1s"]);
    let status = wait_with_timeout(&mut rec, Duration::from_secs(20));
    let took = start.elapsed();
    let _ = target.kill();
    let _ = target.wait();
    assert!(status.success());
    assert!(took >= Duration::from_secs(1), "{took:?}");
    let (summary, _) = load_recording(&dir).unwrap();
    assert!(!summary.interrupted);
    assert!(summary.duration_ns >= 1_000_000_000);
}

/// IDs of the BPF programs a process holds open (from its fdinfo), so the
/// check is not fooled by another spawnprof running on the machine.
fn program_ids_of(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("fdinfo") {
        let Ok(text) = std::fs::read_to_string(fd.unwrap().path()) else {
            continue;
        };
        ids.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|v| v.trim().parse::<u32>().ok()),
        );
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The kernel frees a program once its last link and fd are gone, after an
/// RCU grace period: poll briefly, then fail if any is still loaded.
fn assert_programs_freed(ours: &[u32]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let left: Vec<u32> = loaded_program_ids()
            .into_iter()
            .filter(|id| ours.contains(id))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "probes left behind 3 s after spawnprof exited: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn loaded_program_ids() -> Vec<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect()
}

#[test]
fn ctrl_c_keeps_what_was_recorded_and_detaches_every_probe() {
    interrupt_keeps_recording_and_detaches("sigint", libc::SIGINT);
}

#[test]
fn sigterm_keeps_what_was_recorded_and_detaches_every_probe() {
    interrupt_keeps_recording_and_detaches("sigterm", libc::SIGTERM);
}

fn interrupt_keeps_recording_and_detaches(test: &str, signal: i32) {
    let dir = out_dir(test);
    // A sleep of its own, so that the pkill below ends no other test's
    // (-x: the whole command line, so not a `sleep 420` elsewhere either).
    let sleep = format!("sleep {}", 40 + signal);
    let script = format!("/bin/true; {sleep}");
    let mut rec = start_recording(&dir, &["--", "sh", "-c", &script]);
    let ours = program_ids_of(rec.id());
    assert!(
        ours.len() >= 10,
        "probes are loaded while recording: {ours:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec.id() as i32, signal) };
    let status = wait_with_timeout(&mut rec, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130), "interrupted recordings exit 130");
    let (summary, records) = load_recording(&dir).unwrap();
    assert!(summary.interrupted);
    assert!(
        records
            .iter()
            .any(|r| r.exec_path.as_deref() == Some("/bin/true"))
    );
    assert_programs_freed(&ours);
    // The traced command does not outlive the recording.
    let _ = Command::new("pkill").args(["-x", "-f", &sleep]).status();
}

#[test]
fn ctrl_c_while_the_probes_load_records_nothing_and_detaches() {
    ctrl_c_while_the_probes_load(1);
}

#[test]
fn a_second_ctrl_c_while_the_probes_load_quits_at_once() {
    ctrl_c_while_the_probes_load(2);
}

/// Whether a SIGINT sent to the process is still waiting to be delivered.
fn sigint_pending(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("ShdPnd:")
                .or_else(|| l.strip_prefix("SigPnd:"))
        })
        .filter_map(|v| u64::from_str_radix(v.trim(), 16).ok())
        .any(|set| set & (1 << (libc::SIGINT - 1)) != 0)
}

/// `presses` SIGINTs as soon as spawnprof holds its first program.
fn ctrl_c_while_the_probes_load(presses: usize) {
    let dir = out_dir(&format!("sigint-loading-{presses}"));
    let mut rec = spawn_recording(&dir, &["--", "sleep", "30"], &[]);
    let pid = rec.id();
    // Signalled as soon as it holds its first program: loading is under
    // way, and the rest of the set-up takes far longer than a signal.
    let start = Instant::now();
    let mut ours = Vec::new();
    while ours.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "spawnprof loaded no program"
        );
        ours = program_ids_of(pid);
    }
    for _ in 0..presses {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
        // A signal still pending absorbs the next one (a long bpf() call
        // under load delays delivery): wait until this one was taken.
        let start = Instant::now();
        while sigint_pending(pid) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Whatever else it loads before it sees the signal is ours too.
    while rec.try_wait().expect("wait").is_none() {
        ours.extend(program_ids_of(pid));
        std::thread::sleep(Duration::from_millis(1));
    }
    ours.sort_unstable();
    ours.dedup();
    let out = rec.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr: {stderr}");
    let expected = if presses == 1 {
        "interrupted while the probes were loading: nothing was recorded"
    } else {
        "quitting at once"
    };
    assert!(stderr.contains(expected), "stderr: {stderr}");
    assert!(
        !stderr.contains("spawnprof: tracing"),
        "the command must not have been started: {stderr}"
    );
    // Quitting at once skips the clean-up of the (empty) directory.
    assert!(
        presses > 1 || !dir.exists(),
        "the output directory it made for nothing is removed"
    );
    assert_programs_freed(&ours);
}

#[test]
fn a_ctrl_c_while_the_recording_is_written_is_noted_and_the_next_quits_at_once() {
    let dir = out_dir("sigint-writing");
    // /bin/true ends the recording at once; the debug binary's hook then
    // makes the writing last long enough to be interrupted.
    let mut rec = spawn_recording(
        &dir,
        &["--", "/bin/true"],
        &[("SPAWNPROF_TEST_WRITE_DELAY_MS", "3000")],
    );
    let pid = rec.id();
    let mut stderr = Stderr::of(&mut rec);
    stderr.wait_for(&["spawnprof: tracing"]);
    let ours = program_ids_of(pid);
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    // Noted while writing (or, if it came before the end, an interrupt).
    stderr.wait_for(&[
        "the recording is being written; Ctrl-C again to quit at once",
        "interrupted; writing what was recorded",
    ]);
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = wait_with_timeout(&mut rec, Duration::from_secs(5));
    let seen = stderr.all();
    assert_eq!(status.code(), Some(130), "stderr: {seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("quitting at once")),
        "stderr: {seen:#?}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("recording written to")),
        "it quit before finishing: {seen:#?}"
    );
    assert_programs_freed(&ours);
}

/// A panic while recording (requested through a debug-build-only variable)
/// unwinds through the session, which detaches every probe, and the
/// spawns recorded so far stay on disk.
#[test]
fn a_panic_while_recording_detaches_and_keeps_the_spawns_so_far() {
    let dir = out_dir("panic");
    let mut rec = spawn_recording(
        &dir,
        &["--", "sh", "-c", "/bin/true; sleep 31"],
        &[("SPAWNPROF_TEST_PANIC_AFTER_MS", "600")],
    );
    let pid = rec.id();
    let mut stderr = Stderr::of(&mut rec);
    stderr.wait_for(&["spawnprof: tracing"]);
    let ours = program_ids_of(pid);
    assert!(ours.len() >= 10, "probes are loaded: {ours:?}");
    let status = wait_with_timeout(&mut rec, Duration::from_secs(20));
    // The command outlives a crashed spawnprof, holding its stderr open.
    let _ = Command::new("pkill")
        .args(["-x", "-f", "sleep 31"])
        .status();
    let seen = stderr.all();
    assert_eq!(status.code(), Some(101), "a panic: {seen:#?}");
    assert!(
        seen.iter()
            .any(|l| l.contains("Every probe is detached as spawnprof unwinds")),
        "{seen:#?}"
    );
    assert_programs_freed(&ours);
    let raw = std::fs::read(dir.join("spawns.raw")).expect("spawns.raw kept");
    assert!(
        count(&raw, b"/bin/true\0") >= 1,
        "the finished spawn is kept: {} bytes",
        raw.len()
    );
    let report = Command::new(spawnprof_bin())
        .arg("report")
        .arg(&dir)
        .output()
        .expect("run spawnprof report");
    assert_eq!(report.status.code(), Some(0), "{report:?}");
    let (_, records) = load_recording(&dir).expect("a rebuilt recording");
    assert!(
        records
            .iter()
            .any(|r| r.exec_path.as_deref() == Some("/bin/true")),
        "the finished spawn is in the rebuilt recording: {records:?}"
    );
}

/// How many times `needle` occurs in `hay`.
fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// SIGKILL (or the OOM killer) leaves no handler to run: the kernel detaches
/// the probes as spawnprof's descriptors close, spawns.raw holds what was
/// finished up to a second before, and `spawnprof report` rebuilds the
/// recording from it (its provisional summary keeps the target and the plan).
#[test]
fn a_killed_recording_keeps_its_spawns_and_report_rebuilds_it() {
    let dir = out_dir("sigkill");
    let raw_path = dir.join("spawns.raw");
    let script = "for i in $(seq 200); do /bin/true; done; sleep 33";
    let mut rec = spawn_recording(&dir, &["--", "sh", "-c", script], &[]);
    let mut stderr = Stderr::of(&mut rec);
    stderr.wait_for(&["spawnprof: tracing"]);
    let ours = program_ids_of(rec.id());
    assert!(ours.len() >= 10, "probes are loaded: {ours:?}");
    // 200 kernel records are ~130 KiB: without the periodic flush they
    // would sit in the writer's 1 MiB buffer until the end.
    let records_on_disk = || {
        std::fs::read(&raw_path)
            .map(|raw| count(&raw, b"/bin/true\0"))
            .unwrap_or(0)
    };
    let start = Instant::now();
    while records_on_disk() < 200 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "spawns still not on disk after 20 s: {} of 200",
            records_on_disk()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let live = Command::new(spawnprof_bin())
        .arg("report")
        .arg(&dir)
        .output()
        .expect("run spawnprof report");
    assert_eq!(live.status.code(), Some(1), "a live recording is refused");
    assert!(
        String::from_utf8_lossy(&live.stderr).contains("still being recorded"),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    rec.kill().expect("SIGKILL spawnprof");
    rec.wait().expect("reap spawnprof");
    let _ = Command::new("pkill")
        .args(["-x", "-f", "sleep 33"])
        .status();
    assert_programs_freed(&ours);

    let report = Command::new(spawnprof_bin())
        .arg("report")
        .arg(&dir)
        .output()
        .expect("run spawnprof report");
    let report_err = String::from_utf8_lossy(&report.stderr);
    assert_eq!(report.status.code(), Some(0), "{report_err}");
    assert!(
        report_err.contains("ended before it finished"),
        "{report_err}"
    );
    let (summary, records) = load_recording(&dir).expect("a readable recording");
    let trues = records
        .iter()
        .filter(|r| r.exec_path.as_deref() == Some("/bin/true"))
        .count();
    assert_eq!(trues, 200, "every finished spawn was on disk");
    assert!(summary.counts.spawns >= 200, "{:?}", summary.counts);
    assert!(
        summary.target.starts_with("sh [2 arguments not recorded"),
        "the target from the provisional summary: {}",
        summary.target
    );
    assert!(
        summary.plan.iter().any(|r| r.stage == "clone"),
        "the plan from the provisional summary: {:?}",
        summary.plan
    );
    let note = summary.unfinished.as_deref().expect("marked unfinished");
    assert!(
        note.contains(&format!("from the {} spawns", records.len())),
        "{note}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(html.contains("ended before it finished"));
    assert!(!dir.join(".spawnprof-summary-reserve").exists());
}

/// The target ends while the probes are still loading: the recording ends
/// at once, says why, and the (empty) recording is kept.
#[test]
fn a_pid_that_exits_while_the_probes_load_ends_the_recording_cleanly() {
    require_root();
    let dir = out_dir("pid-gone-while-loading");
    // Lives until its stdin closes.
    let mut target = Command::new("sh")
        .args(["-c", "read _"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start target");
    let pid = target.id().to_string();
    let mut rec = spawn_recording(&dir, &["-p", &pid], &[]);
    let start = Instant::now();
    while program_ids_of(rec.id()).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "spawnprof loaded no program"
        );
    }
    drop(target.stdin.take());
    target.wait().expect("target ends");
    let status = wait_with_timeout(&mut rec, Duration::from_secs(20));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut rec.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "pid {pid} exited while the probes were loading: nothing was recorded"
        )),
        "{stderr}"
    );
    let (summary, records) = load_recording(&dir).expect("the recording is kept");
    assert!(records.is_empty());
    assert!(!summary.interrupted);
}

/// The ssh session drops: SIGHUP, and the terminal spawnprof prints to is
/// gone (here: the read end of its stderr closed, so every write fails).
/// The recording stops, is written whole and marked interrupted, instead of
/// spawnprof dying of the hang-up or of a panic in its next print.
#[test]
fn a_hang_up_with_the_terminal_gone_keeps_the_recording() {
    let dir = out_dir("sighup");
    let mut rec = spawn_recording(&dir, &["--", "sh", "-c", "/bin/true; sleep 44"], &[]);
    let mut stderr = Stderr::of(&mut rec);
    stderr.wait_for(&["spawnprof: tracing"]);
    let ours = program_ids_of(rec.id());
    std::thread::sleep(Duration::from_millis(300));
    // The terminal goes away: every later write to stderr fails (EPIPE).
    drop(stderr);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec.id() as i32, libc::SIGHUP) };
    let status = wait_with_timeout(&mut rec, Duration::from_secs(20));
    let _ = Command::new("pkill")
        .args(["-x", "-f", "sleep 44"])
        .status();
    assert_eq!(
        status.code(),
        Some(130),
        "a clean stop, not a death by signal or a panic in a print: {status:?}"
    );
    let (summary, records) = load_recording(&dir).expect("the recording is written");
    assert!(summary.interrupted);
    assert!(
        records
            .iter()
            .any(|r| r.exec_path.as_deref() == Some("/bin/true"))
    );
    assert!(dir.join("report.html").exists(), "the reports too");
    assert_programs_freed(&ours);
}

/// Output to a pipe that closes early (`| head`): the recording is still
/// written in full and exits with the command's status, not a panic in a
/// print; a command that only prints (`report`) ends quietly by SIGPIPE.
#[test]
fn a_closed_pipe_costs_no_recording_and_no_panic() {
    use std::os::unix::process::ExitStatusExt as _;
    let dir = out_dir("closed-pipe");
    let mut rec = spawn_recording(
        &dir,
        &["--", "sh", "-c", "/bin/true; sleep 0.5; /bin/true"],
        &[],
    );
    let mut stderr = Stderr::of(&mut rec);
    stderr.wait_for(&["spawnprof: tracing"]);
    drop(stderr);
    let status = wait_with_timeout(&mut rec, Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "the command's status: {status:?}");
    let (summary, records) = load_recording(&dir).expect("the recording is written");
    assert!(!summary.interrupted);
    let trues = records
        .iter()
        .filter(|r| r.exec_path.as_deref() == Some("/bin/true"))
        .count();
    assert_eq!(trues, 2, "both spawns, the one after the pipe closed too");

    let mut report = Command::new(spawnprof_bin())
        .arg("report")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawnprof report");
    let mut out = BufReader::new(report.stdout.take().unwrap()).lines();
    assert!(out.next().is_some());
    drop(out);
    let status = report.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut report.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        status.success() || status.signal() == Some(libc::SIGPIPE),
        "{status:?}: {stderr}"
    );
}
