use std::{process::ExitCode, time::Duration};

use anyhow::{Context as _, Result, bail};
use clap::Parser as _;
use spawnprof::{
    capabilities::Host,
    cli::{Cli, Command, ProbeArgs, RecordArgs},
    plan,
    record::{self, RecordOptions, Target},
    report::{files::load_recording, table},
    session::{Session, SessionOptions},
    units,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Record(args) => run_record(args),
        Command::Probes(args) => run_probes(&args).map(|()| 0),
        Command::Report { dir } => run_report(&dir).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("spawnprof: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn session_options(args: &ProbeArgs) -> Result<SessionOptions> {
    let ring = units::parse_size(&args.ring_buffer).context("--ring-buffer")?;
    if ring > 1 << 30 {
        bail!("--ring-buffer {} is larger than 1 GiB", args.ring_buffer);
    }
    Ok(SessionOptions {
        no_fentry: args.no_fentry,
        no_kprobe: args.no_kprobe,
        ring_buffer_bytes: ring as u32,
        ..SessionOptions::default()
    })
}

fn run_probes(args: &ProbeArgs) -> Result<()> {
    let host = Host::probe()?;
    let session = Session::start(&host, &session_options(args)?)?;
    println!("kernel {}", host.kernel_release);
    print!("{}", plan::render(&session.plan));
    Ok(())
}

fn default_out_dir() -> std::path::PathBuf {
    let now = chrono_like_stamp();
    format!("spawnprof-{now}").into()
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
        (None, true) => bail!("nothing to record: give `-p PID` or `-- CMD [ARGS...]`"),
    };
    let duration = args
        .duration
        .as_deref()
        .map(units::parse_duration)
        .transpose()
        .context("--duration")?;
    let mut session = session_options(&args.probes)?;
    session.follow = args.follow;
    let out_dir = args.output.clone().unwrap_or_else(default_out_dir);
    let opts = RecordOptions {
        target,
        out_dir: out_dir.clone(),
        duration,
        session,
        force: args.force,
        reorder_window: Duration::from_millis(20),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let recording = rt.block_on(record::record(opts))?;
    let s = &recording.summary;
    eprint!("{}", table::processes(&recording.records, args.rows));
    eprintln!();
    eprint!(
        "{}",
        table::breakdown(&s.stages, &record::unavailable_stages(s))
    );
    eprintln!(
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
    eprintln!("recording written to {}", out_dir.display());
    Ok(s.exit_code.unwrap_or(if s.interrupted { 130 } else { 0 }))
}

fn run_report(dir: &std::path::Path) -> Result<()> {
    let (summary, records) = load_recording(dir)?;
    print!("{}", table::processes(&records, 40));
    println!();
    print!(
        "{}",
        table::breakdown(&summary.stages, &record::unavailable_stages(&summary))
    );
    Ok(())
}
