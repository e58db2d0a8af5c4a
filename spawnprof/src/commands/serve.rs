//! `spawnprof serve`: options → [`spawnprof::serve::run`].
use anyhow::Result;
use spawnprof::{
    cli::{LabelBy, ProbeArgs, ScopeArgs, ServeArgs},
    probe::{SessionOptions, metrics::Labels},
    serve::{self, ServeOptions, Target},
};

pub fn run(args: ServeArgs) -> Result<i32> {
    let opts = ServeOptions {
        listen: args.listen,
        target: target(&args.scope),
        labels: labels(&args.scope),
        label_idle: args.scope.label_idle,
        probes: metrics_probes(&args.scope, &args.probes)?,
    };
    super::runtime()?.block_on(serve::run(opts))?;
    Ok(0)
}

/// How `serve` and `top` label their series.
pub fn labels(scope: &ScopeArgs) -> Labels {
    Labels {
        top_k: scope.top_k,
        cgroup_k: scope.cgroup_label.then_some(scope.cgroup_k),
        by_exec: scope.label_by == LabelBy::Exec,
    }
}

/// The processes asked for: every one unless told otherwise.
pub fn target(scope: &ScopeArgs) -> Target {
    match (&scope.cgroup, scope.pid) {
        (Some(path), _) => Target::Cgroup(path.clone()),
        (None, Some(pid)) => Target::Pid {
            pid,
            follow: scope.follow,
        },
        (None, None) => Target::All,
    }
}

/// The probe options of `serve` and `top`: as `record`'s, but the first run
/// comes from the scheduler's wait count unless `--first-run-per-switch`,
/// and quiet copy-on-write windows let the page-fault program park.
pub fn metrics_probes(scope: &ScopeArgs, probes: &ProbeArgs) -> Result<SessionOptions> {
    Ok(SessionOptions {
        first_run_per_switch: scope.first_run_per_switch,
        cow_quiet: Some(spawnprof::probe::park::METRICS_COW_QUIET),
        ..super::session_options(probes)?
    })
}
