//! `spawnprof record`: a command or a running process, then the terminal
//! report.
use anyhow::{Context as _, Result};
use spawnprof::{
    cli::{RecordArgs, UsageError, usage},
    recorder::{self, RecordOptions, Target, interrupt},
    report::{breakdown, findings, html, table},
    sys::term,
    units,
};

/// What `timeout` exits with when it had to end the command.
const EXIT_TIMED_OUT: i32 = 124;

pub fn run(args: RecordArgs) -> Result<i32> {
    let opts = options(&args)?;
    let out_dir = opts.out_dir.clone();
    let recording = super::runtime()?.block_on(recorder::record(opts))?;
    print_report(&recording, args.rows);
    if !recording.unsaved.is_empty() {
        spawnprof::say!(
            "the report above is complete; the recording in {} is not",
            out_dir.display()
        );
        recording.saved()?;
    }
    spawnprof::say!("recording written to {}", out_dir.display());
    Ok(exit_status(&recording.summary))
}

/// The recording's options from the command line; values clap accepts but
/// spawnprof cannot use are usage errors.
fn options(args: &RecordArgs) -> Result<RecordOptions> {
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
    let sample_hz = args.sample_hz.unwrap_or(0);
    if sample_hz > 100_000 {
        return Err(UsageError(format!(
            "--sample-hz {sample_hz} is too high; use at most 100000 (999 is usual)"
        ))
        .into());
    }
    Ok(RecordOptions {
        duration,
        session,
        force: args.force,
        sample_hz,
        probe_cost: args.probe_cost,
        live: !args.no_live,
        ..RecordOptions::new(target, out_dir)
    })
}

/// The terminal report: the first processes, the stage breakdown, counts,
/// placement and cost.
fn print_report(recording: &recorder::Recorded, rows: usize) {
    let s = &recording.summary;
    let where_rest = match &s.spawns_incomplete {
        None => "all of them in spawns.jsonl",
        Some(_) => "spawns.jsonl is incomplete: see below",
    };
    let width = term::width(&std::io::stderr());
    let total = s.counts.processes();
    spawnprof::say_raw!(
        "{}",
        table::processes(&recording.records, rows, total, where_rest, width)
    );
    spawnprof::say!();
    spawnprof::say_raw!("{}", table::breakdown(&breakdown::of_summary(s), width));
    spawnprof::say!(
        "\n{} spawns ({} threads), {} execs{}, {} failed exec attempts, {} lost spawns",
        s.counts.spawns,
        s.counts.threads,
        s.counts.execs,
        s.counts.re_execs_note(),
        s.counts.failed_exec_attempts,
        s.lost_spawns,
    );
    if let Some(lost) = html::lost_note(s) {
        spawnprof::say!("WARNING: {lost}");
    }
    if let Some(p) = &s.placement {
        spawnprof::say_raw!("{}", table::placement(p));
    }
    for finding in findings::findings(s.hidden_costs.as_ref()) {
        spawnprof::say!("finding: {finding}");
    }
    if let Some(cost) = &s.probe_cost {
        spawnprof::say!();
        spawnprof::say_raw!("{}", table::probe_cost(cost));
    }
}

/// spawnprof's exit status: 130 for an interrupt, 124 when `--duration`
/// had to end the command (as `timeout` gives), else the command's own.
fn exit_status(s: &spawnprof::recording::Summary) -> i32 {
    if s.interrupted {
        return interrupt::EXIT_INTERRUPTED;
    }
    if s.timed_out {
        return EXIT_TIMED_OUT;
    }
    s.exit_code.unwrap_or(0)
}
