//! `spawnprof serve` against a real Prometheus (Debian's package, started
//! and stopped here): exact counts and dup_mmap buckets that follow the
//! parent's RSS, metric names promtool accepts, a short storm with flat
//! memory and no failed scrape, a clean stop on SIGTERM, another
//! spawnprof's probes alongside, and the errors of bad input.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use spawnprof_tests::{
    require_root,
    serve::{
        Cgroup, Prometheus, Serve, bpf_prog_ids, http_get, prometheus_bin, rss_kib, sample,
        spawner_named, wait_for,
    },
    spawnprof_bin,
};

/// Prometheus, or the reason the test cannot run (printed as SKIPPED).
fn prometheus_or_skip(test: &str) -> Option<std::path::PathBuf> {
    let bin = prometheus_bin();
    if bin.is_none() {
        println!(
            "SKIPPED: {test}: Debian's prometheus package is not installed (`cargo xtask test` \
             installs it; or apt-get install prometheus)"
        );
    }
    bin
}

fn cgroup_or_skip(test: &str) -> Option<Cgroup> {
    match Cgroup::new(test) {
        Ok(c) => Some(c),
        Err(why) => {
            println!("SKIPPED: {test}: cannot make a cgroup v2 directory: {why}");
            None
        }
    }
}

/// A serve that counts the processes of `cg` alone.
fn serve_in(test: &str, cg: &Cgroup) -> Serve {
    Serve::start(test, &["--cgroup", cg.path.to_str().unwrap()])
}

fn run_in(cg: &Cgroup, program: &std::path::Path, args: &[&str]) {
    let out = cg
        .command(program, args)
        .stdout(Stdio::null())
        .output()
        .expect("running the spawner");
    assert!(
        out.status.success(),
        "{}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_sees_every_fork_and_dup_mmap_growing_with_rss() {
    require_root();
    let test = "serve-prometheus";
    let (Some(prom_bin), Some(cg)) = (prometheus_or_skip(test), cgroup_or_skip(test)) else {
        return;
    };
    const N: u64 = 100;
    let small = spawner_named(test, "sp-rss0");
    let large = spawner_named(test, "sp-rss1g");
    let serve = serve_in(test, &cg);
    let prom = Prometheus::start(test, &prom_bin, serve.port);
    let count = N.to_string();
    let fork = ["--method", "fork-exec", "--warmup", "0", "--count", &count];
    run_in(&cg, &small, &fork);
    run_in(&cg, &large, &[&fork[..], &["--rss", "1G"]].concat());

    // Every fork is counted once its parent exited (its last CoW window closed).
    for comm in ["sp-rss0", "sp-rss1g"] {
        let q = format!("sum(spawnprof_spawns_total{{comm=\"{comm}\",method=\"fork\"}})");
        let seen = wait_for(Duration::from_secs(30), || {
            prom.query(&q).filter(|v| *v as u64 == N)
        });
        assert!(
            seen.is_some(),
            "{q} = {:?}, want {N}\n{}",
            prom.query(&q),
            serve.metrics()
        );
        let dup = format!(
            "sum(spawnprof_stage_duration_seconds_count{{comm=\"{comm}\",stage=\"dup_mmap\"}})"
        );
        assert_eq!(prom.query(&dup), Some(N as f64), "{dup}");
    }
    let p50 = |comm: &str| {
        let q = format!(
            "histogram_quantile(0.5, sum by (le) (spawnprof_stage_duration_seconds_bucket\
             {{comm=\"{comm}\",stage=\"dup_mmap\"}}))"
        );
        prom.query(&q).unwrap_or_else(|| panic!("no value for {q}"))
    };
    let (p_small, p_large) = (p50("sp-rss0"), p50("sp-rss1g"));
    println!(
        "dup_mmap p50: {:.1} µs at 0 RSS, {:.1} µs at 1 GiB",
        p_small * 1e6,
        p_large * 1e6
    );
    assert!(
        p_large >= 20.0 * p_small,
        "dup_mmap p50 at 1 GiB ({p_large}) is not 20x that at 0 RSS ({p_small})"
    );
    // The lowest non-empty bucket of the 1 GiB forks is above the 0 RSS p50 too.
    let page = serve.metrics();
    let lowest = page
        .lines()
        .filter(|l| {
            l.starts_with("spawnprof_stage_duration_seconds_bucket{comm=\"sp-rss1g\",method=\"fork\",stage=\"dup_mmap\"")
        })
        .find(|l| !l.ends_with(" 0"))
        .expect("a non-empty bucket");
    println!("lowest 1 GiB bucket: {lowest}");
    promtool_accepts(&page);
    assert_eq!(
        prom.query("min_over_time(up{job=\"spawnprof\"}[1m])"),
        Some(1.0),
        "a scrape failed: {}",
        prom.log_text()
    );
}

/// `promtool check metrics` reads the page on stdin: no lint problem.
fn promtool_accepts(page: &str) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool (Debian's prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}

#[test]
fn a_storm_keeps_memory_flat_and_every_scrape_answers() {
    require_root();
    let test = "serve-storm";
    let (Some(prom_bin), Some(cg)) = (prometheus_or_skip(test), cgroup_or_skip(test)) else {
        return;
    };
    let storm = spawner_named(test, "sp-storm");
    let serve = serve_in(test, &cg);
    let prom = Prometheus::start(test, &prom_bin, serve.port);
    // Four spawners, each as fast as it can, for 15 s (60 s in bench-serve).
    let mut spawners: Vec<_> = ["posix-spawn", "fork-exec", "vfork-exec", "clone3-vfork"]
        .iter()
        .map(|m| {
            cg.command(
                &storm,
                &[
                    "--method", m, "--mode", "serial", "--warmup", "0", "--count", "5000000",
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting a spawner")
        })
        .collect();
    let start = Instant::now();
    let (mut rss, mut scrapes, mut failed) = (Vec::new(), 0, Vec::new());
    while start.elapsed() < Duration::from_secs(15) {
        match http_get(serve.port, "/metrics") {
            Ok((200, _)) => scrapes += 1,
            other => failed.push(format!("{other:?}")),
        }
        if start.elapsed() > Duration::from_secs(3) {
            rss.push(rss_kib(serve.pid()).expect("serve's VmRSS"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for s in &mut spawners {
        let _ = s.kill();
        let _ = s.wait();
    }
    let page = serve.metrics();
    let spawned = sample(
        &page,
        "spawnprof_spawns_total{comm=\"sp-storm\",method=\"clone3-vfork\"}",
    )
    .unwrap_or(0.0);
    let (first, last) = (rss[0], *rss.last().unwrap());
    let max = *rss.iter().max().unwrap();
    println!(
        "storm: {scrapes} scrapes, {spawned} clone3-vfork spawns, serve RSS {first} KiB after 3 s, \
         {last} KiB at 15 s (max {max} KiB)"
    );
    assert!(failed.is_empty(), "failed scrapes: {failed:?}");
    assert!(spawned > 1000.0, "the storm hardly ran: {spawned}\n{page}");
    assert!(
        max <= first + 2048,
        "serve's memory grew from {first} KiB to {max} KiB during the storm"
    );
    let up = prom.query("min_over_time(up{job=\"spawnprof\"}[30s])");
    let scraped = prom.query("count_over_time(up{job=\"spawnprof\"}[30s])");
    assert_eq!(
        up,
        Some(1.0),
        "Prometheus saw a failed scrape: {}",
        prom.log_text()
    );
    assert!(
        scraped.is_some_and(|n| n >= 10.0),
        "Prometheus scrapes: {scraped:?}"
    );
}

#[test]
fn sigterm_leaves_no_program_in_the_kernel_and_another_spawnprof_can_run_alongside() {
    require_root();
    let test = "serve-stop";
    let Some(cg) = cgroup_or_skip(test) else {
        return;
    };
    let mut serve = serve_in(test, &cg);
    let ours = bpf_prog_ids(serve.pid());
    assert!(ours.len() > 5, "serve holds programs: {ours:?}");

    // A second spawnprof attaches its own probes to the same hooks, and goes.
    let record = Command::new(spawnprof_bin())
        .args(["record", "--no-live", "-o"])
        .arg(spawnprof_tests::out_dir("serve-stop-record"))
        .args(["--", "sh", "-c", "/bin/true; /bin/true"])
        .output()
        .unwrap();
    assert!(
        record.status.success(),
        "{}",
        String::from_utf8_lossy(&record.stderr)
    );
    let spawner = spawner_named(test, "sp-after");
    run_in(
        &cg,
        &spawner,
        &["--method", "posix-spawn", "--warmup", "0", "--count", "25"],
    );
    let counted = wait_for(Duration::from_secs(10), || {
        sample(
            &serve.metrics(),
            "spawnprof_spawns_total{comm=\"sp-after\",method=\"clone3-vfork\"}",
        )
        .filter(|n| *n == 25.0)
    });
    assert!(
        counted.is_some(),
        "serve stopped counting:\n{}",
        serve.metrics()
    );

    let status = serve.stop();
    assert!(
        status.success(),
        "serve exited with {status}: {}",
        serve.log_text()
    );
    assert!(serve.log_text().contains("SIGTERM"), "{}", serve.log_text());
    let left = wait_for(Duration::from_secs(10), || {
        let loaded: Vec<u32> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .map(|p| p.id())
            .filter(|id| ours.contains(id))
            .collect();
        loaded.is_empty().then_some(())
    });
    assert!(
        left.is_some(),
        "programs of serve still loaded after its exit"
    );
}

/// While the counted processes do not fork, serve parks the fork-only
/// probes (mmap lock, page faults) after 32 spawns, and a fork brings
/// them back: the forks after the first have their dup_mmap again.
#[test]
fn fork_only_probes_park_while_nothing_forks_and_return_at_a_fork() {
    require_root();
    let test = "serve-park";
    let Some(cg) = cgroup_or_skip(test) else {
        return;
    };
    let mut serve = serve_in(test, &cg);
    let script = "import os, time\n\
        for _ in range(400):\n    os.waitpid(os.posix_spawn('/bin/true', ['true'], {}), 0)\n\
        time.sleep(0.5)\n\
        for _ in range(10):\n    \
            pid = os.fork()\n    \
            if pid == 0:\n        os._exit(0)\n    \
            os.waitpid(pid, 0)\n    time.sleep(0.2)\n";
    run_in(
        &cg,
        std::path::Path::new("/usr/bin/python3"),
        &["-c", script],
    );
    let forks = "{comm=\"python3\",method=\"fork\",stage=\"dup_mmap\"}";
    let timed = wait_for(Duration::from_secs(10), || {
        sample(
            &serve.metrics(),
            &format!("spawnprof_stage_duration_seconds_count{forks}"),
        )
    });
    let page = serve.metrics();
    for (name, at_least) in [
        ("spawnprof_fork_probes_parked_total", 1.0),
        ("spawnprof_fork_probes_resumed_total", 1.0),
    ] {
        let n = sample(&page, name).unwrap_or(0.0);
        assert!(n >= at_least, "{name} {n}:\n{page}");
    }
    // The fork that finds them parked has none; a 50 ms check brings them
    // back well before the next, 200 ms later.
    let timed = timed.unwrap_or(0.0);
    assert!(
        (8.0..=10.0).contains(&timed),
        "{timed} of 10 forks timed:\n{page}"
    );
    assert!(serve.stop().success(), "{}", serve.log_text());
}

/// On a real machine some copy-on-write window is nearly always open (PID
/// 1 or a shell forked and waits), and it kept the page-fault program on
/// every fault of the machine. serve parks it once the open windows go 5 s
/// without a copy-on-write fault; the writes that came at once after the
/// fork were counted.
#[test]
fn a_quiet_copy_on_write_window_lets_the_fault_probe_park() {
    require_root();
    let test = "serve-cow-quiet";
    let Some(cg) = cgroup_or_skip(test) else {
        return;
    };
    let mut serve = serve_in(test, &cg);
    // 2,048 shared pages written at once after the fork, then 80 spawns
    // (the lock probes park at 32), then a long idle wait with the
    // windows of parent and child open.
    // It waits for its stdin to close.
    let script = "import os, sys, signal\n\
        buf = bytearray(8 << 20)\n\
        pid = os.fork()\n\
        if pid == 0:\n    signal.pause()\n\
        buf[0:len(buf):4096] = b'x' * (len(buf) // 4096)\n\
        for _ in range(80):\n    os.waitpid(os.posix_spawn('/bin/true', ['true'], {}), 0)\n\
        sys.stdin.read()\n\
        os.kill(pid, signal.SIGKILL)\n\
        os.waitpid(pid, 0)\n";
    let mut idle = cg
        .command(std::path::Path::new("/usr/bin/python3"), &["-c", script])
        .stdin(Stdio::piped())
        .spawn()
        .expect("python3");
    let parked = wait_for(Duration::from_secs(15), || {
        sample(&serve.metrics(), "spawnprof_fork_probes_parked_total").filter(|&n| n >= 2.0)
    });
    let windows_open = idle.try_wait().expect("python3").is_none();
    drop(idle.stdin.take());
    let ended = idle.wait().expect("python3");
    let page = serve.metrics();
    assert!(
        windows_open && ended.success(),
        "the script ended early: {ended}"
    );
    assert!(
        parked.is_some(),
        "the lock probes and then the fault one should have parked:\n{page}"
    );
    // The parent's exit closes its window and adds up its count.
    let cow = wait_for(Duration::from_secs(5), || {
        let n: f64 = serve
            .metrics()
            .lines()
            .filter(|l| l.starts_with("spawnprof_cow_faults_total{") && l.contains("python3"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (n >= 1000.0).then_some(n)
    });
    assert!(
        cow.is_some(),
        "the parent's 2,048 writes after its fork:\n{page}"
    );
    assert!(serve.stop().success(), "{}", serve.log_text());
}

/// First runs come from the scheduler's wait count by default, so no
/// program runs on every context switch; `--first-run-per-switch` times
/// each switch, as `record` does. Either way every child's first run is
/// counted.
#[test]
fn first_runs_are_counted_from_the_wait_or_per_switch_on_request() {
    require_root();
    let script = "import os\n\
        for _ in range(100):\n    os.waitpid(os.posix_spawn('/bin/true', ['true'], {}), 0)\n";
    for (test, extra, from_wait) in [
        ("serve-first-run-wait", None, true),
        (
            "serve-first-run-switch",
            Some("--first-run-per-switch"),
            false,
        ),
    ] {
        let Some(cg) = cgroup_or_skip(test) else {
            return;
        };
        let mut args = vec!["--cgroup", cg.path.to_str().unwrap()];
        args.extend(extra);
        let mut serve = Serve::start(test, &args);
        run_in(
            &cg,
            std::path::Path::new("/usr/bin/python3"),
            &["-c", script],
        );
        let counted = |page: &str| -> f64 {
            page.lines()
                .filter(|l| l.starts_with("spawnprof_stage_duration_seconds_count{"))
                .filter(|l| l.contains("comm=\"python3\"") && l.contains("stage=\"sched_delay\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let n = wait_for(Duration::from_secs(10), || {
            Some(counted(&serve.metrics())).filter(|&n| n >= 100.0)
        });
        let page = serve.metrics();
        assert!(
            n.is_some(),
            "{test}: {} first runs of 100:\n{page}",
            counted(&page)
        );
        let log = serve.log_text();
        assert_eq!(
            log.contains("first runs from the scheduler's wait count"),
            from_wait,
            "{test}: {log}"
        );
        assert!(serve.stop().success(), "{}", serve.log_text());
    }
}

/// `--cgroup-label`: each fork is counted under its parent's cgroup, up
/// to `--cgroup-k` cgroups; later ones are `other`, and a gauge says so.
#[test]
fn cgroup_labels_name_each_parents_cgroup_up_to_the_limit() {
    require_root();
    let test = "serve-cgroup-label";
    let Some(parent) = cgroup_or_skip(test) else {
        return;
    };
    let subs: Vec<Cgroup> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let path = parent.path.join(name);
            std::fs::create_dir_all(&path).expect("making a sub-cgroup");
            Cgroup { path }
        })
        .collect();
    let spawner = spawner_named(test, "sp-cg");
    let mut serve = Serve::start(
        test,
        &[
            "--cgroup",
            parent.path.to_str().unwrap(),
            "--cgroup-label",
            "--cgroup-k",
            "2",
        ],
    );
    let root = parent.path.file_name().unwrap().to_str().unwrap();
    for (cg, n) in subs.iter().zip([20, 30, 10]) {
        let count = n.to_string();
        let args = ["--method", "fork-exec", "--warmup", "0", "--count", &count];
        run_in(cg, &spawner, &args);
    }
    for (label, n) in [
        (format!("/{root}/a"), 20),
        (format!("/{root}/b"), 30),
        ("other".into(), 10),
    ] {
        let series =
            format!("spawnprof_spawns_total{{comm=\"sp-cg\",cgroup=\"{label}\",method=\"fork\"}}");
        let seen = wait_for(Duration::from_secs(20), || {
            sample(&serve.metrics(), &series).filter(|v| *v as u64 == n)
        });
        assert!(seen.is_some(), "{series} != {n}:\n{}", serve.metrics());
    }
    let page = serve.metrics();
    assert_eq!(sample(&page, "spawnprof_cgroup_labels_capped"), Some(1.0));
    assert_eq!(sample(&page, "spawnprof_cgroup_labels_limit"), Some(2.0));
    promtool_accepts(&page);
    assert!(serve.stop().success(), "{}", serve.log_text());
    drop(subs);
}

/// `--label-idle`: a comm that stopped spawning gives its label back once
/// another is counted as `other`, and the next name to spawn takes it.
/// A threaded server's threads have names of their own (Java's Thread-N,
/// pool-1-thread-M): labelled by them, one server would take every label.
/// Its spawns and threads are labelled by its process name.
#[test]
fn a_named_threads_spawns_carry_its_process_name() {
    require_root();
    let test = "serve-thread-names";
    let Some(cg) = cgroup_or_skip(test) else {
        return;
    };
    let mut serve = serve_in(test, &cg);
    let script = "import ctypes, os, threading\n\
        libc = ctypes.CDLL(None)\n\
        def work(i):\n    \
            libc.prctl(15, b'sp-worker-%d' % i, 0, 0, 0)\n    \
            for _ in range(3):\n        os.waitpid(os.posix_spawn('/bin/true', ['true'], {}), 0)\n\
        ts = [threading.Thread(target=work, args=(i,)) for i in range(6)]\n\
        [t.start() for t in ts]\n\
        [t.join() for t in ts]\n";
    run_in(
        &cg,
        std::path::Path::new("/usr/bin/python3"),
        &["-c", script],
    );
    let count = |page: &str, thread: bool| -> f64 {
        page.lines()
            .filter(|l| l.starts_with("spawnprof_spawns_total{comm=\"python3\""))
            .filter(|l| l.contains("method=\"thread\"") == thread)
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let settled = wait_for(Duration::from_secs(10), || {
        let page = serve.metrics();
        (count(&page, false) == 18.0).then_some(page)
    });
    let page = settled.unwrap_or_else(|| panic!("18 spawns as python3:\n{}", serve.metrics()));
    assert_eq!(count(&page, true), 6.0, "{page}");
    assert!(
        !page.contains("sp-worker"),
        "a thread's name as a label:\n{page}"
    );
    assert!(serve.stop().success(), "{}", serve.log_text());
}

/// `--label-by exec` names the program each child exec'd; a child that
/// does not exec (a fork-only worker, a thread) keeps its parent's name.
#[test]
fn labelled_by_exec_each_program_has_its_series() {
    require_root();
    let test = "serve-label-exec";
    let Some(cg) = cgroup_or_skip(test) else {
        return;
    };
    let mut serve = Serve::start(
        test,
        &["--cgroup", cg.path.to_str().unwrap(), "--label-by", "exec"],
    );
    let script = "import os, threading\n\
        run = lambda p: os.waitpid(os.posix_spawn(p, [p], {}), 0)\n\
        [run('/bin/true') for _ in range(5)]\n\
        [run('/bin/echo') for _ in range(4)]\n\
        for _ in range(3):\n    \
            pid = os.fork()\n    \
            if pid == 0:\n        os._exit(0)\n    \
            os.waitpid(pid, 0)\n\
        t = threading.Thread(target=lambda: None)\n\
        t.start()\n\
        t.join()\n";
    run_in(
        &cg,
        std::path::Path::new("/usr/bin/python3"),
        &["-c", script],
    );
    let spawns = |page: &str, comm: &str, thread: bool| -> f64 {
        let series = format!("spawnprof_spawns_total{{comm=\"{comm}\",");
        page.lines()
            .filter(|l| l.starts_with(&series))
            .filter(|l| l.contains("method=\"thread\"") == thread)
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let settled = wait_for(Duration::from_secs(10), || {
        let page = serve.metrics();
        (spawns(&page, "python3", true) == 1.0).then_some(page)
    });
    let page = settled.unwrap_or_else(|| panic!("python3's thread:\n{}", serve.metrics()));
    assert_eq!(spawns(&page, "true", false), 5.0, "{page}");
    assert_eq!(spawns(&page, "echo", false), 4.0, "{page}");
    assert_eq!(spawns(&page, "python3", false), 3.0, "{page}");
    let exec_of_true = page
        .lines()
        .filter(|l| l.starts_with("spawnprof_stage_duration_seconds_count{comm=\"true\""))
        .filter(|l| l.contains("stage=\"exec\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert_eq!(exec_of_true, 5.0, "{page}");
    promtool_accepts(&page);
    assert!(serve.stop().success(), "{}", serve.log_text());
}

#[test]
fn an_idle_comm_gives_its_label_to_one_counted_as_other() {
    require_root();
    let test = "serve-label-idle";
    let Some(cg) = cgroup_or_skip(test) else {
        return;
    };
    let (a, b) = (
        spawner_named(test, "sp-idle-a"),
        spawner_named(test, "sp-idle-b"),
    );
    let mut serve = Serve::start(
        test,
        &[
            "--cgroup",
            cg.path.to_str().unwrap(),
            "--top-k",
            "1",
            "--label-idle",
            "2s",
        ],
    );
    let spawns = |comm: &str| format!("spawnprof_spawns_total{{comm=\"{comm}\",method=\"fork\"}}");
    let reaches = |series: &str, n: u64| {
        let seen = wait_for(Duration::from_secs(20), || {
            sample(&serve.metrics(), series).filter(|v| *v as u64 == n)
        });
        assert!(seen.is_some(), "{series} != {n}:\n{}", serve.metrics());
    };
    let fork = |program: &std::path::Path, n: &str| {
        run_in(
            &cg,
            program,
            &["--method", "fork-exec", "--warmup", "0", "--count", n],
        )
    };
    fork(&a, "10");
    reaches(&spawns("sp-idle-a"), 10);
    std::thread::sleep(Duration::from_millis(2500));
    // b finds the one label taken; the scrape that sees it in `other`
    // frees a's, idle for 2.5 s.
    fork(&b, "5");
    reaches(&spawns("other"), 5);
    fork(&b, "7");
    reaches(&spawns("sp-idle-b"), 7);
    let page = serve.metrics();
    assert_eq!(sample(&page, &spawns("sp-idle-a")), None, "{page}");
    assert_eq!(sample(&page, &spawns("other")), Some(5.0), "{page}");
    assert_eq!(sample(&page, "spawnprof_labels_recycled_total"), Some(1.0));
    promtool_accepts(&page);
    assert!(serve.stop().success(), "{}", serve.log_text());
}

#[test]
fn only_misses_before_the_exec_count_as_a_path_search() {
    require_root();
    let test = "serve-path-search";
    let Some(cg) = cgroup_or_skip(test) else {
        return;
    };
    let named = spawner_named(test, "sp-paths");
    let mut serve = serve_in(test, &cg);
    let series = |name: &str, stage: &str| {
        let stage = if stage.is_empty() {
            String::new()
        } else {
            format!(",stage=\"{stage}\"")
        };
        format!("{name}{{comm=\"sp-paths\",method=\"fork\"{stage}}}")
    };
    let misses = series("spawnprof_path_misses_total", "");
    let searches = series("spawnprof_stage_duration_seconds_count", "path_search");
    let spawns = series("spawnprof_spawns_total", "");
    let fork = |args: &[&str]| {
        let common = ["--method", "fork-exec", "--warmup", "0", "--count", "5"];
        run_in(&cg, &named, &[&common[..], args].concat());
    };
    let after = |n: f64| {
        wait_for(Duration::from_secs(20), || {
            let page = serve.metrics();
            (sample(&page, &spawns) == Some(n)).then_some(page)
        })
        .unwrap_or_else(|| panic!("{n} spawns never counted:\n{}", serve.metrics()))
    };
    // The spawner's own exec searches PATH: 3 misses or more (the
    // directories before /usr/bin), then `true`.
    fork(&["--path-misses", "3", "--program", "true"]);
    let page = after(5.0);
    let searched = sample(&page, &misses).unwrap_or(0.0);
    assert!(searched >= 15.0, "{page}");
    assert_eq!(sample(&page, &searches), Some(5.0), "{page}");
    // It execs env by its path; env's own exec then misses as many.
    let env_true = ["--program", "/usr/bin/env", "--arg", "true"];
    fork(&[&["--path-misses", "3"][..], &env_true].concat());
    let page = after(10.0);
    assert_eq!(sample(&page, &misses), Some(searched), "{page}");
    assert_eq!(sample(&page, &searches), Some(5.0), "{page}");
    let time = series("spawnprof_stage_duration_seconds_sum", "path_search");
    assert!(sample(&page, &time).is_some_and(|s| s > 0.0), "{page}");
    assert!(serve.stop().success(), "{}", serve.log_text());
}

#[test]
fn bad_input_names_the_remedy() {
    require_root();
    let serve = |args: &[&str]| {
        let out = Command::new(spawnprof_bin())
            .arg("serve")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = serve(&["--cgroup", "/nonexistent/cgroup"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--cgroup /nonexistent/cgroup: no such directory"),
        "{err}"
    );
    let (code, err) = serve(&["--cgroup", "/tmp"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not in a cgroup v2 hierarchy"), "{err}");
    let (code, err) = serve(&["--top-k", "0"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = serve(&["--label-idle", "5 fortnights"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`off`"), "{err}");
    let (code, err) = serve(&["--cgroup-k", "4"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--cgroup-label"), "{err}");
    // The port is taken: the error says so, and nothing stays loaded.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = serve(&["--listen", &addr, "-p", &std::process::id().to_string()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--listen"), "{err}");
}

#[test]
fn the_dashboard_and_the_alert_rules_use_only_what_serve_exports() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let limits = spawnprof::probe::metrics::Labels {
        top_k: 32,
        cgroup_k: Some(8),
        by_exec: false,
    };
    let page =
        spawnprof::metrics::exposition::render(&spawnprof::metrics::Snapshot::default(), limits);
    let families: Vec<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let known = |name: &str| {
        families.iter().any(|f| {
            name == *f
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f))
        })
    };
    let names_in = |text: &str| -> Vec<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("spawnprof_"))
            .map(String::from)
            .collect()
    };
    let dashboard =
        std::fs::read_to_string(root.join("docs/serve/grafana-dashboard.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let exprs: Vec<&str> = json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    assert!(exprs.len() >= 8, "{exprs:?}");
    let alerts = std::fs::read_to_string(root.join("docs/serve/alerts.yml")).unwrap();
    for name in exprs
        .iter()
        .flat_map(|e| names_in(e))
        .chain(names_in(&alerts))
    {
        assert!(
            known(&name),
            "{name} is not a metric serve exports ({families:?})"
        );
    }
    let Some(_) = prometheus_bin() else {
        println!("SKIPPED: promtool check rules: Debian's prometheus package is not installed");
        return;
    };
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(root.join("docs/serve/alerts.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
