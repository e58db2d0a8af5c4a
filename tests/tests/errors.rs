//! Bad input gets a clear error naming the remedy, before any tracing starts.
use std::process::{Command, Output};

use spawnprof::recording::load_recording;
use spawnprof_tests::{out_dir, record, require_root, spawner_bin, spawnprof_bin};

fn spawnprof(args: &[&str]) -> Output {
    require_root();
    Command::new(spawnprof_bin())
        .args(args)
        .output()
        .expect("run spawnprof")
}

fn assert_error(out: &Output, code: i32, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in: {err}");
    }
}

#[test]
fn a_pid_that_does_not_exist_is_named() {
    // pid_max is at most 4194304, so this pid cannot exist.
    let out = spawnprof(&[
        "record",
        "-o",
        out_dir("nopid").to_str().unwrap(),
        "-p",
        "99999999",
    ]);
    assert_error(&out, 1, &["no process with pid 99999999"]);
    let out = spawnprof(&["record", "-o", out_dir("pid0").to_str().unwrap(), "-p", "0"]);
    assert_error(&out, 2, &["--pid 0 is not a process"]);
    // A zombie: `sleep 30` never reaps the child that sh left it.
    let mut parent = Command::new("sh")
        .args(["-c", "/bin/true & exec sleep 30"])
        .spawn()
        .expect("start sh");
    let zombie = (0..100)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", parent.id()))
                    .ok()?;
            let pid = children.split_whitespace().next()?.to_string();
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            status.contains("State:\tZ").then_some(pid)
        })
        .expect("a zombie child");
    let dir = out_dir("zombie");
    let out = spawnprof(&["record", "-o", dir.to_str().unwrap(), "-p", &zombie]);
    let _ = parent.kill();
    let _ = parent.wait();
    assert_error(
        &out,
        1,
        &["has already exited: it is a zombie", "running process"],
    );
    assert!(!dir.exists(), "{dir:?} was created before the error");
    // kthreadd is pid 2 on every Linux since 2.6.
    let dir = out_dir("kthread");
    let out = spawnprof(&["record", "-o", dir.to_str().unwrap(), "-p", "2"]);
    assert_error(
        &out,
        1,
        &["pid 2 (kthreadd) is a kernel thread", "user-space process"],
    );
    assert!(!dir.exists(), "{dir:?} was created before the error");
}

/// Each command line fails with usage status 2, naming every needle.
fn assert_usage_errors(cases: &[(&[&str], &[&str])]) {
    for (args, needles) in cases {
        assert_error(&spawnprof(args), 2, needles);
    }
}

#[test]
fn nothing_to_record_and_nonsense_values_are_usage_errors() {
    let dir = out_dir("usage");
    let d = dir.to_str().unwrap();
    assert_usage_errors(&[
        (&["record", "-o", d], &["-p PID", "-- CMD"]),
        (
            &["record", "-o", d, "--duration", "0s", "--", "true"],
            &["--duration"],
        ),
        (
            &["record", "-o", d, "--duration=-3s", "--", "true"],
            &["--duration"],
        ),
        (
            &["record", "-o", d, "--ring-buffer", "10T", "--", "true"],
            &["--ring-buffer"],
        ),
        (
            &["record", "-o", d, "--ring-buffer", "3000", "--", "true"],
            &["power of two"],
        ),
        (
            &["record", "-o", d, "--skip-stage", "exec", "--", "true"],
            &["cannot work without"],
        ),
        (
            &["record", "-o", d, "--skip-stage", "nope", "--", "true"],
            &["no such stage"],
        ),
        (&["record", "--bogus"], &["--bogus"]),
        (
            &["record", "-o", d, "--follow", "--", "true"],
            &["--follow goes with -p PID", "with -- CMD every descendant"],
        ),
    ]);
}

/// The same status for a value clap accepted but spawnprof cannot use,
/// whichever way it is written, and nothing is created for it.
#[test]
fn values_spawnprof_cannot_use_are_usage_errors_that_create_nothing() {
    let unused = out_dir("usage").join("bench-bad-list");
    let u = unused.to_str().unwrap();
    assert_usage_errors(&[
        (
            &["bench", "--methods", "fork,nope", "-o", u],
            &["--methods", "unknown method 'fork'"],
        ),
        (
            &["bench", "--experiments", "env,x", "-o", u],
            &["--experiments", "no experiment 'x'"],
        ),
    ]);
    assert!(
        !unused.exists(),
        "no output directory for a bad command line"
    );
}

/// Refused before anything is loaded or created.
#[test]
fn a_bench_bigger_than_this_machines_memory_is_refused() {
    let bench_dir = out_dir("usage").join("bench-10t");
    let b = bench_dir.to_str().unwrap();
    assert_error(
        &spawnprof(&["bench", "--rss", "10T", "-o", b]),
        1,
        &["--rss", "more than this machine's memory"],
    );
    assert!(
        !bench_dir.exists(),
        "no output directory for a refused bench"
    );
}

/// Negative numbers, written the way people type them (no `=`): named,
/// not taken for unknown options, and a usage error like any other
/// whether clap or spawnprof finds it.
#[test]
fn negative_numbers_are_named_usage_errors() {
    let dir = out_dir("usage");
    let d = dir.to_str().unwrap();
    for (args, needle) in [
        (
            &["record", "--rows", "-1", "--", "true"][..],
            "--rows cannot be negative",
        ),
        (&["record", "-p", "-1"][..], "--pid cannot be negative"),
        (
            &["record", "--sample-hz", "-3", "--", "true"][..],
            "--sample-hz cannot be negative",
        ),
        (
            &["record", "--duration", "-5s", "--", "true"][..],
            "is negative",
        ),
        (
            &["record", "--ring-buffer", "-4K", "--", "true"][..],
            "is negative",
        ),
        (
            &["bench", "--count", "-1"][..],
            "--count cannot be negative",
        ),
        (&["bench", "--rss", "-1G"][..], "is negative"),
        (&["bench", "--env", "-5"][..], "is negative"),
        (&["bench", "--path-misses", "-1"][..], "is negative"),
    ] {
        let mut with_dir = args.to_vec();
        with_dir.splice(1..1, ["-o", d]);
        assert_error(&spawnprof(&with_dir), 2, &[needle]);
    }
}

#[test]
fn an_unwritable_or_occupied_output_directory_is_refused_before_tracing() {
    let out = spawnprof(&[
        "record",
        "-o",
        "/proc/spawnprof-cannot-write-here",
        "--",
        "true",
    ]);
    assert_error(&out, 1, &["writable -o DIR"]);
    let run = record("occupied", &["--", "true"]);
    let d = run.dir.to_str().unwrap();
    let out = spawnprof(&["record", "-o", d, "--", "true"]);
    assert_error(&out, 1, &["already holds a recording", "--force"]);
    let out = spawnprof(&["record", "-o", d, "--force", "--", "true"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_command_that_is_not_found_is_reported_and_still_recorded() {
    let run = record("notfound", &["--", "spawnprof-no-such-command-xyz"]);
    assert_eq!(run.output.status.code(), Some(127));
    assert!(
        run.stderr().contains(
            "cannot run spawnprof-no-such-command-xyz: command not found (check the name and PATH)"
        ),
        "{}",
        run.stderr()
    );
    let root = run.root();
    assert!(
        !root.exec_attempts.is_empty(),
        "the failed PATH search is recorded"
    );
    assert!(
        root.exec_attempts
            .iter()
            .all(|a| a.ret.is_some_and(|r| r < 0))
    );
}

#[test]
fn a_command_that_cannot_be_run_exits_126_with_the_reason() {
    let script = out_dir("not-executable-cmd").with_extension("sh");
    std::fs::create_dir_all(script.parent().unwrap()).unwrap();
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let cases = [
        (script.to_str().unwrap(), "permission denied"),
        ("/tmp", "permission denied"),
    ];
    for (i, (cmd, why)) in cases.into_iter().enumerate() {
        let run = record(&format!("cannot-run-{i}"), &["--", cmd]);
        assert_eq!(run.output.status.code(), Some(126), "{}", run.stderr());
        assert!(
            run.stderr().contains(&format!("cannot run {cmd}: {why}")),
            "{}",
            run.stderr()
        );
        // The failed attempt is data like any other.
        assert!(
            run.root().exec_attempts.iter().any(|a| a.ret == Some(-13)),
            "no EACCES attempt recorded for {cmd}"
        );
    }
}

#[test]
fn a_corrupt_or_truncated_recording_is_named_with_its_line() {
    let run = record("corrupt", &["--", "sh", "-c", "/bin/true; exit 0"]);
    let spawns = run.dir.join("spawns.jsonl");
    let text = std::fs::read_to_string(&spawns).unwrap();
    std::fs::write(&spawns, &text[..text.len() / 2]).unwrap();
    let out = spawnprof(&["report", run.dir.to_str().unwrap()]);
    assert_error(&out, 1, &["spawns.jsonl:", "truncated or corrupt"]);
    let out = spawnprof(&["report", "/tmp"]);
    assert_error(&out, 1, &["is not a spawnprof recording"]);
}

/// `spawnprof report` writes into the recording: one it may not write to
/// (here a read-only mount, which root cannot write either) is named with
/// the way around it, before anything is read or rebuilt.
#[test]
fn a_recording_that_cannot_be_written_to_is_named_with_the_remedy() {
    let run = record("read-only", &["--", "sh", "-c", "/bin/true"]);
    let d = run.dir.to_str().unwrap();
    let script = format!(
        "mount --bind {d} {d} && mount -o remount,ro,bind {d} && exec {} report {d}",
        spawnprof_tests::spawnprof_bin().display()
    );
    // A mount namespace of its own: the read-only mount ends with it.
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    assert_error(&out, 1, &["is not writable", "cp -r", "spawnprof report"]);
}

/// A recording the user may not read is named as such, not as a directory
/// without a recording.
#[test]
fn report_on_an_unreadable_recording_says_permission_denied() {
    require_root();
    let run = record("unreadable", &["--", "/bin/true"]);
    // Under /tmp, which nobody can reach, unlike target/.
    let work = std::env::temp_dir().join(format!("spawnprof-unreadable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let binary = work.join("spawnprof");
    std::fs::copy(spawnprof_bin(), &binary).unwrap();
    let rec = work.join("rec");
    let copy = Command::new("cp")
        .arg("-r")
        .arg(&run.dir)
        .arg(&rec)
        .status()
        .unwrap();
    assert!(copy.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&rec, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&binary)
        .arg("report")
        .arg(&rec)
        .output()
        .expect("setpriv (util-linux)");
    assert_error(&out, 1, &["permission denied"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("no summary.json"), "{err}");
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn without_privileges_the_error_names_the_capabilities_and_sudo() {
    require_root();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(spawnprof_bin())
        .args(["record", "-o", "/tmp/spawnprof-unprivileged", "--", "true"])
        .output()
        .expect("setpriv (util-linux)");
    assert_error(&out, 1, &["CAP_BPF", "CAP_PERFMON", "sudo"]);
}

#[test]
fn in_a_user_namespace_the_error_says_why_capabilities_do_not_count() {
    require_root();
    let dir = out_dir("userns");
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user"])
        .arg(spawnprof_bin())
        .args(["record", "-o", dir.to_str().unwrap(), "--", "true"])
        .output()
        .expect("unshare (util-linux)");
    assert_error(&out, 1, &["user namespace", "rootless", "root on the host"]);
    assert!(!dir.exists(), "{dir:?} was created before the error");
}

/// The remedy the privilege error names works: a copy of spawnprof with
/// CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH records as an ordinary user.
#[test]
fn with_the_named_capabilities_an_ordinary_user_records() {
    require_root();
    // Under /tmp, which nobody can reach, unlike target/.
    let work = std::env::temp_dir().join(format!("spawnprof-caps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let binary = work.join("spawnprof");
    std::fs::copy(spawnprof_bin(), &binary).unwrap();
    let setcap = Command::new("setcap")
        .args(["cap_bpf,cap_perfmon,cap_dac_read_search+ep"])
        .arg(&binary)
        .status()
        .expect("setcap is missing: install libcap2-bin");
    assert!(setcap.success(), "setcap failed on {binary:?}");
    std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let rec = work.join("rec");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&binary)
        .args(["record", "--sample-hz", "0", "-o"])
        .arg(&rec)
        .args(["--", "sh", "-c", "/bin/true; /bin/true"])
        .output()
        .expect("setpriv (util-linux)");
    assert_error(&out, 0, &["2 spawns"]);
    let (_, records) = load_recording(&rec).expect("a recording");
    assert_eq!(records.iter().filter(|r| !r.root).count(), 2);
    let _ = std::fs::remove_dir_all(&work);
}

/// Runs `tail` in a private mount namespace whose tracefs is unmounted
/// first, so the host's own mount is never touched.
fn without_tracefs(tail: &str) -> Output {
    require_root();
    let script = format!(
        "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug 2>/dev/null; \
         if [ -d /sys/kernel/tracing/events ]; then echo 'tracefs still mounted' >&2; exit 99; fi; \
         {tail}"
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux)")
}

#[test]
fn a_missing_tracefs_is_mounted_and_the_mount_is_announced() {
    let dir = out_dir("tracefs-mounted");
    let out = without_tracefs(&format!(
        "{} record --force --sample-hz 0 -o {} -- true && \
         grep -q ' /sys/kernel/tracing .* tracefs ' /proc/self/mountinfo",
        spawnprof_bin().display(),
        dir.display()
    ));
    assert_error(&out, 0, &["mounted it at /sys/kernel/tracing"]);
    assert!(
        dir.join("spawns.jsonl").is_file(),
        "no recording in {dir:?}"
    );
}

#[test]
fn a_tracefs_that_cannot_be_mounted_is_named_with_the_remedy() {
    let dir = out_dir("tracefs-unmountable");
    let _ = std::fs::remove_dir_all(&dir);
    // Root without CAP_SYS_ADMIN passes the BPF privilege check (CAP_BPF
    // and CAP_PERFMON) but may not mount.
    let out = without_tracefs(&format!(
        "exec setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin {} record -o {} -- true",
        spawnprof_bin().display(),
        dir.display()
    ));
    assert_error(
        &out,
        1,
        &[
            "tracefs is not mounted",
            "mount -t tracefs nodev /sys/kernel/tracing",
            "CAP_SYS_ADMIN",
        ],
    );
    assert!(!dir.exists(), "{dir:?} was created before the error");
}

/// A disk that fills up mid-recording: the recording goes on, the terminal
/// report is whole, and what reached the disk is a valid recording that
/// says it is incomplete and how to finish it: once there is room, `spawnprof
/// report` converts the raw records kept. Done on a 1.2 MB tmpfs in a
/// private mount namespace, copied out (full, then grown and reported)
/// before the namespace goes. The spawns must outlast the recording's
/// first once-a-second flush, or the disk is found full only at the end:
/// 3,000 take about 3 s here, where 1,000 took under one on a fast day.
#[test]
fn a_disk_that_fills_up_keeps_a_valid_recording_and_the_full_report() {
    require_root();
    let full = out_dir("disk-full");
    let grown = out_dir("disk-grown");
    let small = out_dir("disk-full-mount");
    let script = format!(
        "mkdir -p {small} && mount -t tmpfs -o size=1200k tmpfs {small} || exit 99; \
         {spawnprof} record --sample-hz 0 -o {small}/rec -- \
           {spawner} --method posix-spawn --count 3000 --mode serial >/dev/null; rc=$?; \
         cp -r {small}/rec {full}; \
         mount -o remount,size=16m {small} && {spawnprof} report {small}/rec >/dev/null || exit 98; \
         cp -r {small}/rec {grown}; exit $rc",
        small = small.display(),
        spawnprof = spawnprof_bin().display(),
        spawner = spawner_bin().display(),
        full = full.display(),
        grown = grown.display(),
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux)");
    assert_error(
        &out,
        1,
        &[
            "spawns.raw: No space left on device",
            "recording goes on",
            "the report above is complete",
            "spawnprof report",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // The spawner's 10 warm-up spawns come on top.
    assert!(err.contains("3010 spawns"), "no whole report: {err}");
    assert!(
        err.contains("spawns.jsonl is incomplete: see below"),
        "the table says where the rest are not: {err}"
    );
    // Full: every line that reached the disk is a whole record, the
    // summary's counts are whole and it says what is missing and why.
    let (summary, records) = load_recording(&full).expect("a loadable recording");
    assert_eq!(summary.counts.spawns, 3010, "spawns counted in memory");
    assert!((records.len() as u64) < summary.counts.spawns);
    let why = summary
        .spawns_incomplete
        .expect("spawns_incomplete in summary.json");
    assert!(why.contains("No space left on device"), "{why}");
    let raw = std::fs::metadata(full.join("spawns.raw")).expect("spawns.raw kept");
    assert!(raw.len() > 0);
    // Grown: the raw records are converted, and the rest still counted.
    let (after, records) = load_recording(&grown).expect("a loadable recording");
    assert!(!grown.join("spawns.raw").exists(), "converted and removed");
    assert_eq!(after.counts.spawns, 3010, "the counts are kept");
    let saved = records.iter().filter(|r| !r.root).count() as u64;
    assert!(
        saved > 0 && saved < 3010,
        "{saved} spawns saved before the disk was full"
    );
    let why = after.spawns_incomplete.expect("still incomplete");
    assert!(why.contains("only counted"), "{why}");
    for dir in [&full, &grown] {
        assert!(
            !dir.join(".spawnprof-summary-reserve").exists(),
            "the space reserve was left behind"
        );
    }
}
