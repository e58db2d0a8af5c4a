//! The options that shape the probes, checked before anything is loaded.
use anyhow::{Result, bail};

use super::plan::PLAN;

/// Knobs of a recording that shape the probes.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Descendants of traced processes have their own spawns recorded.
    pub follow: bool,
    /// Skip the fentry/fexit tier (e.g. to exercise kprobes).
    pub no_fentry: bool,
    /// Skip the kprobe/kretprobe tier.
    pub no_kprobe: bool,
    /// Skip raw tracepoints for classic ones (where a stage has both).
    pub no_raw_tracepoint: bool,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub ring_buffer_bytes: u32,
    /// Record argument strings of each exec (`--capture-args`).
    pub capture_args: bool,
    /// Record environment strings of each exec (`--capture-env`).
    pub capture_env: bool,
    /// Stages not to attach (reported unavailable): to attribute overhead,
    /// or to drop a costly stage on a busy production node.
    pub skip_stages: Vec<String>,
    /// `--low-overhead`: no probe on a machine-wide per-event tracepoint.
    pub low_overhead: bool,
    /// The first run may be timed by a program on every context switch of
    /// the machine. `serve` and `top` turn this off unless asked
    /// (`--first-run-per-switch`): the scheduler's wait count serves them.
    pub first_run_per_switch: bool,
    /// `serve` and `top`: the page-fault program parks once open
    /// copy-on-write windows go this long without a fault (see
    /// [`super::park`]). `None` (`record`): it stays to each window's end.
    pub cow_quiet: Option<std::time::Duration>,
    /// Bench only (`SPAWNPROF_BENCH_EMPTY_PROGRAMS=1`): programs that
    /// return at once stand in for every tracepoint program, on the same
    /// hooks. No spawn is recorded.
    pub empty_programs: bool,
    /// The probes tell userspace of every exec and exit of a traced
    /// process (stack sampling reads its memory maps then).
    pub notices: bool,
    /// `serve`/`top`: the kernel keeps histograms and counters with at
    /// most these many labels, and sends no record per spawn.
    pub metrics: Option<super::metrics::Labels>,
    /// Processes the probes adopt on their own (`serve --all`, `--cgroup`).
    pub scope: spawnprof_common::Scope,
}

impl SessionOptions {
    /// The checks that need no kernel: stages that exist and may be left
    /// out, a ring buffer the kernel accepts. Errors name the option.
    pub fn validate(&self) -> Result<()> {
        for s in &self.skip_stages {
            let Some(stage) = PLAN.iter().find(|p| p.name == s) else {
                let names: Vec<&str> = PLAN.iter().map(|p| p.name).collect();
                bail!(
                    "--skip-stage {s}: no such stage (stages: {})",
                    names.join(", ")
                );
            };
            if stage.required {
                bail!("--skip-stage {s}: recording cannot work without this stage");
            }
        }
        let size = self.ring_buffer_bytes;
        if !size.is_power_of_two() || size < 4096 {
            bail!("--ring-buffer must be a power of two of at least 4096 bytes (got {size})");
        }
        Ok(())
    }

    /// Whether `stage` was left out with `--skip-stage`.
    pub fn skips(&self, stage: &str) -> bool {
        self.skip_stages.iter().any(|s| s == stage)
    }
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            follow: false,
            no_fentry: false,
            no_kprobe: false,
            no_raw_tracepoint: false,
            ring_buffer_bytes: 16 << 20,
            skip_stages: Vec::new(),
            low_overhead: false,
            first_run_per_switch: true,
            cow_quiet: None,
            empty_programs: false,
            notices: false,
            capture_args: false,
            capture_env: false,
            metrics: None,
            scope: spawnprof_common::Scope::default(),
        }
    }
}
