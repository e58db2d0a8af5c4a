//! The reference spawner: a small separate process (`spawnprof-spawner`)
//! that creates N processes with one chosen [`Method`] and times only the
//! spawn calls; children are reaped outside the timed part, as in the
//! harness of Kobzol's "process spawning performance in Rust" post.
//!
//! * [`config`]: the parameters (a `clap::Args`), and [`spawner_args`] to
//!   build the command line for a config (used by `spawnprof bench`).
//! * [`methods`]: one way of creating a process per method; [`raw`] holds
//!   the inline-asm vfork/clone3 paths, [`zygote`] the fork helper.
//! * [`memory`]: the `--rss` ballast (4 KiB pages, THP or hugetlb).
//! * [`cpus`]: `--cpus`, the CPUs the spawner and its children may run on.
//! * [`env`]: extra environment variables, PATH misses, program lookup.
//! * [`runner`]: one run from setup to [`SpawnResult`].
//! * [`result`]: the JSON line the spawner prints (serde both ways).

pub mod config;
pub mod cpus;
pub mod env;
pub mod memory;
pub mod methods;
pub mod minimal;
pub mod raw;
pub mod result;
pub mod runner;
pub mod zygote;

use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;

pub use config::{Config, HugePages, Method, Mode, Reap, spawner_args};
pub use cpus::CpuList;
pub use result::{Latency, SpawnResult};
pub use runner::run;

/// Name of the spawner binary (next to `spawnprof` in the target dir).
pub const SPAWNER_BIN: &str = "spawnprof-spawner";

/// Keep stdout for the result line only: returns a close-on-exec duplicate
/// of the original stdout and points fd 1 at stderr, so anything the
/// spawned programs print lands on stderr and never corrupts the JSON.
/// Costs nothing per spawn (children simply inherit fd 1).
pub fn isolate_stdout() -> io::Result<File> {
    // SAFETY: plain fd manipulation on fds 1 and 2.
    unsafe {
        let saved = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if saved < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::dup2(2, 1) < 0 {
            let e = io::Error::last_os_error();
            libc::close(saved);
            return Err(e);
        }
        Ok(File::from_raw_fd(saved))
    }
}
