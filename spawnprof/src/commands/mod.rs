//! One module per subcommand: turn the parsed options into a call, make
//! it, print the result. Nothing here knows how spawns are traced.
pub mod bench;
pub mod compare;
pub mod diff;
pub mod probes;
pub mod record;
pub mod report;
pub mod serve;
pub mod top;

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use spawnprof::{
    cli::{ProbeArgs, UsageError, usage},
    probe::SessionOptions,
    sys::clock::local_stamp,
    units,
};

/// Set to 1 by `cargo xtask bench-overhead` to time the hooks alone
/// ([`SessionOptions::empty_programs`]).
pub const EMPTY_PROGRAMS_VAR: &str = "SPAWNPROF_BENCH_EMPTY_PROGRAMS";

/// The probe options, checked before anything is loaded (a bad value is a
/// usage error: exit status 2).
pub fn session_options(args: &ProbeArgs) -> Result<SessionOptions> {
    let ring = usage(units::parse_size(&args.ring_buffer).context("--ring-buffer"))?;
    if ring > 1 << 30 {
        let too_big = format!("--ring-buffer {} is larger than 1 GiB", args.ring_buffer);
        return Err(UsageError(too_big).into());
    }
    let opts = SessionOptions {
        no_fentry: args.no_fentry,
        no_kprobe: args.no_kprobe,
        no_raw_tracepoint: args.no_raw_tracepoint,
        ring_buffer_bytes: ring as u32,
        skip_stages: args.skip_stages.clone(),
        low_overhead: args.low_overhead,
        empty_programs: std::env::var_os(EMPTY_PROGRAMS_VAR).is_some_and(|v| v == "1"),
        ..SessionOptions::default()
    };
    usage(opts.validate())?;
    if opts.empty_programs {
        spawnprof::say!(
            "spawnprof: {EMPTY_PROGRAMS_VAR}=1: every tracepoint program returns at once, \
             so no spawn is recorded (a bench of the hooks alone)"
        );
    }
    Ok(opts)
}

/// `spawnprof-<kind>YYYYmmdd-HHMMSS` in the current directory.
fn default_out_dir(kind: &str) -> PathBuf {
    format!("spawnprof-{kind}{}", local_stamp()).into()
}

/// record and bench run on one thread: the reader is a single loop.
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
