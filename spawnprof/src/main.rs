use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Parser as _;
use spawnprof::{
    bench::{self, BenchOptions},
    capabilities::Host,
    cli::{BenchArgs, Cli, Command, ProbeArgs, RecordArgs, UsageError, usage},
    interrupt::{self, InterruptedBeforeTracing},
    plan,
    record::{self, RecordOptions, Target},
    report::{export, files::OutputDir, table, unavailable_stages},
    session::{Session, SessionOptions},
    units,
};

fn main() -> ExitCode {
    // A panic unwinds through the recording, whose drops detach every probe
    // and flush spawns.jsonl; say so after the standard message.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        // Not eprintln!: a panic while panicking (stderr gone) aborts.
        spawnprof::say!(
            "spawnprof: this is a bug in spawnprof; please report it with the message above. \
             Every probe is detached as spawnprof unwinds, and the spawns recorded so far stay in spawns.jsonl."
        );
    }));
    let cli = Cli::parse();
    // Commands that only print end quietly on a closed pipe (`| head`, or
    // quitting `less`), as any Unix filter does. Record and bench keep
    // SIGPIPE ignored and print with say!, which never panics: a terminal
    // that went away must not cost a recording.
    if !matches!(cli.command, Command::Record(_) | Command::Bench(_)) {
        // SAFETY: restoring the default disposition before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Record(args) => run_record(args),
        Command::Probes(args) => run_probes(&args).map(|()| 0),
        Command::Bench(args) => run_bench(args),
        Command::Report { dir } => run_report(&dir).map(|()| 0),
        Command::Diff { a, b, output } => run_diff(&a, &b, &output).map(|t| {
            print!("{t}");
            eprintln!("differential flamegraphs written to {}", output.display());
            0
        }),
        Command::BenchReport { spawns } => run_bench_report(spawns).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        // say!, not eprintln!: the terminal may be gone (a closed pipe, a
        // hang-up), and a panic here would turn the exit status into 101.
        Err(e) if e.chain().any(|c| c.is::<InterruptedBeforeTracing>()) => {
            spawnprof::say!("spawnprof: {e:#}");
            ExitCode::from(interrupt::EXIT_INTERRUPTED as u8)
        }
        Err(e) if e.chain().any(|c| c.is::<UsageError>()) => {
            spawnprof::say!("spawnprof: error: {e:#}\n\nFor more information, try '--help'.");
            ExitCode::from(2)
        }
        Err(e) => {
            spawnprof::say!("spawnprof: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Two recordings, or two benches (node against node).
fn run_diff(a: &std::path::Path, b: &std::path::Path, out: &std::path::Path) -> Result<String> {
    use spawnprof::report::{bench_diff, diff};
    let out_dir = OutputDir::before_writing(out);
    let table = match (bench_diff::is_bench(a), bench_diff::is_bench(b)) {
        (true, true) => bench_diff::run(a, b, out)?,
        (false, false) => diff::run(a, b, out)?,
        (a_bench, _) => {
            let (bench, recording) = if a_bench { (a, b) } else { (b, a) };
            bail!(
                "{} is a bench and {} a recording: compare two benches (node against node) or two recordings",
                bench.display(),
                recording.display()
            )
        }
    };
    out_dir.hand_to_invoking_user()?;
    Ok(table)
}

/// The probe options, checked before anything is loaded (a bad value is a
/// usage error: exit status 2).
fn session_options(args: &ProbeArgs) -> Result<SessionOptions> {
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
        ..SessionOptions::default()
    };
    usage(opts.validate())?;
    Ok(opts)
}

fn run_probes(args: &ProbeArgs) -> Result<()> {
    let host = Host::probe()?;
    let session = Session::start(&host, &session_options(args)?)?;
    println!("kernel {}", host.kernel_release);
    print!("{}", plan::render(&session.plan));
    Ok(())
}

fn default_out_dir(kind: &str) -> std::path::PathBuf {
    let now = chrono_like_stamp();
    format!("spawnprof-{kind}{now}").into()
}

/// `YYYYmmdd-HHMMSS` in local time, without pulling in a date crate.
fn chrono_like_stamp() -> String {
    let t = unsafe { libc::time(std::ptr::null_mut()) };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&t, &mut tm) };
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

fn run_record(args: RecordArgs) -> Result<i32> {
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
    let mut session = session_options(&args.probes)?;
    session.follow = args.follow;
    session.capture_args = args.capture_args;
    session.capture_env = args.capture_env;
    let out_dir = args.output.clone().unwrap_or_else(|| default_out_dir(""));
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
        ..RecordOptions::new(target, out_dir.clone())
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let recording = rt.block_on(record::record(opts))?;
    let s = &recording.summary;
    spawnprof::say_raw!("{}", table::processes(&recording.records, args.rows));
    spawnprof::say!();
    spawnprof::say_raw!("{}", table::breakdown(&s.stages, &unavailable_stages(s)));
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

fn run_report(dir: &std::path::Path) -> Result<()> {
    let bench_file = dir.join(bench::BENCH_FILE);
    // The reports are written next to the recording or bench (checked first:
    // a killed recording's rebuild writes there too).
    if bench_file.exists() || dir.join(spawnprof::report::files::SPAWNS_FILE).exists() {
        spawnprof::report::files::ensure_writable(
            dir,
            &format!(
                "the reports are written into it; run as a user who may write there, or copy it \
                 first: cp -r {} /tmp/copy && spawnprof report /tmp/copy",
                dir.display()
            ),
        )?;
    }
    if bench_file.exists() {
        // A bench directory: redraw its charts from bench.json.
        let report = bench::load_report(dir)?;
        let out_dir = OutputDir::before_writing(dir);
        spawnprof::report::bench_charts::write(dir, &report)?;
        out_dir.hand_to_invoking_user()?;
        print!("{}", bench::render(&report));
        eprintln!("charts and bench.html written to {}", dir.display());
        return Ok(());
    }
    let summary = spawnprof::report::recover::summary(dir)?;
    if let Some(why) = &summary.unfinished {
        // Rebuilt from spawns.jsonl: saved, so every output below and a
        // later `spawnprof diff` read the rebuilt figures.
        eprintln!("warning: {why}");
        spawnprof::report::files::write_summary(dir, &summary)?;
    }
    if let Some(why) = &summary.spawns_incomplete {
        eprintln!(
            "warning: spawns.jsonl lacks some of the {} spawns counted: {why}",
            summary.counts.spawns
        );
    }
    let out_dir = OutputDir::before_writing(dir);
    // Stream the records: a recording can hold millions of spawns, and the
    // table shows only the first ones.
    let mut records = Vec::new();
    export::for_each_record(dir, |r| {
        records.push(r.clone());
        Ok(records.len() < 40)
    })?;
    for path in export::write_all_from_recording(dir)? {
        eprintln!("wrote {}", path.display());
    }
    out_dir.hand_to_invoking_user()?;
    print!("{}", table::processes(&records, 40));
    println!();
    print!(
        "{}",
        table::breakdown(&summary.stages, &unavailable_stages(&summary))
    );
    if let Some(p) = &summary.placement {
        print!("{}", table::placement(p));
    }
    Ok(())
}

/// `0,50,250` → counts; `None` when the option was not given.
fn count_list<T>(s: Option<&str>) -> Result<Option<Vec<T>>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    s.map(|s| {
        bench::parse_list(s, |v| {
            if v.trim().starts_with('-') {
                bail!("{v:?} is negative; counts are whole numbers of 0 or more");
            }
            v.parse::<T>()
                .map_err(|e| anyhow::anyhow!("{v:?} is not a whole number: {e}"))
        })
    })
    .transpose()
}

fn run_bench(args: BenchArgs) -> Result<i32> {
    let methods = usage(
        args.methods
            .as_deref()
            .map(|s| bench::parse_list(s, |m| m.parse().map_err(anyhow::Error::msg)))
            .transpose()
            .context("--methods"),
    )?;
    let rss = usage(
        args.rss
            .as_deref()
            .map(|s| bench::parse_list(s, units::parse_size))
            .transpose()
            .context("--rss"),
    )?;
    let env =
        usage(count_list::<u64>(args.env.as_deref()).context("--env (counts like 0,50,250)"))?;
    let path_misses = usage(
        count_list::<u32>(args.path_misses.as_deref()).context("--path-misses (counts like 0,14)"),
    )?;
    let experiments = usage(
        args.experiments
            .as_deref()
            .map(|s| bench::parse_list(s, bench::experiment_name))
            .transpose()
            .context("--experiments"),
    )?;
    let out_dir = args
        .output
        .clone()
        .unwrap_or_else(|| default_out_dir("bench-"));
    let opts = BenchOptions {
        out_dir: out_dir.clone(),
        quick: args.quick,
        methods,
        rss,
        env,
        path_misses,
        experiments,
        count: args.count,
        overhead: !args.no_overhead,
        force: args.force,
        session: session_options(&args.probes)?,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(bench::run(opts))?;
    spawnprof::out_raw!("{}", bench::render(&report));
    spawnprof::say!("bench written to {}", out_dir.display());
    Ok(if report.interrupted {
        interrupt::EXIT_INTERRUPTED
    } else {
        0
    })
}

fn run_bench_report(spawns: usize) -> Result<()> {
    let b = spawnprof::report::bench::bench_report_detailed(spawns)?;
    println!(
        "rendered every report of {} synthetic spawns: {:.2} s wall, {:.2} s CPU, peak RSS {}{}",
        b.spawns,
        b.wall.as_secs_f64(),
        b.cpu_s,
        units::format_bytes(b.peak_rss),
        if b.peak_reset {
            ""
        } else {
            " (includes writing the input)"
        }
    );
    Ok(())
}
