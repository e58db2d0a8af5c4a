//! One spawner run: validate, set up environment and memory, warm up, time
//! the spawn calls, reap (untimed), and summarise.

mod chain;
mod checks;
mod tokio_mode;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Barrier;
use std::time::Duration;

use anyhow::{Context, Result};

use self::{
    chain::run_chain,
    checks::{Checked, check, usage},
    tokio_mode::run_tokio,
};
use super::config::{Config, HugePages, Method, Mode};
use super::env;
use super::memory::{self, Ballast};
use super::methods::{Lane, Program};
use super::minimal::{self, MinimalChild};
use super::result::{Latency, SpawnResult};
use super::zygote::Zygote;
use crate::sys::{
    clock::{mono_ns, rusage_self},
    node,
    procfs::self_status,
};

/// What the timed part produced.
#[derive(Default)]
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
    /// The fork chain's mean fork time in each tenth of the chain.
    window_means: Option<Vec<u64>>,
}

impl Measured {
    /// A window from `start` to `end`, nothing counted in it yet.
    fn between(start: Clocks, end: Clocks) -> Self {
        Self {
            t_start: start.t,
            t_end: end.t,
            cpu: cpu_between(start.ru, end.ru),
            ..Self::default()
        }
    }
}

/// The monotonic clock and our CPU time (user, system ns) at one edge of
/// the timed part.
#[derive(Clone, Copy)]
struct Clocks {
    t: u64,
    ru: (u64, u64),
}

impl Clocks {
    /// CPU time first, then the clock, so that reading CPU time stays
    /// outside the timed window.
    fn start() -> Self {
        let ru = rusage_self();
        Self { t: mono_ns(), ru }
    }

    /// The clock first, then CPU time (outside the window again).
    fn stop() -> Self {
        let t = mono_ns();
        Self {
            t,
            ru: rusage_self(),
        }
    }
}

fn cpu_between(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
    (b.0 - a.0, b.1 - a.1)
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
    let checked = check(cfg)?;
    // SAFETY: the caller guarantees we are single-threaded.
    unsafe { env::apply(&checked.vars, cfg.path_misses) };
    let target = Target::find(cfg)?;
    // Zygotes fork now, before the ballast exists, so they stay small.
    let zygotes = start_zygotes(cfg, &target.prog)?;
    let (ballast, memory) = allocate_ballast(cfg)?;
    hold(cfg);
    let m = if cfg.method.is_tokio() {
        run_tokio(cfg, &target.prog)?
    } else if cfg.method == Method::ForkChain {
        run_chain(cfg)?
    } else {
        run_sync(cfg, &target.prog, zygotes)?
    };
    drop(ballast);
    Ok(summarise(cfg, checked, target, memory, m))
}

/// The program the run spawns, found with the environment already applied.
struct Target {
    /// PATH as the children get it (with the misses in front).
    path: OsString,
    /// Deletes the `--minimal-child` program when the run is over.
    minimal: Option<MinimalChild>,
    /// As given (or the minimal child's path).
    program: String,
    resolved: PathBuf,
    prog: Program,
    /// (variables, bytes) of the environment the children inherit.
    environ: (u64, u64),
}

impl Target {
    fn find(cfg: &Config) -> Result<Self> {
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
        Ok(Self {
            path,
            minimal,
            program,
            resolved,
            prog,
            environ: node::environment_size(),
        })
    }

    /// How many directories PATH has.
    fn path_entries(&self) -> u64 {
        if self.path.is_empty() {
            0
        } else {
            self.path.as_bytes().split(|&b| b == b':').count() as u64
        }
    }
}

/// One zygote per lane for `--method zygote`, none otherwise.
fn start_zygotes(cfg: &Config, prog: &Program) -> Result<Vec<Zygote>> {
    let mut zygotes = Vec::new();
    if cfg.method == Method::Zygote {
        let exec = prog.exec_args();
        for _ in 0..cfg.threads {
            zygotes.push(Zygote::start(&exec).context("starting the zygote")?);
        }
    }
    Ok(zygotes)
}

/// The spawner's memory around the ballast, as the result reports it.
struct MemoryFacts {
    rss_baseline: u64,
    rss_measured: u64,
    anon_huge_bytes: u64,
    hugetlb_bytes: u64,
    mappings: Option<u64>,
}

/// The `--rss` ballast and what it made of the spawner's memory; warns when
/// transparent huge pages back less than half of it.
fn allocate_ballast(cfg: &Config) -> Result<(Ballast, MemoryFacts)> {
    let rss_baseline = self_status("VmRSS").unwrap_or(0);
    let ballast = Ballast::allocate(cfg.rss, cfg.huge_pages).with_context(|| {
        format!(
            "allocating --rss {} ({})",
            crate::units::format_bytes(cfg.rss),
            cfg.huge_pages
        )
    })?;
    let facts = MemoryFacts {
        rss_baseline,
        rss_measured: self_status("VmRSS").unwrap_or(0),
        anon_huge_bytes: memory::self_anon_huge().unwrap_or(0),
        hugetlb_bytes: self_status("HugetlbPages").unwrap_or(0),
        mappings: memory::self_mappings(),
    };
    if cfg.huge_pages == HugePages::Thp && cfg.rss > 0 && facts.anon_huge_bytes < cfg.rss / 2 {
        eprintln!(
            "spawnprof-spawner: warning: only {} of the {} ballast is backed by transparent huge pages (fragmented memory? check /sys/kernel/mm/transparent_hugepage/defrag)",
            crate::units::format_bytes(facts.anon_huge_bytes),
            crate::units::format_bytes(cfg.rss)
        );
    }
    Ok((ballast, facts))
}

/// `--hold-ms`: time for a tracer to attach to this pid before the spawns.
fn hold(cfg: &Config) {
    if let Some(ms) = cfg.hold_ms {
        eprintln!(
            "spawnprof-spawner: pid {} holding {ms} ms before spawning",
            std::process::id()
        );
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// The result line: the run's parameters, what it set up, what it measured.
fn summarise(
    cfg: &Config,
    checked: Checked,
    target: Target,
    memory: MemoryFacts,
    mut m: Measured,
) -> SpawnResult {
    let latency = Latency::from_samples(&mut m.latencies);
    let path_entries = target.path_entries();
    SpawnResult {
        method: cfg.method,
        count: cfg.count,
        warmup: cfg.warmup,
        threads: cfg.threads,
        mode: cfg.mode,
        reap: cfg.reap,
        rss_requested: cfg.rss,
        rss_mapped: if cfg.rss == 0 { 0 } else { rss_mapped(cfg) },
        rss_baseline: memory.rss_baseline,
        rss_measured: memory.rss_measured,
        anon_huge_bytes: memory.anon_huge_bytes,
        hugetlb_bytes: memory.hugetlb_bytes,
        own_mappings: memory.mappings,
        huge_pages: cfg.huge_pages,
        env_count: checked.vars.len() as u64,
        env_bytes: env::bytes_of(&checked.vars),
        environ_count: target.environ.0,
        environ_bytes: target.environ.1,
        program: target.program,
        program_resolved: target.resolved.display().to_string(),
        minimal_child: target.minimal.is_some(),
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
        cpus_allowed: checked.cpus_allowed,
        window_means_ns: m.window_means,
    }
}

fn rss_mapped(cfg: &Config) -> u64 {
    let page: u64 = match cfg.huge_pages {
        HugePages::None => 4096,
        HugePages::Thp => 2 << 20,
        HugePages::Hugetlb => memory::hugetlb_page_size() as u64,
    };
    cfg.rss.next_multiple_of(page)
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

    let helper_rss = lanes[0].zygote_mut().and_then(|z| z.rss().ok());
    let helper0 = helper_cpu(&mut lanes);
    let (outs, start, end) = time_lanes(&mut lanes, &shares(cfg.count, cfg.threads), cfg.mode);
    let helper1 = helper_cpu(&mut lanes);

    let mut m = Measured {
        latencies: Vec::with_capacity(cfg.count as usize),
        total_ns: match cfg.mode {
            Mode::Batched => end.t - start.t,
            Mode::Serial => outs.iter().map(|o| o.spawn_sum).max().unwrap_or(0),
        },
        helper_cpu: helper0.zip(helper1).map(|(a, b)| cpu_between(a, b)),
        helper_rss,
        ..Measured::between(start, end)
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

/// The zygotes' CPU time (user, system ns) so far, summed; None without
/// zygotes (or when one cannot say).
fn helper_cpu(lanes: &mut [Lane<'_>]) -> Option<(u64, u64)> {
    let mut sum = (0, 0);
    for l in lanes.iter_mut() {
        let (u, s) = l.zygote_mut()?.rusage().ok()?;
        sum = (sum.0 + u, sum.1 + s);
    }
    Some(sum)
}

/// The timed part: one lane on this thread, or a thread per lane, all
/// released at once by a barrier (our CPU time is read before it, the
/// clock once it opens).
fn time_lanes(
    lanes: &mut [Lane<'_>],
    shares: &[u64],
    mode: Mode,
) -> (Vec<LaneOut>, Clocks, Clocks) {
    if lanes.len() == 1 {
        let start = Clocks::start();
        let out = run_lane(&mut lanes[0], shares[0], mode);
        let end = Clocks::stop();
        return (vec![out], start, end);
    }
    let barrier = Barrier::new(lanes.len() + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = lanes
            .iter_mut()
            .zip(shares)
            .map(|(lane, &n)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    run_lane(lane, n, mode)
                })
            })
            .collect();
        let ru = rusage_self();
        barrier.wait();
        let start = Clocks { t: mono_ns(), ru };
        let outs: Vec<LaneOut> = handles
            .into_iter()
            .map(|h| h.join().expect("spawning thread panicked"))
            .collect();
        (outs, start, Clocks::stop())
    })
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
