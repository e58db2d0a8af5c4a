//! The tokio methods: `tokio::process::Command` on a current-thread or
//! multi-thread runtime, timed around `spawn()`.

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::{Clocks, Measured};
use crate::{
    sys::clock::mono_ns,
    workload::{
        config::{Config, Method, Mode},
        methods::Program,
    },
};

struct TokioSpec {
    program: String,
    args: Vec<String>,
    blocking: bool,
}

/// One tokio spawn: the Command is built untimed, then `spawn()` is timed.
/// With `spawn_blocking` the timer runs inside the blocking closure: in
/// batched mode every spawn is queued at once, and the queueing delay would
/// otherwise swamp the spawn latency (the window still captures throughput).
async fn tokio_spawn_one(spec: Arc<TokioSpec>) -> (u64, std::io::Result<tokio::process::Child>) {
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args);
    if spec.blocking {
        tokio::task::spawn_blocking(move || {
            let a = mono_ns();
            let r = cmd.spawn();
            (mono_ns() - a, r)
        })
        .await
        .unwrap_or_else(|e| (0, Err(std::io::Error::other(e))))
    } else {
        let a = mono_ns();
        let r = cmd.spawn();
        (mono_ns() - a, r)
    }
}

fn exited_127(status: std::io::Result<std::process::ExitStatus>) -> bool {
    status.is_ok_and(|s| {
        let raw = s.into_raw();
        libc::WIFEXITED(raw) && libc::WEXITSTATUS(raw) == 127
    })
}

/// The seeds' async harness: batched mode submits one task per spawn to
/// the runtime at once and joins them all (timed), then awaits every
/// child (untimed); serial mode spawns, awaits the child (untimed), repeats.
pub(super) fn run_tokio(cfg: &Config, prog: &Program) -> Result<Measured> {
    let rt = match cfg.method {
        Method::TokioMulti(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
    .context("building the tokio runtime")?;
    let spec = Arc::new(TokioSpec {
        program: prog.program.clone(),
        args: prog.args.clone(),
        blocking: cfg.method == Method::TokioSingleBlocking,
    });
    rt.block_on(async {
        for _ in 0..cfg.warmup {
            if let (_, Ok(mut c)) = tokio_spawn_one(spec.clone()).await {
                let _ = c.wait().await;
            }
        }
    });

    let n = cfg.count as usize;
    let start = Clocks::start();
    let (results, serial_sum, serial_127) = match cfg.mode {
        Mode::Batched => (rt.block_on(tokio_batched(&spec, n)), 0, 0),
        Mode::Serial => rt.block_on(tokio_serial(&spec, n)),
    };
    let end = Clocks::stop();

    let mut m = Measured {
        latencies: Vec::with_capacity(n),
        exit127: serial_127,
        total_ns: match cfg.mode {
            Mode::Batched => end.t - start.t,
            Mode::Serial => serial_sum,
        },
        ..Measured::between(start, end)
    };
    let mut children = Vec::new();
    for (lat, r) in results {
        m.latencies.push(lat);
        match r {
            Ok(Some(c)) => children.push(c),
            Ok(None) => {}
            Err(_) => m.failed += 1,
        }
    }
    rt.block_on(async {
        for mut c in children {
            m.exit127 += u64::from(exited_127(c.wait().await));
        }
    });
    Ok(m)
}

/// One timed tokio spawn: its latency, and Ok(the child to reap later),
/// Ok(None) when it was already reaped, or the error.
type Spawned = (u64, std::io::Result<Option<tokio::process::Child>>);

/// Batched: a task per spawn, all submitted at once, then joined.
async fn tokio_batched(spec: &Arc<TokioSpec>, n: usize) -> Vec<Spawned> {
    let handles: Vec<_> = (0..n)
        .map(|_| tokio::spawn(tokio_spawn_one(spec.clone())))
        .collect();
    let mut results = Vec::with_capacity(n);
    for h in handles {
        let (lat, r) = h
            .await
            .unwrap_or_else(|e| (0, Err(std::io::Error::other(e))));
        results.push((lat, r.map(Some)));
    }
    results
}

/// Serial: spawn, await the child (untimed), repeat. Returns the results,
/// the sum of the spawn latencies and how many children exited with 127.
async fn tokio_serial(spec: &Arc<TokioSpec>, n: usize) -> (Vec<Spawned>, u64, u64) {
    let mut results = Vec::with_capacity(n);
    let (mut sum, mut e127) = (0, 0);
    for _ in 0..n {
        let (lat, mut r) = tokio_spawn_one(spec.clone()).await;
        sum += lat;
        if let Ok(c) = r.as_mut() {
            e127 += u64::from(exited_127(c.wait().await));
        }
        results.push((lat, r.map(|_| None)));
    }
    (results, sum, e127)
}
