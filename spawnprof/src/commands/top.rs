//! `spawnprof top`: options → [`spawnprof::top::run`].
use std::time::Duration;

use anyhow::Result;
use spawnprof::{
    cli::TopArgs,
    top::{self, TopOptions},
};

pub fn run(args: TopArgs) -> Result<i32> {
    top::run(TopOptions {
        target: super::serve::target(&args.scope),
        labels: spawnprof::probe::metrics::Labels {
            top_k: args.scope.top_k,
            cgroup_k: args.scope.cgroup_label.then_some(args.scope.cgroup_k),
        },
        label_idle: args.scope.label_idle,
        interval: Duration::from_secs(args.interval),
        probes: super::serve::metrics_probes(&args.scope, &args.probes)?,
    })?;
    Ok(0)
}
