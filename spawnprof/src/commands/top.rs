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
        labels: super::serve::labels(&args.scope),
        label_idle: args.scope.label_idle,
        interval: Duration::from_secs(args.interval),
        probes: super::serve::metrics_probes(&args.scope, &args.probes)?,
    })?;
    Ok(0)
}
