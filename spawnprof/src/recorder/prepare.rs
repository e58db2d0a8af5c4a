//! Phase 1: everything that can fail before tracing starts. Privileges
//! first (without them nothing else is worth checking), then the output
//! directory, before any probe is loaded.
use anyhow::{Result, bail};

use super::{RecordOptions, Target, cost::CostMeter};
use crate::{
    probe::{Host, Session, SessionOptions},
    recording::{NewRecording, Recording},
    sys::procfs::tgid_of,
};

/// The target as the recording names it.
pub(super) struct CheckedTarget {
    /// The command line, or `pid N`.
    pub desc: String,
    /// The thread group of `-p PID`.
    pub existing_pid: Option<u32>,
}

/// Checks what is to be traced: a non-empty command, or a live user-space
/// process (its thread group, when given a thread's id).
pub(super) fn check_target(opts: &RecordOptions) -> Result<CheckedTarget> {
    if let Some(d) = opts.duration
        && d.is_zero()
    {
        bail!("--duration must be longer than zero");
    }
    Ok(match &opts.target {
        Target::Command(argv) if argv.is_empty() => bail!("no command given after `--`"),
        Target::Command(argv) => CheckedTarget {
            desc: command_desc(argv, opts.session.capture_args),
            existing_pid: None,
        },
        Target::Pid(pid) => CheckedTarget {
            desc: format!("pid {pid}"),
            existing_pid: Some(tgid_of(*pid)?),
        },
    })
}

/// The command as the recording names it: its program only, unless the
/// user asked for arguments to be kept (`--capture-args`): arguments can
/// hold secrets (`--password=…`).
fn command_desc(argv: &[String], capture_args: bool) -> String {
    match argv.len() - 1 {
        _ if capture_args => argv.join(" "),
        0 => argv[0].clone(),
        n => format!(
            "{} [{n} argument{} not recorded: --capture-args keeps them]",
            argv[0],
            if n == 1 { "" } else { "s" }
        ),
    }
}

/// Loaded probes and a checked output directory.
pub(super) struct Probes {
    pub host: Host,
    pub out: NewRecording,
    pub session: Session,
    /// The options the probes were loaded with (what is captured).
    pub session_opts: SessionOptions,
    pub cost: Option<CostMeter>,
    pub sampling: Sampling,
}

/// How stacks are sampled for stacks.svg.
pub(super) struct Sampling {
    /// Samples are being taken.
    pub active: bool,
    /// The memory maps of each exec'd process are read to symbolize its
    /// user frames.
    pub snapshot_maps: bool,
    /// What the summary says about it.
    pub note: String,
}

pub(super) fn load(opts: &RecordOptions) -> Result<Probes> {
    let host = Host::probe()?;
    let out = Recording::create(&opts.out_dir, opts.force)?;
    let mut session_opts = opts.session.clone();
    if matches!(opts.target, Target::Command(_)) {
        // Everything CMD starts is part of what the user asked to see.
        session_opts.follow = true;
    }
    // Stack sampling reads each new image's memory maps while it runs.
    session_opts.notices = opts.sample_hz > 0;
    let mut session = Session::start(&host, &session_opts)?;
    let cost = opts.probe_cost.then(CostMeter::start).transpose()?;
    let sampling = start_sampling(&mut session, &host, opts.sample_hz);
    Ok(Probes {
        host,
        out,
        session,
        session_opts,
        cost,
        sampling,
    })
}

/// Starts stack sampling at `hz` (0: off). A refusal is a warning: the
/// recording goes on without stacks.svg.
fn start_sampling(session: &mut Session, host: &Host, hz: u64) -> Sampling {
    let note = if hz == 0 {
        "off (--sample-hz 999 turns it on)".to_string()
    } else {
        match session.start_sampling(hz) {
            Ok(()) => format!("cpu-clock, {hz} Hz per CPU"),
            Err(e) => {
                crate::say!("spawnprof: warning: no stack samples (stacks.svg): {e:#}");
                format!("unavailable: {e:#}")
            }
        }
    };
    let active = hz > 0 && note.starts_with("cpu-clock");
    // User frames are symbolized from /proc/PID/maps, by the host pids the
    // probes report; a PID namespace's /proc does not show those.
    let snapshot_maps = active && host.pid_ns.is_none();
    let note = if active && !snapshot_maps {
        format!(
            "{note}; user frames not symbolized (spawnprof runs in a PID namespace, \
             whose /proc does not show the host pids)"
        )
    } else {
        note
    };
    Sampling {
        active,
        snapshot_maps,
        note,
    }
}
