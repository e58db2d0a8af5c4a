//! `spawnprof serve`: the probes with metrics on, and an HTTP endpoint
//! serving them to Prometheus. start (load, attach, scope) → listen →
//! serve until SIGTERM/SIGINT/SIGHUP → stop (dropping the probes detaches
//! every program; the kernel would do the same if we died).
pub mod http;
pub mod live;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, Result};
use tokio::signal::unix::{SignalKind, signal};

pub use live::{Live, Target};

use crate::{
    metrics::exposition,
    probe::{SessionOptions, metrics::Labels},
};
use http::Response;

pub struct ServeOptions {
    pub listen: SocketAddr,
    pub target: Target,
    pub labels: Labels,
    /// Free a label idle this long (zero: never).
    pub label_idle: std::time::Duration,
    pub probes: SessionOptions,
}

/// Runs until a stop signal; returns the signal's name.
pub async fn run(opts: ServeOptions) -> Result<&'static str> {
    let stop = StopSignals::new()?;
    // Bound first, so a port in use fails before anything is loaded; no
    // connection is accepted (so /ready answers) until the probes are up.
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {}: is another serve (or exporter) on that port? pick another \
                 with --listen ADDR:PORT",
                opts.listen
            )
        })?;
    let mut live = Live::start(&opts.target, opts.labels, &opts.probes)?;
    crate::sys::release_freed_heap();
    live.recycle_labels_after(opts.label_idle);
    crate::say!(
        "spawnprof serve: {} on http://{}/metrics (ready at /ready), {}; metrics maps at most {} \
         ({} comm labels{}{})",
        describe(&opts.target),
        listener.local_addr()?,
        attached_summary(&live),
        crate::units::format_bytes(crate::probe::metrics::max_bytes(opts.labels)),
        opts.labels.top_k,
        if opts.labels.by_exec {
            ", naming the exec'd programs"
        } else {
            ""
        },
        opts.labels
            .cgroup_k
            .map_or(String::new(), |k| format!(", {k} cgroup labels"))
    );
    let live = Arc::new(Mutex::new(live));
    let handler = {
        let live = live.clone();
        move |path: &str| respond(&live, path)
    };
    let signal = tokio::select! {
        () = http::serve(listener, handler) => "listener closed",
        e = keep_fork_probes(live.clone()) => return Err(e),
        s = stop.wait() => s,
    };
    crate::say!("spawnprof serve: {signal}, detaching the probes");
    drop(live);
    Ok(signal)
}

/// Every 50 ms (one map read), parks the fork-only probes while nothing
/// forks and brings them back at a fork ([`crate::probe::park`]): a fork
/// in that gap has no dup_mmap. Returns only if that fails (then serve
/// stops, every probe detached, with the error).
async fn keep_fork_probes(live: Arc<Mutex<Live>>) -> anyhow::Error {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    loop {
        tick.tick().await;
        let Ok(mut live) = live.lock() else {
            return anyhow::anyhow!("the probes' lock was poisoned");
        };
        if let Err(e) = live.keep_fork_probes() {
            return e.context("parking or bringing back the fork-only probes");
        }
    }
}

fn respond(live: &Mutex<Live>, path: &str) -> Response {
    let Ok(mut live) = live.lock() else {
        return Response::text(503, "probes unavailable\n");
    };
    match path {
        "/metrics" => Response {
            status: 200,
            content_type: exposition::CONTENT_TYPE,
            body: exposition::render(&live.snapshot(), live.labels),
        },
        // The listener opens only once every probe is attached.
        "/ready" => Response::text(200, "ready\n"),
        "/" => Response::text(200, "spawnprof serve: /metrics, /ready\n"),
        _ => Response::text(404, "not found: try /metrics or /ready\n"),
    }
}

pub fn describe(target: &Target) -> String {
    match target {
        Target::All => "every process".into(),
        Target::Cgroup(p) => format!("cgroup {}", p.display()),
        Target::Pid { pid, follow: true } => format!("pid {pid} and its descendants"),
        Target::Pid { pid, .. } => format!("pid {pid}"),
    }
}

/// How many stages attached, which did not, and where first runs come
/// from when no program sees each context switch.
pub fn attached_summary(live: &Live) -> String {
    use crate::probe::plan::{FIRST_RUN_PER_SWITCH, Mechanism};
    let missing: Vec<&str> = live
        .plan
        .iter()
        .filter(|r| r.mechanism == Mechanism::Unavailable)
        .map(|r| r.stage.as_str())
        .collect();
    let stages = match missing.len() {
        0 => "every stage attached".into(),
        _ => format!("unavailable here: {}", missing.join(", ")),
    };
    let from_wait = live.plan.iter().any(|r| {
        r.mechanism == Mechanism::SchedInfo
            && r.rejected
                .iter()
                .any(|j| j.reason.contains(FIRST_RUN_PER_SWITCH))
    });
    if !from_wait {
        return stages;
    }
    format!(
        "{stages}; first runs from the scheduler's wait count ({FIRST_RUN_PER_SWITCH} to time \
         each context switch)"
    )
}

/// SIGTERM, SIGINT and SIGHUP, registered before the probes load so a
/// stop during loading is not lost.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}
