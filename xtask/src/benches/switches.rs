//! What a program on every context switch costs a machine that switches a
//! lot, whatever it spawns: a pipe ping-pong between two threads pinned to
//! CPU 0 (two switches a round trip), alone and under `serve --all` with
//! first runs from the scheduler's wait count (its default), with
//! `--first-run-per-switch`, and beside bpftrace timing the same stages,
//! in interleaved rounds.
use std::{
    fs::File,
    io::{Read as _, Write as _},
    os::fd::FromRawFd as _,
    path::Path,
    time::Instant,
};

use anyhow::{Result, bail};

use super::{
    median,
    peer_cost::{self, BPFTRACE_STAGES},
    serve_process::Serve,
};
use crate::cmd;

/// Round trips per run: about half a second here.
const TRIPS: u32 = 200_000;

/// What runs beside the ping-pong.
enum Setup {
    Alone,
    Serve(&'static [&'static str]),
    /// bpftrace timing the recording's stages, the first run among them
    /// on every context switch.
    Bpftrace,
}

const SETUPS: [(&str, Setup); 4] = [
    ("no probes", Setup::Alone),
    ("spawnprof serve --all", Setup::Serve(&["--all"])),
    (
        "spawnprof serve --all --first-run-per-switch",
        Setup::Serve(&["--all", "--first-run-per-switch"]),
    ),
    ("bpftrace, the same stages", Setup::Bpftrace),
];

pub(super) fn switch_cost(spawnprof: &Path, rounds: usize) -> Result<()> {
    let have_bpftrace = cmd::find_in_path("bpftrace").is_some();
    if !have_bpftrace {
        println!("SKIPPED: bpftrace beside the ping-pong (apt-get install bpftrace)");
    }
    let mut ns = vec![Vec::new(); SETUPS.len()];
    for round in 0..rounds {
        eprintln!(
            "bench-serve: context switches, round {} of {rounds}",
            round + 1
        );
        for (i, (_, setup)) in SETUPS.iter().enumerate() {
            match setup {
                Setup::Alone => ns[i].push(round_trip_ns()?),
                Setup::Serve(args) => {
                    let _serve = Serve::start(spawnprof, args)?;
                    ns[i].push(round_trip_ns()?);
                }
                Setup::Bpftrace if have_bpftrace => {
                    let mut bpftrace = peer_cost::start(BPFTRACE_STAGES)?;
                    let run = round_trip_ns();
                    let _ = bpftrace.kill();
                    let _ = bpftrace.wait();
                    ns[i].push(run?);
                }
                Setup::Bpftrace => {}
            }
        }
    }
    print_costs(&ns, rounds);
    Ok(())
}

fn print_costs(ns: &[Vec<f64>], rounds: usize) {
    println!(
        "pipe ping-pong, two threads on CPU 0, {TRIPS} round trips, median of {rounds} \
         interleaved rounds:\n"
    );
    println!("| setup | ns per round trip | time vs no probes |");
    println!("|---|---:|---:|");
    for ((name, _), runs) in SETUPS.iter().zip(ns) {
        if runs.is_empty() {
            continue;
        }
        let ratios: Vec<f64> = runs.iter().zip(&ns[0]).map(|(a, b)| a / b).collect();
        println!(
            "| {name} | {:.0} | {:.3} |",
            median(runs.clone()),
            median(ratios)
        );
    }
    println!();
}

/// Nanoseconds per round trip of one byte between two threads pinned to
/// CPU 0.
fn round_trip_ns() -> Result<f64> {
    let (mut ping_r, mut ping_w) = pipe()?;
    let (mut pong_r, mut pong_w) = pipe()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        pin_to_cpu0()?;
        let mut byte = [0u8];
        for _ in 0..TRIPS {
            ping_r.read_exact(&mut byte)?;
            pong_w.write_all(&byte)?;
        }
        Ok(())
    });
    let ping = std::thread::spawn(move || -> std::io::Result<f64> {
        pin_to_cpu0()?;
        let mut byte = [0u8];
        let start = Instant::now();
        for _ in 0..TRIPS {
            ping_w.write_all(&byte)?;
            pong_r.read_exact(&mut byte)?;
        }
        Ok(start.elapsed().as_nanos() as f64 / f64::from(TRIPS))
    });
    let ns = ping
        .join()
        .map_err(|_| anyhow::anyhow!("the ping thread panicked"))??;
    echo.join()
        .map_err(|_| anyhow::anyhow!("the echo thread panicked"))??;
    Ok(ns)
}

fn pipe() -> Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array it is given.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by nothing else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Pins the calling thread to CPU 0, so each round trip switches twice.
pub(super) fn pin_to_cpu0() -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays within it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
