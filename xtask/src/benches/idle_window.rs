//! What serve's page-fault probe costs a machine where a forked parent
//! waits (PID 1 or a shell: its copy-on-write window stays open), whatever
//! it spawns: a loop of first-touch page faults pinned to CPU 0, alone and
//! under `serve --all` beside an idle `sh -c 'sleep & wait'`, once right
//! after that fork (the probe attached) and once the window has been quiet
//! for 5 s (serve parks the probe), in interleaved rounds (no probes
//! before and after serve's, averaged). The program
//! runs per fault are counted in a separate, shorter loop: the run-time
//! statistics must not be on while timing.
use std::{
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{
    median, peer_cost,
    serve_process::{Serve, get},
    switches::pin_to_cpu0,
};

/// 64 MiB touched page by page, this many times: some 0.8 s here.
const TOUCHES: usize = 30;
const REGION: usize = 64 << 20;
const PAGE: usize = 4096;

/// A shell that forked a sleeper and waits for it, in a process group of
/// its own, killed (both) when dropped.
struct IdleParent(Child);

impl IdleParent {
    fn start() -> Result<Self> {
        let child = Command::new("sh")
            .args(["-c", "sleep 600 & wait"])
            .process_group(0)
            .spawn()
            .context("starting sh")?;
        Ok(Self(child))
    }
}

impl Drop for IdleParent {
    fn drop(&mut self) {
        // SAFETY: signalling the process group we made.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

pub(super) fn fault_cost(spawnprof: &Path, rounds: usize) -> Result<()> {
    let (mut alone, mut fresh, mut quiet) = (Vec::new(), Vec::new(), Vec::new());
    let (mut runs_fresh, mut runs_quiet, mut parked) = (Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        eprintln!("bench-serve: page faults, round {} of {rounds}", round + 1);
        let before = ns_per_fault(TOUCHES)?;
        let serve = Serve::start(spawnprof, &["--all"])?;
        let parent = IdleParent::start()?;
        // Spawns without a fork: the mmap-lock probes park at 32.
        for _ in 0..80 {
            Command::new("/bin/true").stdout(Stdio::null()).status()?;
        }
        std::thread::sleep(Duration::from_millis(300));
        fresh.push(ns_per_fault(TOUCHES)?);
        runs_fresh.push(serve_runs_per_fault(&serve)?);
        let end = Instant::now() + Duration::from_secs(15);
        while parked_total(&serve) < 2.0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(200));
        }
        parked += usize::from(parked_total(&serve) >= 2.0);
        quiet.push(ns_per_fault(TOUCHES)?);
        runs_quiet.push(serve_runs_per_fault(&serve)?);
        drop((parent, serve));
        // Before and after: a host that drifts within the round weighs on
        // both sides.
        alone.push((before + ns_per_fault(TOUCHES)?) / 2.0);
    }
    let base = median(alone.clone());
    let ratio = |v: &[f64]| -> f64 { median(v.iter().zip(&alone).map(|(a, b)| a / b).collect()) };
    println!(
        "\npage faults under serve --all beside an idle forked parent (first touches of 64 MiB, \
         pinned to CPU 0), median of {rounds} interleaved rounds:\n\n\
         | setup | time per fault vs no probes | serve's program runs per fault |\n\
         |---|---:|---:|\n\
         | no probes | {base:.0} ns | |\n\
         | serve, right after the parent's fork | {:.3} | {:.2} |\n\
         | serve, once the window was quiet for 5 s | {:.3} | {:.2} |\n\n\
         the page-fault probe parked in {parked} of {rounds} rounds",
        ratio(&fresh),
        median(runs_fresh),
        ratio(&quiet),
        median(runs_quiet),
    );
    Ok(())
}

/// serve's `spawnprof_fork_probes_parked_total`.
fn parked_total(serve: &Serve) -> f64 {
    get(serve.port, "/metrics")
        .and_then(|(_, body)| {
            body.lines().find_map(|l| {
                l.strip_prefix("spawnprof_fork_probes_parked_total ")?
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0.0)
}

/// serve's BPF program runs during a short fault loop, per fault.
fn serve_runs_per_fault(serve: &Serve) -> Result<f64> {
    let _stats = peer_cost::Stats::on()?;
    let before = peer_cost::programs(serve.pid())?;
    ns_per_fault(5)?;
    let (runs, _) = peer_cost::since(serve.pid(), &before)?;
    Ok(runs as f64 / (5 * REGION / PAGE) as f64)
}

/// Nanoseconds per first-touch fault: `touches` times, a fresh 64 MiB
/// mapping written page by page (no huge pages), on a thread pinned to CPU 0.
fn ns_per_fault(touches: usize) -> Result<f64> {
    std::thread::spawn(move || -> Result<f64> {
        pin_to_cpu0()?;
        let start = Instant::now();
        for _ in 0..touches {
            touch_once()?;
        }
        let faults = touches * REGION / PAGE;
        Ok(start.elapsed().as_nanos() as f64 / faults as f64)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the fault thread panicked"))?
}

fn touch_once() -> Result<()> {
    // SAFETY: a private anonymous mapping of our own, written within its
    // length and unmapped before returning.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            REGION,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            bail!("mmap: {}", std::io::Error::last_os_error());
        }
        libc::madvise(p, REGION, libc::MADV_NOHUGEPAGE);
        let bytes = p.cast::<u8>();
        for off in (0..REGION).step_by(PAGE) {
            std::ptr::write_volatile(bytes.add(off), 1);
        }
        libc::munmap(p, REGION);
    }
    Ok(())
}
