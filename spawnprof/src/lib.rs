//! spawnprof: a profiler for process creation.
//!
//! One folder per layer, each importing only those below it:
//!
//! ```text
//! main, cli     parse, dispatch, exit codes
//! commands      (bin) record, report, diff, bench, probes: options → call → print
//! bench         the node profile: sweeps of the reference spawner, recorded
//! recorder      a live recording: prepare → start → pump → finish
//! report        pure renderers of a saved recording
//! recording     the on-disk format: write, read, recover
//! trace         ring buffer → decode → reorder → correlate → SpawnRecord
//! serve, top    always-on metrics: the HTTP endpoint, the live view
//! metrics       snapshots of the kernel histograms, exposition, quantiles
//! probe         host checks, the attach plan, loading and attaching
//! model, analysis  SpawnRecord and its stages; statistics
//! workload      the reference spawner (its own binary)
//! sys, units    clocks, /proc, node facts; sizes and durations
//! ```

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
pub mod cli;
pub mod fleet;
pub mod metrics;
pub mod model;
pub mod probe;
pub mod recorder;
pub mod recording;
pub mod report;
pub mod serve;
pub mod sys;
pub mod top;
pub mod trace;
pub mod units;
pub mod workload;

/// The eBPF object built by build.rs.
pub const PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/spawnprof"));
