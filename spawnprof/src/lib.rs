//! spawnprof: a profiler for process creation.
//!
//! Data path: kernel probes (`spawnprof-ebpf`) emit marks → [`session`] loads
//! and attaches them following the [`plan`] chosen from the host's
//! [`capabilities`] → [`decode`] → [`correlate`] folds marks into
//! [`model::SpawnRecord`]s → [`analysis`] summarises → [`report`] writes
//! tables and files. [`record`] drives a recording; [`workload`] is the
//! reference spawner driven by `spawnprof bench`.

/// `eprintln!` that never panics. Rust's print macros panic when the write
/// fails, and a recording or a bench must not die because the terminal or
/// the pipe its messages went to is gone: what was recorded still has to
/// be written.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that never panics (see [`say!`]).
#[macro_export]
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

/// `print!` that never panics (see [`say!`]).
#[macro_export]
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

pub mod analysis;
pub mod bench;
pub mod capabilities;
pub mod cli;
pub mod correlate;
pub mod decode;
pub mod interrupt;
pub mod model;
pub mod node;
pub mod plan;
pub mod record;
pub mod report;
pub mod session;
pub mod stacks;
pub mod units;
pub mod workload;

/// The eBPF object built by build.rs.
pub const PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/spawnprof"));
