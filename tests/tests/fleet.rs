//! A fleet: `spawnprof bench` inside a real Slurm job (Debian's
//! slurmctld, slurmd and munge on loopback) and on the workers of a
//! HyperQueue local cluster, then `spawnprof compare` of those nodes and
//! of 1,000 synthetic ones made from a real bench.
use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use spawnprof::{
    bench::{BENCH_FILE, BenchReport, load_report},
    fleet::{self, FleetReport},
};
use spawnprof_tests::{out_dir, require_root, spawnprof_bin};

/// What each node's bench runs: enough for the figures the fleet tests
/// look at (posix_spawn and its environment, the wake-up on another CPU,
/// PATH misses) in about half a minute, without the overhead rounds.
const BENCH_ARGS: &[&str] = &[
    "bench",
    "--quick",
    "--experiments",
    "method-rss,placement,path",
    "--no-overhead",
];

fn find(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().unwrap().port()
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(15);
    format!("--- {}:\n{}", path.display(), lines[from..].join("\n"))
}

/// munged, slurmctld and slurmd, each in the foreground as our child,
/// stopped (SIGTERM, then waited for) when dropped.
struct Daemons {
    children: Vec<(&'static str, Child)>,
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            // SAFETY: kill has no memory preconditions; the pid is our child's.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

impl Daemons {
    fn start(&mut self, name: &'static str, cmd: &mut Command, log: &Path) {
        let out = std::fs::File::create(log).expect("a daemon log");
        let child = cmd
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} could not be started: {e}"));
        self.children.push((name, child));
    }

    /// Fails with the daemons' logs if one of them has exited.
    fn check_running(&mut self, logs: &[PathBuf]) {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let logs: Vec<String> = logs.iter().map(|l| tail(l)).collect();
                panic!("{name} exited ({status}):\n{}", logs.join("\n"));
            }
        }
    }
}

/// slurm.conf for one node on loopback, everything under `dir`, as root,
/// without cgroups or accounting.
fn slurm_conf(dir: &Path, node: &str, host: &str) -> String {
    let d = dir.display();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "ClusterName=spawnprof\nSlurmctldHost=localhost(127.0.0.1)\n\
         SlurmctldPort={}\nSlurmdPort={}\nSlurmUser=root\nSlurmdUser=root\n\
         AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={d}/munge.socket\n\
         StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
         SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
         SlurmctldLogFile={d}/slurmctld.log\nSlurmdLogFile={d}/slurmd.log\n\
         ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nSwitchType=switch/none\n\
         MpiDefault=none\nSelectType=select/linear\nSchedulerType=sched/builtin\n\
         JobCompType=jobcomp/none\nAccountingStorageType=accounting_storage/none\n\
         JobAcctGatherType=jobacct_gather/none\nReturnToService=2\n\
         NodeName={node} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={cpus} State=UNKNOWN\n\
         PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
        free_port(),
        free_port(),
    )
}

/// Waits until sinfo reports the node idle.
fn wait_idle(conf: &Path, node: &str, daemons: &mut Daemons, logs: &[PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        daemons.check_running(logs);
        let out = Command::new("sinfo")
            .args(["-h", "-o", "%T", "-n", node])
            .env("SLURM_CONF", conf)
            .output()
            .expect("run sinfo");
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if state == "idle" {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = logs.iter().map(|l| tail(l)).collect();
            panic!(
                "the Slurm node {node} did not become idle in 30 s (sinfo: {state:?}, {}):\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the host name")
        .trim()
        .to_string()
}

/// Starts munged, slurmctld and slurmd for one node on loopback.
fn start_slurm(dir: &Path, node: &str) -> (Daemons, PathBuf) {
    for program in ["munged", "mungekey", "slurmctld", "slurmd", "srun", "sinfo"] {
        assert!(
            find(program).is_some() || Path::new("/usr/sbin").join(program).is_file(),
            "{program} is not installed: `cargo xtask test` installs Debian's slurmctld, slurmd \
             and munge (or, as root: apt-get install -y slurmctld slurmd munge)"
        );
    }
    for sub in ["state", "spool"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let key = dir.join("munge.key");
    let status = Command::new("mungekey")
        .arg("--create")
        .arg(format!("--keyfile={}", key.display()))
        .status()
        .expect("run mungekey");
    assert!(status.success(), "mungekey --create failed: {status}");
    let conf = dir.join("slurm.conf");
    std::fs::write(&conf, slurm_conf(dir, node, &hostname())).unwrap();
    let logs: Vec<PathBuf> = ["munged.out", "slurmctld.log", "slurmd.log"]
        .iter()
        .map(|l| dir.join(l))
        .collect();
    let mut daemons = Daemons {
        children: Vec::new(),
    };
    let d = dir.display();
    daemons.start(
        "munged",
        Command::new("munged").args([
            "-F".to_string(),
            "--force".into(),
            format!("--socket={d}/munge.socket"),
            format!("--key-file={}", key.display()),
            format!("--log-file={d}/munged.log"),
            format!("--pid-file={d}/munged.pid"),
            format!("--seed-file={d}/munged.seed"),
        ]),
        &logs[0],
    );
    // slurmctld authenticates through munged's socket from its first call.
    let socket = dir.join("munge.socket");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    daemons.check_running(&logs);
    daemons.start(
        "slurmctld",
        Command::new("slurmctld")
            .args(["-D", "-i"])
            .env("SLURM_CONF", &conf),
        &dir.join("slurmctld.out"),
    );
    daemons.start(
        "slurmd",
        Command::new("slurmd")
            .args(["-D", "-N", node])
            .env("SLURM_CONF", &conf),
        &dir.join("slurmd.out"),
    );
    wait_idle(&conf, node, &mut daemons, &logs);
    (daemons, conf)
}

#[test]
fn a_bench_under_srun_keeps_the_slurm_job_and_node_ids() {
    require_root();
    let dir = out_dir("fleet-slurm");
    let slurm_dir = dir.join("slurm");
    std::fs::create_dir_all(&slurm_dir).unwrap();
    let node = "fleet-node1";
    let (_daemons, conf) = start_slurm(&slurm_dir, node);
    let shared = dir.join("shared");
    let pattern = format!("{}/%n", shared.display());
    let out = Command::new("srun")
        .args(["-N1", "-n1", "--time=10"])
        .arg(spawnprof_bin())
        .args(BENCH_ARGS)
        .args(["-o", &pattern])
        .env("SLURM_CONF", &conf)
        .stdin(Stdio::null())
        .output()
        .expect("run srun");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "srun spawnprof bench failed ({}):\n{stdout}\n{stderr}\n{}",
        out.status,
        tail(&slurm_dir.join("slurmd.log"))
    );
    // %n became Slurm's name for the node.
    let bench_dir = shared.join(node);
    assert!(
        bench_dir.join(BENCH_FILE).is_file(),
        "no {}/{BENCH_FILE}; the shared directory holds {:?}\n{stdout}",
        bench_dir.display(),
        std::fs::read_dir(&shared).map(|d| d.count()).ok()
    );
    let report = load_report(&bench_dir).unwrap();
    let ids = report.node.slurm.clone().expect("the Slurm ids recorded");
    let job: u64 = ids
        .job_id
        .as_deref()
        .and_then(|j| j.parse().ok())
        .unwrap_or_else(|| panic!("a numeric job id: {ids:?}"));
    assert!(job >= 1, "{ids:?}");
    assert_eq!(ids.node_name.as_deref(), Some(node), "{ids:?}");
    assert_eq!(ids.node_id.as_deref(), Some("0"), "{ids:?}");
    assert_eq!(ids.proc_id.as_deref(), Some("0"), "{ids:?}");
    assert_eq!(ids.cluster_name.as_deref(), Some("spawnprof"), "{ids:?}");
    assert_eq!(report.node.name(), node);
    assert!(
        stdout.contains(&format!("Slurm job {job}")),
        "the terminal names the job:\n{stdout}"
    );
}

/// One simulated node: its name, what wraps its command, its environment.
struct SimNode {
    name: &'static str,
    prefix: Vec<String>,
    env: BTreeMap<String, String>,
}

/// Four nodes that differ in one condition each from `base`.
fn sim_nodes() -> Vec<SimNode> {
    let path = std::env::var("PATH").unwrap_or_default();
    let missing: Vec<String> = (0..30)
        .map(|i| format!("/nonexistent/fleet-miss-{i}"))
        .collect();
    let taskset = find("taskset").expect("taskset (util-linux) pins the single-CPU node");
    vec![
        SimNode {
            name: "base",
            prefix: Vec::new(),
            env: BTreeMap::new(),
        },
        SimNode {
            name: "bigenv",
            prefix: Vec::new(),
            env: (0..2000)
                .map(|i| {
                    (
                        format!("FLEET_MODULE_VAR_{i}"),
                        format!("/opt/modules/{i}/lib"),
                    )
                })
                .collect(),
        },
        SimNode {
            name: "longpath",
            prefix: Vec::new(),
            env: BTreeMap::from([("PATH".into(), format!("{}:{path}", missing.join(":")))]),
        },
        SimNode {
            name: "pinned",
            prefix: vec![taskset.display().to_string(), "-c".into(), "0".into()],
            env: BTreeMap::new(),
        },
    ]
}

fn bench_argv(node: &SimNode, parent: &Path) -> Vec<String> {
    let mut argv = node.prefix.clone();
    argv.push(spawnprof_bin().display().to_string());
    argv.extend(BENCH_ARGS.iter().map(|s| s.to_string()));
    argv.extend([
        "--node-name".into(),
        node.name.into(),
        "-o".into(),
        format!("{}/%n", parent.display()),
    ]);
    argv
}

/// A python with hyperqueue: a venv under the target directory, made
/// (`pip install hyperqueue`) on first use.
fn hq_python(root: &Path) -> Result<PathBuf, String> {
    let venv = root.join("hq-venv");
    let python = venv.join("bin/python");
    let has_hq = |p: &Path| {
        Command::new(p)
            .args(["-c", "import hyperqueue"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has_hq(&python) {
        return Ok(python);
    }
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(format!(
                "{what} failed: {}",
                err.lines().last().unwrap_or("")
            ))
        }
    };
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv",
    )?;
    run(
        Command::new(venv.join("bin/pip")).args(["install", "-q", "hyperqueue"]),
        "pip install hyperqueue",
    )?;
    if has_hq(&python) {
        Ok(python)
    } else {
        Err("hyperqueue installed but cannot be imported".into())
    }
}

/// Runs the simulated nodes' benches through HyperQueue; `Err(reason)`
/// when HyperQueue cannot be used here (a failed bench panics).
fn run_on_hyperqueue(nodes: &[SimNode], parent: &Path, work: &Path) -> Result<(), String> {
    let root = work.parent().unwrap().parent().unwrap();
    let python = hq_python(root)?;
    let spec: Vec<serde_json::Value> = nodes
        .iter()
        .map(|n| {
            serde_json::json!({
                "name": n.name,
                "argv": bench_argv(n, parent),
                "env": n.env,
                "log": work.join(format!("{}.log", n.name)),
            })
        })
        .collect();
    let spec_path = work.join("spec.json");
    std::fs::write(&spec_path, serde_json::to_string(&spec).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/fleet_hq.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&spec_path)
        .arg(work.join("hq-server"))
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) => {
            println!("{}", text.trim());
            Ok(())
        }
        Some(3 | 4) => Err(text.trim().to_string()),
        _ => {
            let logs: Vec<String> = nodes
                .iter()
                .map(|n| tail(&work.join(format!("{}.log.err", n.name))))
                .collect();
            panic!(
                "a bench failed under HyperQueue ({}):\n{text}\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                logs.join("\n")
            )
        }
    }
}

/// The fallback: each node's bench run directly, one after another.
fn run_directly(nodes: &[SimNode], parent: &Path) {
    for n in nodes {
        let argv = bench_argv(n, parent);
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .envs(&n.env)
            .output()
            .expect("run spawnprof bench");
        assert!(
            out.status.success(),
            "bench of {} failed: {}",
            n.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The four simulated nodes' bench directories (under one parent), made
/// once for the tests that compare them.
fn simulated_fleet() -> &'static Path {
    static FLEET: OnceLock<PathBuf> = OnceLock::new();
    FLEET.get_or_init(|| {
        require_root();
        let work = out_dir("fleet-hq");
        let parent = work.join("nodes");
        std::fs::create_dir_all(&parent).unwrap();
        let nodes = sim_nodes();
        if let Err(reason) = run_on_hyperqueue(&nodes, &parent, &work) {
            println!(
                "HyperQueue is unusable here ({reason}): the simulated nodes' benches run directly instead"
            );
            run_directly(&nodes, &parent);
        }
        parent
    })
}

/// Runs `spawnprof compare DIRS -o OUT`: the report, what it printed and
/// its peak resident set (KiB).
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives its rusage
fn compare(dirs: &[&Path], out: &Path) -> (FleetReport, String, i64) {
    std::fs::create_dir_all(out).unwrap();
    let (stdout_path, stderr_path) = (out.join("compare.stdout"), out.join("compare.stderr"));
    let child = Command::new(spawnprof_bin())
        .arg("compare")
        .args(dirs)
        .arg("-o")
        .arg(out)
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("run spawnprof compare");
    // wait4 rather than wait: the rusage of this child alone.
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    // SAFETY: status and usage are valid for writes; the pid is our child's.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(rc, child.id() as i32, "wait4");
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "compare failed ({status}): {}\n{stdout}",
        std::fs::read_to_string(&stderr_path).unwrap()
    );
    (
        fleet::load(out).expect("fleet.json"),
        stdout,
        usage.ru_maxrss,
    )
}

/// The nodes flagged on `metric`, and the flags' reasons.
fn flagged_on<'a>(r: &'a FleetReport, metric: &str) -> Vec<(&'a str, &'a [String])> {
    r.flags
        .iter()
        .filter(|f| f.metric == metric)
        .map(|f| (f.node.as_str(), f.reasons.as_slice()))
        .collect()
}

#[test]
fn compare_flags_each_simulated_node_for_its_own_condition() {
    let parent = simulated_fleet();
    let out = parent.parent().unwrap().join("fleet");
    let (r, stdout, _) = compare(&[parent], &out);
    let names: Vec<&str> = r.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["base", "bigenv", "longpath", "pinned"], "{stdout}");

    let env = flagged_on(&r, "env_vars_per_spawn");
    assert_eq!(env.len(), 1, "{stdout}");
    assert_eq!(env[0].0, "bigenv", "{stdout}");
    assert!(
        env[0].1.iter().any(|w| w.starts_with("environment of 20")),
        "{stdout}"
    );

    let path = flagged_on(&r, "path_misses_per_spawn");
    assert_eq!(path.len(), 1, "{stdout}");
    assert_eq!(path[0].0, "longpath", "{stdout}");
    assert!(
        path[0]
            .1
            .iter()
            .any(|w| w.starts_with("PATH has 30 missing directories")),
        "{stdout}"
    );

    // With one CPU every node is pinned: nothing sets "pinned" apart.
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        check_pinned(&r, &stdout);
    } else {
        println!("note: one CPU here, so the pinned node's check is left out");
    }
    for f in r.flags.iter().filter(|f| f.node != "bigenv") {
        assert!(!f.text.contains("environment of"), "{}", f.text);
    }

    let html = std::fs::read_to_string(out.join(fleet::FLEET_HTML)).unwrap();
    for f in &r.flags {
        assert!(html.contains(&spawnprof::report::charts::escape(&f.text)));
    }
    let diff = std::fs::read_to_string(out.join(&r.diffs["bigenv"])).unwrap();
    assert!(
        diff.contains("fleet median") && diff.contains("bigenv"),
        "{diff}"
    );
}

/// Pinned to one CPU, no child can start on another: the wake-up figure
/// is missing, and the reason given is the pinning, for that node alone.
fn check_pinned(r: &FleetReport, stdout: &str) {
    let pinned: Vec<_> = r.flags.iter().filter(|f| f.node == "pinned").collect();
    let wake = pinned
        .iter()
        .find(|f| f.metric == "other_cpu_wait_ns")
        .unwrap_or_else(|| panic!("pinned is not flagged for its wake-up: {stdout}"));
    assert_eq!(wake.value, None, "{stdout}");
    assert!(
        wake.reasons.iter().any(|w| w.starts_with("pinned to 1 of")),
        "{stdout}"
    );
    // No other node is blamed on the pinning.
    for f in r.flags.iter().filter(|f| f.node != "pinned") {
        assert!(!f.text.contains("pinned to"), "{}", f.text);
    }
}

/// A copy of `base` as node `i` of a synthetic fleet: its times scaled by
/// a factor between 0.9 and 1.1; node0017 also has THP off and fork 3.1×
/// slower at every size.
fn synthetic(base: &BenchReport, i: usize) -> BenchReport {
    let mut r = base.clone();
    let name = format!("node{i:04}");
    r.node.node_name = Some(name.clone());
    r.node.hostname = name;
    let factor = 0.9 + 0.2 * ((i * 37) % 100) as f64 / 100.0;
    let slow_fork = i == 17;
    if slow_fork {
        r.node.thp_enabled = Some("never".into());
    }
    for c in &mut r.configs {
        let fork_rss = c.config.experiment == "method-rss"
            && c.config.spawner.method == spawnprof::workload::Method::ForkExec;
        let f = if slow_fork && fork_rss {
            factor * 3.1
        } else {
            factor
        };
        let l = &mut c.spawner.latency_ns;
        l.p50 = (l.p50 as f64 * f) as u64;
        l.mean *= f;
        c.spawner.spawns_per_sec /= f;
    }
    r
}

#[test]
fn compare_reads_a_thousand_nodes_and_names_the_slow_one() {
    let parent = simulated_fleet();
    let base = load_report(&parent.join("base")).expect("the base node's bench");
    let dir = out_dir("fleet-1000");
    let nodes = dir.join("nodes");
    for i in 0..1000 {
        let d = nodes.join(format!("node{i:04}"));
        std::fs::create_dir_all(&d).unwrap();
        let json = serde_json::to_string(&synthetic(&base, i)).unwrap();
        std::fs::write(d.join(BENCH_FILE), json).unwrap();
    }
    let started = Instant::now();
    let (r, stdout, peak_kib) = compare(&[&nodes], &dir.join("fleet"));
    let took = started.elapsed();
    println!(
        "compare of 1,000 nodes: {:.2} s, peak RSS {} MiB",
        took.as_secs_f64(),
        peak_kib / 1024
    );
    assert_eq!(r.nodes.len(), 1000);
    let slow = r
        .flags
        .iter()
        .find(|f| f.node == "node0017" && f.metric == "fork_ns_per_mib")
        .unwrap_or_else(|| panic!("node0017's fork is not flagged:\n{stdout}"));
    let ratio = slow.ratio.unwrap();
    assert!((2.5..4.0).contains(&ratio), "{}", slow.text);
    assert!(slow.text.ends_with("; THP never"), "{}", slow.text);
    assert!(
        !r.flags
            .iter()
            .any(|f| f.node != "node0017" && f.metric == "fork_ns_per_mib"),
        "the ±10% spread is not flagged:\n{stdout}"
    );
    // A row per node is all it keeps: far less than the benches' 100+ MB.
    assert!(peak_kib < 256 * 1024, "peak RSS {peak_kib} KiB");
    // "In seconds": a bound loose enough for a busy debug build (it took
    // 5.4 s on 2 vCPUs); the speed itself is measured by docs/BENCHMARKS.md.
    assert!(took < Duration::from_secs(60), "{took:?}");
    let _ = std::fs::remove_dir_all(&nodes);
}

#[test]
fn bad_fleet_input_is_refused_with_the_remedy() {
    let dir = out_dir("fleet-bad");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(spawnprof_bin())
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run spawnprof");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["compare", empty.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("holds no bench.json") && err.contains("spawnprof bench -o DIR"),
        "{err}"
    );
    let (code, err) = run(&["compare", "--threshold", "1", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a ratio above 1"), "{err}");
    // Checked before anything is loaded: no root needed to be told.
    let (code, err) = run(&["bench", "--quick", "-o", "shared/%j"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("%j is not a placeholder"), "{err}");
    assert!(!dir.join("shared").exists());
}

#[test]
fn the_fleet_page_renders_and_sorts_in_a_browser() {
    use spawnprof_tests::browser::{NO_CHROMIUM, Page, chromium, png_size, screenshot_dir};
    let Some(browser) = chromium() else {
        println!("{NO_CHROMIUM}");
        return;
    };
    let parent = simulated_fleet();
    let out = out_dir("fleet-browser");
    let (r, stdout, _) = compare(&[parent], &out);
    let page = out.join(fleet::FLEET_HTML).canonicalize().unwrap();
    let profile = out.join("chromium-profile");
    let at = |fragment| Page {
        browser: &browser,
        page: &page,
        fragment,
        profile: &profile,
    };
    let png = screenshot_dir().join("fleet.png");
    let bytes = at("").screenshot(&png, 1280, 2000);
    assert_eq!(png_size(&bytes), (1280, 2000));
    assert!(bytes.len() > 20_000, "a blank page would be tiny");
    // Sorted by the variables each child gets, largest first: bigenv leads.
    let dom = at("#sort=-env_vars_per_spawn").dom();
    let table = &dom[dom.find("id=\"node-table\"").expect("the node table")..];
    let first_row = &table[table.find("<tbody>").unwrap()..];
    let first_row = &first_row[..first_row.find("</tr>").unwrap()];
    assert!(first_row.contains(">bigenv<"), "{first_row}\n{stdout}");
    assert_eq!(r.nodes.len(), 4);
}
