//! `spawnprof record`: a command or a running process, then the terminal
//! report.
use anyhow::{Context as _, Result};
use spawnprof::{
    cli::{RecordArgs, UsageError, usage},
    recorder::{self, RecordOptions, Target, interrupt},
    report::{breakdown, table},
    sys::term,
    units,
};

pub fn run(args: RecordArgs) -> Result<i32> {
    if args.follow && args.pid.is_none() {
        let alone = "--follow goes with -p PID (a running process's descendants); with -- CMD \
                     every descendant of CMD is recorded already";
        return Err(UsageError(alone.into()).into());
    }
    let target = match (args.pid, args.command.is_empty()) {
        (Some(pid), _) => Target::Pid(pid),
        (None, false) => Target::Command(args.command.clone()),
        (None, true) => {
            let nothing = "nothing to record: give `-p PID` or `-- CMD [ARGS...]`";
            return Err(UsageError(nothing.into()).into());
        }
    };
    let duration = usage(
        args.duration
            .as_deref()
            .map(units::parse_duration)
            .transpose()
            .context("--duration"),
    )?;
    let mut session = super::session_options(&args.probes)?;
    session.follow = args.follow;
    session.capture_args = args.capture_args;
    session.capture_env = args.capture_env;
    let out_dir = args
        .output
        .clone()
        .unwrap_or_else(|| super::default_out_dir(""));
    let sample_hz = args
        .sample_hz
        .unwrap_or(if args.probes.low_overhead { 0 } else { 999 });
    if sample_hz > 100_000 {
        return Err(UsageError(format!(
            "--sample-hz {sample_hz} is too high; use at most 100000 (999 is the default)"
        ))
        .into());
    }
    let opts = RecordOptions {
        duration,
        session,
        force: args.force,
        sample_hz,
        probe_cost: args.probe_cost,
        live: !args.no_live,
        ..RecordOptions::new(target, out_dir.clone())
    };
    let recording = super::runtime()?.block_on(recorder::record(opts))?;
    let s = &recording.summary;
    let width = term::width(&std::io::stderr());
    spawnprof::say_raw!(
        "{}",
        table::processes(&recording.records, args.rows, s.counts.processes(), width)
    );
    spawnprof::say!();
    spawnprof::say_raw!("{}", table::breakdown(&breakdown::of_summary(s), width));
    spawnprof::say!(
        "\n{} spawns ({} threads), {} execs, {} failed exec attempts, {} lost marks{}",
        s.counts.spawns,
        s.counts.threads,
        s.counts.execs,
        s.counts.failed_exec_attempts,
        s.lost_marks_total,
        if s.lost_marks_total > 0 {
            " — WARNING: the ring buffer overflowed; raise --ring-buffer"
        } else {
            ""
        }
    );
    if let Some(p) = &s.placement {
        spawnprof::say_raw!("{}", table::placement(p));
    }
    if let Some(cost) = &s.probe_cost {
        spawnprof::say!();
        spawnprof::say_raw!("{}", table::probe_cost(cost));
    }
    if !recording.unsaved.is_empty() {
        spawnprof::say!(
            "the report above is complete; the recording in {} is not",
            out_dir.display()
        );
        recording.saved()?;
    }
    spawnprof::say!("recording written to {}", out_dir.display());
    Ok(s.exit_code.unwrap_or(if s.interrupted {
        interrupt::EXIT_INTERRUPTED
    } else {
        0
    }))
}
