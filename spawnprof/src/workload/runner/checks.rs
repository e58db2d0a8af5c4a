//! What a run refuses before it changes anything: each refusal is a usage
//! error that names the remedy.

use anyhow::Result;

use crate::{
    cli::UsageError,
    sys::node,
    workload::{
        config::{Config, Method, Mode},
        cpus::CpuList,
        env, memory, raw,
    },
};

pub(super) fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// What [`check`] found.
pub(super) struct Checked {
    /// The extra environment variables to set.
    pub(super) vars: Vec<(String, String)>,
    pub(super) cpus_allowed: Option<CpuList>,
}

/// Everything that can be refused before the run changes anything but the
/// CPUs it runs on: each refusal is a usage error that names the remedy.
pub(super) fn check(cfg: &Config) -> Result<Checked> {
    cfg.validate().map_err(usage)?;
    // First, so that every thread, helper and child created below inherits it.
    if let Some(cpus) = &cfg.cpus {
        cpus.pin_current_thread().map_err(|e| {
            let allowed = CpuList::allowed().map_or("?".into(), |l| l.to_string());
            usage(format!(
                "--cpus {cpus}: the spawner cannot run there ({e}); it may run on CPUs {allowed}"
            ))
        })?;
    }
    let cpus_allowed = CpuList::allowed().ok();
    if matches!(cfg.method, Method::VforkExec | Method::Clone3Vfork) && !raw::SUPPORTED {
        return Err(usage(format!(
            "--method {} is only implemented on x86_64 and aarch64; use posix-spawn (glibc's own clone3/vfork path)",
            cfg.method
        )));
    }
    let vars = env::plan(cfg.env_count, cfg.env_bytes).map_err(usage)?;
    check_arg_max(cfg, &vars)?;
    memory::check_request(cfg.rss, cfg.huge_pages).map_err(usage)?;
    if cfg.mode == Mode::Batched {
        check_pid_room(cfg.count)?;
    }
    Ok(Checked { vars, cpus_allowed })
}

/// exec fails with E2BIG when argv + envp (strings, NULs and pointers)
/// exceed ARG_MAX (a quarter of the stack rlimit).
fn check_arg_max(cfg: &Config, vars: &[(String, String)]) -> Result<()> {
    // SAFETY: sysconf has no preconditions.
    let arg_max = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
    if arg_max <= 0 {
        return Ok(());
    }
    let ptr = std::mem::size_of::<usize>() as u64;
    let (n, bytes) = node::environment_size();
    let extra_path: u64 = (0..cfg.path_misses)
        .map(|i| format!("/nonexistent/spawnprof-miss-{i}:").len() as u64)
        .sum();
    let argv: u64 = std::iter::once(&cfg.program)
        .chain(&cfg.args)
        .map(|a| a.len() as u64 + 1 + ptr)
        .sum();
    let need = bytes
        + n * (1 + ptr)
        + env::bytes_of(vars)
        + vars.len() as u64 * (1 + ptr)
        + extra_path
        + argv;
    if need > arg_max as u64 {
        return Err(usage(format!(
            "arguments plus environment would take {need} bytes, over exec's limit ARG_MAX = {arg_max} (a quarter of `ulimit -s`); lower --env-bytes/--env-count/--path-misses, or raise the stack limit (ulimit -s)"
        )));
    }
    Ok(())
}

/// Batched mode keeps every child as a zombie until the end: each holds a
/// pid, so the count must fit under kernel.pid_max (and RLIMIT_NPROC).
fn check_pid_room(count: u64) -> Result<()> {
    let read_u64 = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let tasks = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(3)?
                .split('/')
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    if let Some(pid_max) = read_u64("/proc/sys/kernel/pid_max")
        && count + tasks + 256 > pid_max
    {
        return Err(usage(format!(
            "--mode batched keeps all {count} children until the end, but kernel.pid_max is {pid_max} with {tasks} tasks running; use --mode serial, a smaller --count, or raise it as root: sysctl -w kernel.pid_max=4194304"
        )));
    }
    // SAFETY: geteuid/getrlimit have no preconditions; rl is a valid out-pointer.
    unsafe {
        if libc::geteuid() != 0 {
            let mut rl = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NPROC, &mut rl) == 0
                && rl.rlim_cur != libc::RLIM_INFINITY
                && count + tasks > rl.rlim_cur
            {
                return Err(usage(format!(
                    "--mode batched keeps all {count} children until the end, over RLIMIT_NPROC ({}); use --mode serial or a smaller --count, or raise `ulimit -u`",
                    rl.rlim_cur
                )));
            }
        }
    }
    Ok(())
}
