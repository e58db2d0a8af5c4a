//! `spawnprof bench` and the reference spawner's controls.
use std::{path::Path, process::Command};

use serde_json::Value;
use spawnprof_tests::{diff, out_dir, require_root, spawner_bin, spawnprof_bin};

fn spawner_result(args: &[&str]) -> Value {
    let out = Command::new(spawner_bin())
        .args(args)
        .output()
        .expect("run the spawner");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON result line")
}

#[test]
fn the_rss_control_is_real() {
    for (req, bytes) in [("256M", 256u64 << 20), ("1G", 1 << 30)] {
        let r = spawner_result(&[
            "--method",
            "posix-spawn",
            "--rss",
            req,
            "--count",
            "3",
            "--warmup",
            "0",
        ]);
        let measured = r["rss_measured"].as_u64().unwrap() as f64;
        let baseline = r["rss_baseline"].as_u64().unwrap() as f64;
        let got = measured - baseline;
        assert!(
            (got - bytes as f64).abs() <= 0.05 * bytes as f64,
            "--rss {req}: VmRSS grew by {got} bytes"
        );
    }
}

/// `--cpus` pins the spawner, every thread and helper it starts and every
/// child: each child prints its own allowed CPUs.
#[test]
fn the_cpus_control_pins_the_spawner_and_its_children() {
    let allowed = spawnprof::workload::CpuList::allowed().expect("affinity");
    let cpu = allowed.cpus().last().expect("a CPU").to_string();
    let mut methods = vec!["fork-exec", "posix-spawn", "std", "tokio-multi-2", "zygote"];
    if cfg!(target_arch = "x86_64") {
        methods.extend(["vfork-exec", "clone3-vfork"]);
    }
    for method in methods {
        let out = Command::new(spawner_bin())
            .args([
                "--method", method, "--count", "2", "--warmup", "1", "--cpus", &cpu,
            ])
            .args([
                "--program",
                "/bin/grep",
                "--arg",
                "Cpus_allowed_list",
                "--arg",
            ])
            .arg("/proc/self/status")
            .output()
            .expect("run the spawner");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{method}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 3, "{method}: one line per child: {stderr}");
        for l in lines {
            assert_eq!(l, format!("Cpus_allowed_list:\t{cpu}"), "{method}");
        }
        let r: Value = serde_json::from_slice(&out.stdout).expect("result");
        assert_eq!(r["cpus_allowed"], cpu.as_str(), "{method}");
    }
    // Nonsense and CPUs the spawner may not use are refused, naming the fix.
    for (bad, says) in [
        ("3-1", "backwards"),
        ("1023", "cannot run there"),
        ("4095", "out of range"),
        ("x", "e.g."),
    ] {
        let out = Command::new(spawner_bin())
            .args(["--method", "std", "--count", "1", "--cpus", bad])
            .output()
            .expect("run the spawner");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--cpus {bad}: {stderr}");
        assert!(stderr.contains(says), "--cpus {bad}: {stderr}");
    }
}

#[test]
fn the_child_sees_the_requested_environment() {
    let inherited = std::env::vars_os().count() as u64;
    let out = Command::new(spawner_bin())
        .args([
            "--method",
            "std",
            "--env-count",
            "250",
            "--count",
            "1",
            "--warmup",
            "0",
        ])
        .args([
            "--program",
            "/bin/sh",
            "--arg=-c",
            "--arg=env | grep -c ^SPAWNPROF_ENV_ >&2",
        ])
        .output()
        .expect("run the spawner");
    assert!(out.status.success());
    // The child's stdout goes to the spawner's stderr; our sh printed there too.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().any(|l| l.trim() == "250"), "{err}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["environ_count"].as_u64(), Some(inherited + 250));
}

/// `bench.json` of a bench directory.
/// The most processes named spawnprof seen at once, sampled every 100 ms
/// until `done`.
fn most_spawnprof_processes(done: &std::sync::atomic::AtomicBool) -> usize {
    let mut most = 0;
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        let now = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "spawnprof")
            })
            .count();
        most = most.max(now);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    most
}

fn bench_json(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("bench.json")).unwrap()).unwrap()
}

/// One quick bench (a few minutes), checked part by part below.
#[test]
fn a_quick_bench_covers_every_configuration_with_stage_data() {
    require_root();
    let dir = out_dir("bench");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || most_spawnprof_processes(&done))
    };
    let out = Command::new(spawnprof_bin())
        .args(["bench", "--quick", "-o"])
        .arg(&dir)
        .output()
        .expect("run spawnprof bench");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = sampler.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let bench = bench_json(&dir);
    let configs = bench["configs"].as_array().expect("configs");
    // Each recording hands its probes to a holder process that detaches
    // them in the background: holders must go with their recordings (a
    // few at once, as detaching queues in the kernel), not pile up until
    // the bench ends (one per configuration: 29 before).
    assert!(
        most < configs.len() / 2,
        "{most} spawnprof processes at once during a bench of {} configurations",
        configs.len()
    );
    a_line_per_configuration_without_a_terminal(&stderr, configs.len());
    the_story_comes_first(&stdout);
    every_experiment_ran_with_stage_data(configs);
    placement_and_per_spawn_work_are_pinned(configs, &stdout);
    path_misses_and_fork_at_1_gib(configs);
    the_overhead_is_measured(&bench, &stdout);
    charts_and_page_are_written(&dir, &bench, configs);
    a_diff_against_itself_changes_nothing(&dir, configs);
}

/// stderr is a pipe here, as in CI: no progress bar, but a line per
/// configuration as it finishes.
fn a_line_per_configuration_without_a_terminal(stderr: &str, configs: usize) {
    for i in 1..=configs {
        assert!(
            stderr.contains(&format!("[{i}/{configs}] ")),
            "no progress line {i}/{configs}:\n{stderr}"
        );
    }
    assert!(stderr.contains("spawns/s, p50 "), "{stderr}");
}

/// The terminal summary opens with what the node showed, each finding
/// with the published figures, before the table of configurations.
fn the_story_comes_first(stdout: &str) {
    let at = |needle: &str| {
        stdout
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing:\n{stdout}"))
    };
    let story = at("what this node showed:");
    for finding in [
        "- fork cost per MiB of RSS: fork-exec: ",
        "- the THP factor: fork at 1 GiB",
        "- the cost per environment variable: ",
        "- the cost per missing PATH directory: ",
        "- what tracing cost: ",
    ] {
        assert!(at(finding) > story, "{finding}");
    }
    assert!(stdout.matches("    published: ").count() >= 5, "{stdout}");
    assert!(
        at("configuration ") > at("- what tracing cost"),
        "table after the story"
    );
}

fn every_experiment_ran_with_stage_data(configs: &[Value]) {
    let experiments: std::collections::BTreeSet<&str> = configs
        .iter()
        .filter_map(|c| c["config"]["experiment"].as_str())
        .collect();
    for e in ["method-rss", "thp", "env", "path", "tokio", "fork-chain"] {
        assert!(
            experiments.contains(e),
            "missing experiment {e}: {experiments:?}"
        );
    }
    for c in configs {
        let name = c["config"]["name"].as_str().unwrap();
        assert!(
            c["spawns_in_window"].as_u64().unwrap() > 0,
            "{name}: no spawns in the window"
        );
        assert!(
            c["stages"]["clone"]["count"].as_u64().unwrap() > 0,
            "{name}: no stage data"
        );
        assert!(
            c["spawner"]["spawns_per_sec"].as_f64().unwrap() > 0.0,
            "{name}"
        );
        assert!(
            !c["breakdown"].as_array().unwrap().is_empty(),
            "{name}: no breakdown"
        );
    }
}

fn placement_and_per_spawn_work_are_pinned(configs: &[Value], stdout: &str) {
    let cpus = spawnprof::workload::CpuList::allowed().expect("affinity");
    if cpus.cpus().len() <= 1 {
        println!("placement and pinning not checked: this test may run on one CPU only ({cpus})");
        return;
    }
    // Pinned, every child starts on its parent's CPU.
    let pinned = configs
        .iter()
        .find(|c| {
            c["config"]["experiment"] == "placement" && c["config"]["spawner"]["cpus"].is_string()
        })
        .expect("a pinned placement configuration");
    let p = &pinned["placement"];
    assert!(p["known"].as_u64().unwrap() > 0, "{p}");
    assert_eq!(p["other_cpu"], 0, "{p}");
    assert!(stdout.contains("placement (posix-spawn"), "{stdout}");
    // The environment and PATH cost work inside each spawn: measured
    // serially on one CPU, not drowned by children queueing for a CPU.
    for c in configs
        .iter()
        .filter(|c| ["env", "path"].contains(&c["config"]["experiment"].as_str().unwrap()))
    {
        let s = &c["config"]["spawner"];
        assert!(s["mode"] == "serial" && s["cpus"].is_string(), "{c}");
    }
}

fn path_misses_and_fork_at_1_gib(configs: &[Value]) {
    // Each added PATH miss is one more failed execve per spawn, on top of
    // the node's own misses.
    let failed = |name: &str| {
        configs
            .iter()
            .find(|c| c["config"]["name"] == name)
            .and_then(|c| c["failed_execs_per_spawn"].as_f64())
            .unwrap_or_else(|| panic!("{name}: no failed_execs_per_spawn"))
    };
    let added = failed("path/posix-spawn-misses14") - failed("path/posix-spawn-misses0");
    assert!(
        (added - 14.0).abs() < 0.5,
        "14 misses added {added} failed execs per spawn"
    );
    let fork_1g = configs
        .iter()
        .find(|c| c["config"]["name"] == "thp/fork-exec-1gib-none")
        .expect("fork at 1 GiB");
    assert_eq!(
        fork_1g["breakdown"][0]["stage"], "dup_mmap",
        "dup_mmap dominates a 1 GiB fork"
    );
}

fn the_overhead_is_measured(bench: &Value, stdout: &str) {
    assert!(
        bench["overhead"]["with_probes_spawns_per_sec"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // Pinned, so that no child waits for an idle CPU, with the spawn
    // call's p50 on both sides and the rounds' count.
    let overhead = &bench["overhead"];
    assert_eq!(overhead["rounds"], 3, "{overhead}");
    assert!(overhead["cpu"].is_u64(), "{overhead}");
    for side in ["without_probes_p50_ns", "with_probes_p50_ns"] {
        assert!(
            overhead[side].as_f64().is_some_and(|ns| ns > 1_000.0),
            "{side}: {overhead}"
        );
    }
    assert!(stdout.contains("the spawn call's p50"), "{stdout}");
    // The robust figure: the probes' own run time per spawn (BPF stats).
    let probe_ns = bench["overhead"]["probe_ns_per_spawn"].as_f64();
    assert!(probe_ns.is_some_and(|ns| ns > 0.0), "{}", bench["overhead"]);
    assert!(bench["node"]["glibc_version"].is_string());
    assert!(stdout.contains("probe overhead"), "{stdout}");
    assert!(stdout.contains("probe run time in the kernel"), "{stdout}");
}

fn charts_and_page_are_written(dir: &Path, bench: &Value, configs: &[Value]) {
    for chart in [
        "bench-rss.svg",
        "bench-env.svg",
        "bench-path.svg",
        "bench-tokio.svg",
        "bench-fork-chain.svg",
        "bench-stages.svg",
        "bench-thp.svg",
    ] {
        let svg =
            std::fs::read_to_string(dir.join(chart)).unwrap_or_else(|e| panic!("{chart}: {e}"));
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{chart}");
    }
    // The RSS axis is ticked at the sizes measured, as the table names them.
    let rss = std::fs::read_to_string(dir.join("bench-rss.svg")).unwrap();
    assert!(rss.contains(">256 MiB</text>"), "a tick at 256 MiB");
    // Stacked bars are the spawner's own mean call: the stages inside the
    // clone syscall and the rest outside it, as shares of each method's.
    let stages = std::fs::read_to_string(dir.join("bench-stages.svg")).unwrap();
    assert!(stages.contains("share of the spawn call (%)"));
    for c in configs.iter().filter(|c| {
        c["config"]["experiment"] == "method-rss" && c["config"]["spawner"]["rss"] == 256 << 20
    }) {
        let mean = c["spawner"]["latency_ns"]["mean"].as_f64().unwrap();
        let shown = spawnprof::units::format_ns(mean.round() as u64);
        assert!(
            stages.contains(&format!(">{shown}</text>")),
            "{shown} on top of a bar"
        );
    }
    let html = std::fs::read_to_string(dir.join("bench.html")).unwrap();
    assert!(
        html.contains("Spawn time vs resident memory")
            && !html.contains("src=\"http")
            && !html.contains("<link"),
        "self-contained"
    );
    // When and by what it was taken, for a page read away from the node.
    assert!(
        bench["start_unix_s"]
            .as_u64()
            .is_some_and(|t| t > 1_700_000_000)
    );
    assert!(
        html.contains("quick sweep") && html.contains(" UTC") && html.contains("spawnprof 0."),
        "bench.html says when and by what it was taken"
    );
    // The findings first, the sortable table after them.
    let findings = html.find("id=\"fork-per-mib\"").expect("the fork finding");
    let table = html
        .find("id=\"config-table\" class=\"sortable\"")
        .expect("the table");
    assert!(findings < table);
    bench_html_in_chromium(dir);
    // A row per configuration, linked to its own recording's report.
    for c in configs {
        let recording = c["recording"].as_str().unwrap();
        assert!(
            html.contains(&format!("<a href=\"{recording}/report.html\">")),
            "bench.html does not link {recording}"
        );
        assert!(
            dir.join(recording).join("report.html").is_file(),
            "{recording}"
        );
    }
}

/// bench.html in a real browser: screenshot kept in target/screenshots,
/// the findings shown, the table sorted by the spawn rate.
fn bench_html_in_chromium(dir: &Path) {
    use spawnprof_tests::browser::{NO_CHROMIUM, Page, chromium, screenshot_dir};
    let Some(browser) = chromium() else {
        println!("{NO_CHROMIUM}");
        return;
    };
    let page_path = dir.join("bench.html").canonicalize().unwrap();
    let profile = dir.join("chromium-profile");
    let page = |fragment| Page {
        browser: &browser,
        page: &page_path,
        fragment,
        profile: &profile,
    };
    let png = screenshot_dir().join("bench.png");
    let bytes = page("").screenshot(&png, 1280, 3200);
    assert!(
        bytes.len() > 30_000,
        "a page of findings and charts: {} bytes",
        bytes.len()
    );
    let dom = page("#sort=-rate").dom();
    assert!(dom.contains("What this node showed"));
    let rates: Vec<f64> = dom[dom.find("id=\"config-table\"").unwrap()..]
        .split("<tr>")
        .skip(2)
        .filter_map(|row| {
            let v = row.split("data-v=\"").nth(1)?;
            v[..v.find('"')?].parse().ok()
        })
        .collect();
    assert!(rates.len() > 10, "{rates:?}");
    assert!(
        rates.windows(2).all(|w| w[0] >= w[1]),
        "sorted by rate: {rates:?}"
    );
    println!("bench.html screenshot: {}", png.display());
}

/// Node against node: the bench against itself changes nothing.
fn a_diff_against_itself_changes_nothing(dir: &Path, configs: &[Value]) {
    let diff_dir = out_dir("bench-diff");
    let table = diff(dir, dir, &diff_dir);
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| {
            configs
                .iter()
                .any(|c| l.starts_with(c["config"]["name"].as_str().unwrap()))
        })
        .collect();
    assert_eq!(rows.len(), configs.len(), "{table}");
    for row in rows {
        assert!(row.contains(" 1.00× "), "{row}");
        assert!(row.ends_with(" 0 ns"), "{row}");
    }
    let svg = std::fs::read_to_string(diff_dir.join("diff.svg")).expect("diff.svg");
    assert!(
        svg.contains("method-rss/fork-exec-rss0"),
        "a root frame per configuration"
    );
}

/// Starts `spawnprof bench --quick` of `experiments` in a process group of
/// its own and returns once it records its second configuration (so the
/// first finished): the bench, its group and that configuration's directory.
fn bench_in_its_second_configuration(
    dir: &std::path::Path,
    experiments: &str,
) -> (std::process::Child, i32, std::path::PathBuf) {
    use std::os::unix::process::CommandExt as _;
    require_root();
    let mut bench = Command::new(spawnprof_bin())
        .args(["bench", "--quick", "--experiments", experiments, "-o"])
        .arg(dir)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start spawnprof bench");
    let group = bench.id() as i32;
    let second = dir.join("method-rss/fork-exec-rss256mib");
    let start = std::time::Instant::now();
    while !second.join("spawns.jsonl").exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "the bench never reached its second configuration"
        );
        assert!(bench.try_wait().unwrap().is_none(), "the bench ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (bench, group, second)
}

/// A Ctrl-C at the terminal (SIGINT to the whole process group, spawner
/// included) in the middle of the sweep: the bench stops, writes what
/// finished marked as interrupted, exits 130 and leaves no spawner behind.
#[test]
fn a_ctrl_c_mid_sweep_keeps_the_finished_configurations() {
    let dir = out_dir("bench-interrupted");
    let (bench, group, _) = bench_in_its_second_configuration(&dir, "method-rss,env");
    // SAFETY: signalling the process group we made.
    unsafe { libc::kill(-group, libc::SIGINT) };
    let out = bench.wait_with_output().expect("wait");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(stdout.contains("INTERRUPTED"), "{stdout}");
    let bench = bench_json(&dir);
    assert_eq!(bench["interrupted"], true);
    assert!(bench["unfinished"].is_null(), "the final bench.json");
    let configs = bench["configs"].as_array().expect("configs");
    assert!(
        !configs.is_empty() && configs.len() < 4,
        "the first configuration and not the whole sweep: {}",
        configs.len()
    );
    assert!(bench["overhead"].is_null());
    assert!(dir.join("bench.html").exists());
    // Nothing of the group is left running (the spawner included).
    // SAFETY: a signal-0 probe of the group.
    let alive = unsafe { libc::kill(-group, 0) } == 0;
    assert!(!alive, "a process of the bench outlived it");
}

/// A bench killed where no handler runs (SIGKILL, the OOM killer) keeps
/// bench.json as it stood after the last finished configuration, marked
/// unfinished, and the configuration it was recording can be rebuilt.
#[test]
fn a_killed_bench_keeps_the_finished_configurations() {
    let dir = out_dir("bench-killed");
    let (mut bench, group, second) = bench_in_its_second_configuration(&dir, "method-rss");
    bench.kill().expect("SIGKILL spawnprof bench");
    bench.wait().expect("reap spawnprof bench");
    // The spawner it was recording has no one to stop it now.
    // SAFETY: signalling the process group we made.
    unsafe { libc::kill(-group, libc::SIGKILL) };

    let saved = bench_json(&dir);
    assert_eq!(saved["unfinished"], true);
    assert_eq!(
        saved["configs"].as_array().map(Vec::len),
        Some(1),
        "the first one"
    );
    let report = |d: &std::path::Path| {
        Command::new(spawnprof_bin())
            .arg("report")
            .arg(d)
            .output()
            .expect("run spawnprof report")
    };
    let out = report(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("UNFINISHED"), "{stdout}");
    assert!(dir.join("bench.html").exists());
    let out = report(&second);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(second.join("report.html").exists());
}
