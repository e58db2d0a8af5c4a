//! `--method fork-chain`: each generation forks the next and exits.

use anyhow::{Context, Result};

use super::{Clocks, Measured};
use crate::{sys::clock::mono_ns, workload::config::Config};

/// The fork chain: a child of ours forks, exits, and its child does the
/// same, `warmup + count` times. Each parent times its own fork call and
/// sends the figure up a pipe before it exits; we are the subreaper that
/// collects the orphans. Before each fork the process dirties a page of a
/// scratch mapping, so each generation has anonymous memory of its own —
/// what made anon_vma chains grow without bound on kernels before 3.19.
pub(super) fn run_chain(cfg: &Config) -> Result<Measured> {
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
        let start = Clocks::start();
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
        let end = Clocks::stop();
        let timed: Vec<u64> = samples.iter().skip(cfg.warmup as usize).copied().collect();
        let windows = timed
            .chunks(timed.len().div_ceil(10).max(1))
            .map(|w| w.iter().sum::<u64>() / w.len() as u64)
            .collect();
        Ok(Measured {
            total_ns: timed.iter().sum(),
            latencies: timed,
            failed,
            window_means: Some(windows),
            ..Measured::between(start, end)
        })
    }
}
