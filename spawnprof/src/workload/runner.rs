//! One spawner run: validate, set up environment and memory, warm up, time
//! the spawn calls, reap (untimed), and summarise.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use anyhow::{Context, Result};

use super::config::{Config, HugePages, Method, Mode};
use super::cpus::CpuList;
use super::env;
use super::memory::{self, Ballast};
use super::methods::{Lane, Program};
use super::minimal::{self, MinimalChild};
use super::raw;
use super::result::{Latency, SpawnResult};
use super::zygote::Zygote;
use crate::{
    cli::UsageError,
    sys::{
        clock::{mono_ns, rusage_self},
        node,
    },
};

fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// What the timed part produced.
struct Measured {
    latencies: Vec<u64>,
    failed: u64,
    exit127: u64,
    total_ns: u64,
    t_start: u64,
    t_end: u64,
    cpu: (u64, u64),
    helper_cpu: Option<(u64, u64)>,
    helper_rss: Option<u64>,
}

/// Split `count` spawns over `threads` lanes as evenly as possible.
pub fn shares(count: u64, threads: u32) -> Vec<u64> {
    let t = u64::from(threads);
    (0..t)
        .map(|i| count / t + u64::from(i < count % t))
        .collect()
}

/// Run the workload described by `cfg` and return its result.
///
/// # Safety
/// Modifies the process environment and forks helpers: call it only while
/// the process is single-threaded (the spawner binary's `main`), once.
pub unsafe fn run(cfg: &Config) -> Result<SpawnResult> {
    cfg.validate().map_err(usage)?;
    // First, so that every thread, helper and child created below inherits it.
    if let Some(cpus) = &cfg.cpus {
        cpus.pin_current_thread().map_err(|e| {
            let allowed = CpuList::allowed().map_or("?".into(), |l| l.to_string());
            usage(format!(
                "--cpus {cpus}: the spawner cannot run there ({e}); it may run on CPUs {allowed}"
            ))
        })?;
    }
    let cpus_allowed = CpuList::allowed().ok();
    if matches!(cfg.method, Method::VforkExec | Method::Clone3Vfork) && !raw::SUPPORTED {
        return Err(usage(format!(
            "--method {} is only implemented on x86_64 and aarch64; use posix-spawn (glibc's own clone3/vfork path)",
            cfg.method
        )));
    }
    let vars = env::plan(cfg.env_count, cfg.env_bytes).map_err(usage)?;
    check_arg_max(cfg, &vars)?;
    memory::check_request(cfg.rss, cfg.huge_pages).map_err(usage)?;
    if cfg.mode == Mode::Batched {
        check_pid_room(cfg.count)?;
    }

    // SAFETY: the caller guarantees we are single-threaded.
    unsafe { env::apply(&vars, cfg.path_misses) };
    let path = std::env::var_os("PATH").unwrap_or_default();
    let minimal = if cfg.minimal_child {
        if !minimal::SUPPORTED {
            return Err(usage(
                "--minimal-child is implemented for x86_64 and aarch64; use --program",
            ));
        }
        let dir = std::env::temp_dir();
        Some(MinimalChild::create(&dir).context("writing the --minimal-child program")?)
    } else {
        None
    };
    let program = match &minimal {
        Some(m) => m.path().display().to_string(),
        None => cfg.program.clone(),
    };
    let resolved = env::resolve_program(&program, path.as_bytes()).map_err(usage)?;
    let prog = Program::new(&program, &cfg.args).context("preparing argv")?;
    let (environ_count, environ_bytes) = node::environment_size();

    // Zygotes fork now, before the ballast exists, so they stay small.
    let mut zygotes = Vec::new();
    if cfg.method == Method::Zygote {
        let exec = prog.exec_args();
        for _ in 0..cfg.threads {
            zygotes.push(Zygote::start(&exec).context("starting the zygote")?);
        }
    }

    let rss_baseline = memory::self_status("VmRSS").unwrap_or(0);
    let ballast = Ballast::allocate(cfg.rss, cfg.huge_pages).with_context(|| {
        format!(
            "allocating --rss {} ({})",
            crate::units::format_bytes(cfg.rss),
            cfg.huge_pages
        )
    })?;
    let rss_measured = memory::self_status("VmRSS").unwrap_or(0);
    let anon_huge_bytes = memory::self_anon_huge().unwrap_or(0);
    let hugetlb_bytes = memory::self_status("HugetlbPages").unwrap_or(0);
    if cfg.huge_pages == HugePages::Thp && cfg.rss > 0 && anon_huge_bytes < cfg.rss / 2 {
        eprintln!(
            "spawnprof-spawner: warning: only {} of the {} ballast is backed by transparent huge pages (fragmented memory? check /sys/kernel/mm/transparent_hugepage/defrag)",
            crate::units::format_bytes(anon_huge_bytes),
            crate::units::format_bytes(cfg.rss)
        );
    }

    if let Some(ms) = cfg.hold_ms {
        eprintln!(
            "spawnprof-spawner: pid {} holding {ms} ms before spawning",
            std::process::id()
        );
        std::thread::sleep(Duration::from_millis(ms));
    }

    let mut window_means = None;
    let mut m = if cfg.method.is_tokio() {
        run_tokio(cfg, &prog)?
    } else if cfg.method == Method::ForkChain {
        let (m, w) = run_chain(cfg)?;
        window_means = Some(w);
        m
    } else {
        run_sync(cfg, &prog, zygotes)?
    };
    drop(ballast);

    let latency = Latency::from_samples(&mut m.latencies);
    let path_entries = if path.is_empty() {
        0
    } else {
        path.as_bytes().split(|&b| b == b':').count() as u64
    };
    Ok(SpawnResult {
        method: cfg.method,
        count: cfg.count,
        warmup: cfg.warmup,
        threads: cfg.threads,
        mode: cfg.mode,
        reap: cfg.reap,
        rss_requested: cfg.rss,
        rss_mapped: if cfg.rss == 0 { 0 } else { rss_mapped(cfg) },
        rss_baseline,
        rss_measured,
        anon_huge_bytes,
        hugetlb_bytes,
        huge_pages: cfg.huge_pages,
        env_count: vars.len() as u64,
        env_bytes: env::bytes_of(&vars),
        environ_count,
        environ_bytes,
        program,
        program_resolved: resolved.display().to_string(),
        minimal_child: minimal.is_some(),
        args: cfg.args.clone(),
        path_misses: cfg.path_misses,
        path_entries,
        total_ns: m.total_ns,
        window_ns: m.t_end - m.t_start,
        spawns_per_sec: if m.total_ns == 0 {
            0.0
        } else {
            cfg.count as f64 * 1e9 / m.total_ns as f64
        },
        latency_ns: latency,
        parent_user_ns: m.cpu.0,
        parent_sys_ns: m.cpu.1,
        helper_user_ns: m.helper_cpu.map(|c| c.0),
        helper_sys_ns: m.helper_cpu.map(|c| c.1),
        helper_rss: m.helper_rss,
        failed_spawns: m.failed,
        children_exit_127: m.exit127,
        glibc_version: node::glibc_version(),
        kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        t_start_mono_ns: m.t_start,
        t_end_mono_ns: m.t_end,
        spawner_pid: std::process::id(),
        cpus_allowed,
        window_means_ns: window_means,
    })
}

/// The fork chain: a child of ours forks, exits, and its child does the
/// same, `warmup + count` times. Each parent times its own fork call and
/// sends the figure up a pipe before it exits; we are the subreaper that
/// collects the orphans. Before each fork the process dirties a page of a
/// scratch mapping, so each generation has anonymous memory of its own —
/// what made anon_vma chains grow without bound on kernels before 3.19.
fn run_chain(cfg: &Config) -> Result<(Measured, Vec<u64>)> {
    const SCRATCH: usize = 1 << 20;
    let total = cfg.warmup + cfg.count;
    // SAFETY: plain syscalls; the child side only forks, writes and exits.
    unsafe {
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error()).context("becoming the chain's subreaper");
        }
        let mut fds = [0; 2];
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error()).context("pipe");
        }
        let (rd, wr) = (fds[0], fds[1]);
        let mut scratch = vec![0u8; SCRATCH];
        let (cpu0, t_start) = (rusage_self(), mono_ns());
        let first = libc::fork();
        if first < 0 {
            return Err(std::io::Error::last_os_error()).context("fork");
        }
        if first == 0 {
            libc::close(rd);
            for i in 0..total {
                let page = (i as usize * 4096) % SCRATCH;
                std::ptr::write_volatile(&mut scratch[page], i as u8);
                let t0 = mono_ns();
                let pid = libc::fork();
                if pid > 0 {
                    let dt = mono_ns() - t0;
                    libc::write(wr, (&raw const dt).cast(), 8);
                    libc::_exit(0);
                }
                if pid < 0 {
                    let failed = u64::MAX;
                    libc::write(wr, (&raw const failed).cast(), 8);
                    libc::_exit(1);
                }
            }
            libc::_exit(0);
        }
        libc::close(wr);
        let mut samples = Vec::with_capacity(total as usize);
        let mut failed = 0;
        loop {
            let mut v = 0u64;
            let n = libc::read(rd, (&raw mut v).cast(), 8);
            if n != 8 {
                break;
            }
            if v == u64::MAX {
                failed += 1;
            } else {
                samples.push(v);
            }
            // Reap orphaned generations as we go, so zombies never pile up.
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
        }
        libc::close(rd);
        while libc::waitpid(-1, std::ptr::null_mut(), 0) > 0 {}
        let t_end = mono_ns();
        let cpu1 = rusage_self();
        let timed: Vec<u64> = samples.iter().skip(cfg.warmup as usize).copied().collect();
        let windows = timed
            .chunks(timed.len().div_ceil(10).max(1))
            .map(|w| w.iter().sum::<u64>() / w.len() as u64)
            .collect();
        let m = Measured {
            total_ns: timed.iter().sum(),
            latencies: timed,
            failed,
            exit127: 0,
            t_start,
            t_end,
            cpu: (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1),
            helper_cpu: None,
            helper_rss: None,
        };
        Ok((m, windows))
    }
}

fn rss_mapped(cfg: &Config) -> u64 {
    let page: u64 = match cfg.huge_pages {
        HugePages::None => 4096,
        HugePages::Thp => 2 << 20,
        HugePages::Hugetlb => std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| crate::sys::procfs::meminfo_field(&m, "Hugepagesize"))
            .unwrap_or(2 << 20),
    };
    cfg.rss.next_multiple_of(page)
}

/// exec fails with E2BIG when argv + envp (strings, NULs and pointers)
/// exceed ARG_MAX (a quarter of the stack rlimit).
fn check_arg_max(cfg: &Config, vars: &[(String, String)]) -> Result<()> {
    // SAFETY: sysconf has no preconditions.
    let arg_max = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
    if arg_max <= 0 {
        return Ok(());
    }
    let ptr = std::mem::size_of::<usize>() as u64;
    let (n, bytes) = node::environment_size();
    let extra_path: u64 = (0..cfg.path_misses)
        .map(|i| format!("/nonexistent/spawnprof-miss-{i}:").len() as u64)
        .sum();
    let argv: u64 = std::iter::once(&cfg.program)
        .chain(&cfg.args)
        .map(|a| a.len() as u64 + 1 + ptr)
        .sum();
    let need = bytes
        + n * (1 + ptr)
        + env::bytes_of(vars)
        + vars.len() as u64 * (1 + ptr)
        + extra_path
        + argv;
    if need > arg_max as u64 {
        return Err(usage(format!(
            "arguments plus environment would take {need} bytes, over exec's limit ARG_MAX = {arg_max} (a quarter of `ulimit -s`); lower --env-bytes/--env-count/--path-misses, or raise the stack limit (ulimit -s)"
        )));
    }
    Ok(())
}

/// Batched mode keeps every child as a zombie until the end: each holds a
/// pid, so the count must fit under kernel.pid_max (and RLIMIT_NPROC).
fn check_pid_room(count: u64) -> Result<()> {
    let read_u64 = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let tasks = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(3)?
                .split('/')
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    if let Some(pid_max) = read_u64("/proc/sys/kernel/pid_max")
        && count + tasks + 256 > pid_max
    {
        return Err(usage(format!(
            "--mode batched keeps all {count} children until the end, but kernel.pid_max is {pid_max} with {tasks} tasks running; use --mode serial, a smaller --count, or raise it as root: sysctl -w kernel.pid_max=4194304"
        )));
    }
    // SAFETY: geteuid/getrlimit have no preconditions; rl is a valid out-pointer.
    unsafe {
        if libc::geteuid() != 0 {
            let mut rl = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NPROC, &mut rl) == 0
                && rl.rlim_cur != libc::RLIM_INFINITY
                && count + tasks > rl.rlim_cur
            {
                return Err(usage(format!(
                    "--mode batched keeps all {count} children until the end, over RLIMIT_NPROC ({}); use --mode serial or a smaller --count, or raise `ulimit -u`",
                    rl.rlim_cur
                )));
            }
        }
    }
    Ok(())
}

struct LaneOut {
    latencies: Vec<u64>,
    failed: u64,
    exit127: u64,
    children: Vec<super::methods::Child>,
    spawn_sum: u64,
}

fn run_lane(lane: &mut Lane<'_>, n: u64, mode: Mode) -> LaneOut {
    let mut out = LaneOut {
        latencies: Vec::with_capacity(n as usize),
        failed: 0,
        exit127: 0,
        children: Vec::with_capacity(if mode == Mode::Batched { n as usize } else { 0 }),
        spawn_sum: 0,
    };
    for _ in 0..n {
        let pending = lane.prepare();
        let a = mono_ns();
        let o = lane.launch(pending);
        let b = mono_ns();
        out.latencies.push(b - a);
        out.spawn_sum += b - a;
        out.failed += u64::from(o.failed);
        if let Some(child) = o.child {
            match mode {
                Mode::Batched => out.children.push(child),
                Mode::Serial => out.exit127 += u64::from(lane.reap(child).unwrap_or(false)),
            }
        }
    }
    out
}

fn run_sync(cfg: &Config, prog: &Program, zygotes: Vec<Zygote>) -> Result<Measured> {
    let mut zygotes = zygotes.into_iter();
    let mut lanes = (0..cfg.threads)
        .map(|_| Lane::new(cfg.method, prog, zygotes.next()).map(|l| l.reaping_with(cfg.reap)))
        .collect::<std::io::Result<Vec<_>>>()
        .context("setting up the spawning threads")?;

    for _ in 0..cfg.warmup {
        let lane = &mut lanes[0];
        let p = lane.prepare();
        if let Some(c) = lane.launch(p).child {
            lane.reap(c).context("reaping a warmup child")?;
        }
    }

    let helper_cpu = |lanes: &mut [Lane<'_>]| -> Option<(u64, u64)> {
        let mut sum = (0, 0);
        for l in lanes.iter_mut() {
            let (u, s) = l.zygote_mut()?.rusage().ok()?;
            sum = (sum.0 + u, sum.1 + s);
        }
        Some(sum)
    };
    let helper_rss = lanes[0].zygote_mut().and_then(|z| z.rss().ok());
    let helper0 = helper_cpu(&mut lanes);

    let shares = shares(cfg.count, cfg.threads);
    let (outs, t_start, t_end, ru0, ru1) = if lanes.len() == 1 {
        let ru0 = rusage_self();
        let t0 = mono_ns();
        let out = run_lane(&mut lanes[0], shares[0], cfg.mode);
        let t1 = mono_ns();
        let ru1 = rusage_self();
        (vec![out], t0, t1, ru0, ru1)
    } else {
        let barrier = Barrier::new(lanes.len() + 1);
        std::thread::scope(|s| {
            let handles: Vec<_> = lanes
                .iter_mut()
                .zip(&shares)
                .map(|(lane, &n)| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        run_lane(lane, n, cfg.mode)
                    })
                })
                .collect();
            let ru0 = rusage_self();
            barrier.wait();
            let t0 = mono_ns();
            let outs: Vec<LaneOut> = handles
                .into_iter()
                .map(|h| h.join().expect("spawning thread panicked"))
                .collect();
            let t1 = mono_ns();
            let ru1 = rusage_self();
            (outs, t0, t1, ru0, ru1)
        })
    };
    let helper1 = helper_cpu(&mut lanes);

    let mut m = Measured {
        latencies: Vec::with_capacity(cfg.count as usize),
        failed: 0,
        exit127: 0,
        total_ns: match cfg.mode {
            Mode::Batched => t_end - t_start,
            Mode::Serial => outs.iter().map(|o| o.spawn_sum).max().unwrap_or(0),
        },
        t_start,
        t_end,
        cpu: (ru1.0 - ru0.0, ru1.1 - ru0.1),
        helper_cpu: helper0.zip(helper1).map(|(a, b)| (b.0 - a.0, b.1 - a.1)),
        helper_rss,
    };
    // Untimed: reap everything the batched lanes left behind.
    for (lane, out) in lanes.iter_mut().zip(outs) {
        m.latencies.extend(out.latencies);
        m.failed += out.failed;
        m.exit127 += out.exit127;
        for child in out.children {
            m.exit127 += u64::from(lane.reap(child).context("reaping a child")?);
        }
    }
    Ok(m)
}

struct TokioSpec {
    program: String,
    args: Vec<String>,
    blocking: bool,
}

/// One tokio spawn: the Command is built untimed, then `spawn()` is timed.
/// With `spawn_blocking` the timer runs inside the blocking closure: in
/// batched mode every spawn is queued at once, and the queueing delay would
/// otherwise swamp the spawn latency (the window still captures throughput).
async fn tokio_spawn_one(spec: Arc<TokioSpec>) -> (u64, std::io::Result<tokio::process::Child>) {
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args);
    if spec.blocking {
        tokio::task::spawn_blocking(move || {
            let a = mono_ns();
            let r = cmd.spawn();
            (mono_ns() - a, r)
        })
        .await
        .unwrap_or_else(|e| (0, Err(std::io::Error::other(e))))
    } else {
        let a = mono_ns();
        let r = cmd.spawn();
        (mono_ns() - a, r)
    }
}

fn exited_127(status: std::io::Result<std::process::ExitStatus>) -> bool {
    status.is_ok_and(|s| {
        let raw = s.into_raw();
        libc::WIFEXITED(raw) && libc::WEXITSTATUS(raw) == 127
    })
}

/// The seeds' async harness: batched mode submits one task per spawn to
/// the runtime at once and joins them all (timed), then awaits every
/// child (untimed); serial mode spawns, awaits the child (untimed), repeats.
fn run_tokio(cfg: &Config, prog: &Program) -> Result<Measured> {
    let rt = match cfg.method {
        Method::TokioMulti(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
    .context("building the tokio runtime")?;
    let spec = Arc::new(TokioSpec {
        program: prog.program.clone(),
        args: prog.args.clone(),
        blocking: cfg.method == Method::TokioSingleBlocking,
    });

    rt.block_on(async {
        for _ in 0..cfg.warmup {
            if let (_, Ok(mut c)) = tokio_spawn_one(spec.clone()).await {
                let _ = c.wait().await;
            }
        }
    });

    let n = cfg.count as usize;
    let ru0 = rusage_self();
    let t0 = mono_ns();
    // (latency, Ok(child to reap later) | Ok(None) already reaped | Err)
    type Spawned = (u64, std::io::Result<Option<tokio::process::Child>>);
    let (results, serial_sum, serial_127): (Vec<Spawned>, u64, u64) = match cfg.mode {
        Mode::Batched => {
            let results = rt.block_on(async {
                let handles: Vec<_> = (0..n)
                    .map(|_| tokio::spawn(tokio_spawn_one(spec.clone())))
                    .collect();
                let mut results = Vec::with_capacity(n);
                for h in handles {
                    let (lat, r) = h
                        .await
                        .unwrap_or_else(|e| (0, Err(std::io::Error::other(e))));
                    results.push((lat, r.map(Some)));
                }
                results
            });
            (results, 0, 0)
        }
        Mode::Serial => rt.block_on(async {
            let mut results = Vec::with_capacity(n);
            let (mut sum, mut e127) = (0, 0);
            for _ in 0..n {
                let (lat, mut r) = tokio_spawn_one(spec.clone()).await;
                sum += lat;
                if let Ok(c) = r.as_mut() {
                    e127 += u64::from(exited_127(c.wait().await));
                }
                results.push((lat, r.map(|_| None)));
            }
            (results, sum, e127)
        }),
    };
    let t1 = mono_ns();
    let ru1 = rusage_self();

    let mut m = Measured {
        latencies: Vec::with_capacity(n),
        failed: 0,
        exit127: serial_127,
        total_ns: match cfg.mode {
            Mode::Batched => t1 - t0,
            Mode::Serial => serial_sum,
        },
        t_start: t0,
        t_end: t1,
        cpu: (ru1.0 - ru0.0, ru1.1 - ru0.1),
        helper_cpu: None,
        helper_rss: None,
    };
    let mut children = Vec::new();
    for (lat, r) in results {
        m.latencies.push(lat);
        match r {
            Ok(Some(c)) => children.push(c),
            Ok(None) => {}
            Err(_) => m.failed += 1,
        }
    }
    rt.block_on(async {
        for mut c in children {
            m.exit127 += u64::from(exited_127(c.wait().await));
        }
    });
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_even() {
        assert_eq!(shares(10, 3), vec![4, 3, 3]);
        assert_eq!(shares(4, 4), vec![1, 1, 1, 1]);
        assert_eq!(shares(1000, 1), vec![1000]);
        assert_eq!(shares(7, 2).iter().sum::<u64>(), 7);
    }
}
