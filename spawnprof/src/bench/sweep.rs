//! What to run: the options, and the configurations of each experiment they
//! select (the defaults reproduce the seeds' experiments).
use std::path::PathBuf;

use anyhow::{Result, bail};

use super::results::BenchConfig;
use crate::{
    probe::SessionOptions,
    units::format_bytes,
    workload::{Config, CpuList, HugePages, Method, Mode},
};

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub out_dir: PathBuf,
    pub quick: bool,
    pub methods: Option<Vec<Method>>,
    pub rss: Option<Vec<u64>>,
    pub env: Option<Vec<u64>>,
    pub path_misses: Option<Vec<u32>>,
    /// Only these experiments (names from [`EXPERIMENTS`]); `None`: all.
    pub experiments: Option<Vec<String>>,
    /// Overrides every configuration's spawn count.
    pub count: Option<u64>,
    pub overhead: bool,
    pub force: bool,
    pub session: SessionOptions,
}

/// The experiments of the sweep, in the order they run.
pub const EXPERIMENTS: &[&str] = &[
    "method-rss",
    "minimal-child",
    "placement",
    "thp",
    "env",
    "path",
    "tokio",
    "fork-chain",
];

/// Checks an `--experiments` entry.
pub fn experiment_name(s: &str) -> Result<String> {
    match EXPERIMENTS.contains(&s) {
        true => Ok(s.to_string()),
        false => bail!(
            "no experiment '{s}'; choose from {}",
            EXPERIMENTS.join(", ")
        ),
    }
}

fn method_rss_count(rss: u64) -> u64 {
    match rss {
        r if r >= 4 << 30 => 20,
        r if r >= 1 << 30 => 50,
        r if r >= 256 << 20 => 150,
        _ => 300,
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// `rss0`, `rss256mib`, `rss4gib`.
fn rss_label(rss: u64) -> String {
    if rss == 0 {
        return "rss0".into();
    }
    format!("rss{}", slug(&format_bytes(rss).replace(' ', "")))
}

/// The sweep, from the options (defaults reproduce the seeds' experiments).
pub fn sweep(opts: &BenchOptions) -> Vec<BenchConfig> {
    let quick = opts.quick;
    let methods = opts.methods.clone().unwrap_or_else(|| {
        if quick {
            vec![Method::ForkExec, Method::PosixSpawn, Method::StdFork]
        } else {
            vec![
                Method::ForkExec,
                Method::VforkExec,
                Method::PosixSpawn,
                Method::Clone3Vfork,
                Method::Std,
                Method::StdEnv,
                Method::StdFork,
                Method::Zygote,
            ]
        }
    });
    let rss = opts.rss.clone().unwrap_or_else(|| {
        if quick {
            vec![0, 256 << 20]
        } else {
            vec![0, 256 << 20, 1 << 30, 4 << 30]
        }
    });
    let env = opts.env.clone().unwrap_or_else(|| {
        if quick {
            vec![0, 250]
        } else {
            vec![0, 50, 250, 1000]
        }
    });
    let misses = opts.path_misses.clone().unwrap_or_else(|| vec![0, 14]);
    let scale = |n: u64| if quick { (n / 6).max(10) } else { n };
    let count = |n: u64| opts.count.unwrap_or_else(|| scale(n));
    let mut out = Vec::new();
    let mut push = |experiment: &str, name: String, cfg: Config| {
        out.push(BenchConfig {
            name: format!("{experiment}/{name}"),
            experiment: experiment.into(),
            spawner: cfg,
        })
    };
    for &m in &methods {
        for &r in &rss {
            let mut c = Config::new(m);
            c.rss = r;
            c.count = count(method_rss_count(r));
            c.mode = Mode::Serial;
            push("method-rss", format!("{m}-{}", rss_label(r)), c);
        }
    }
    // The spawn alone, per method: the child is an exit-only program, so no
    // library loading or libc start-up runs between the spawns.
    for &m in &methods {
        let mut c = Config::new(m);
        c.minimal_child = true;
        c.count = count(method_rss_count(0));
        c.mode = Mode::Serial;
        push("minimal-child", m.to_string(), c);
    }
    // Where the child starts: anywhere (often another, idle CPU that must be
    // woken first) or on its parent's CPU, with the spawner pinned to one.
    if let Some(cpu) = placement_cpu() {
        for m in [Method::PosixSpawn, Method::ForkExec] {
            if !methods.contains(&m) {
                continue;
            }
            for cpus in [None, Some(CpuList::single(cpu))] {
                let mut c = Config::new(m);
                c.minimal_child = true;
                c.count = count(method_rss_count(0) * 3);
                c.mode = Mode::Serial;
                let place = match &cpus {
                    None => "any-cpu".to_string(),
                    Some(l) => format!("cpu{l}"),
                };
                c.cpus = cpus;
                push("placement", format!("{m}-{place}"), c);
            }
        }
    }
    // Huge pages shrink the page-table copy: fork at 1 GiB with and without THP.
    for hp in [HugePages::None, HugePages::Thp] {
        let mut c = Config::new(Method::ForkExec);
        c.rss = 1 << 30;
        c.huge_pages = hp;
        c.count = count(50);
        c.mode = Mode::Serial;
        push("thp", format!("fork-exec-1gib-{hp}"), c);
    }
    // The environment and PATH cost CPU time inside each spawn (copying
    // the strings, one failed execve per missing directory): serial and
    // pinned, so that it is not drowned by children queueing for a CPU
    // (batched on two vCPUs, 250 variables or 14 misses moved the call by
    // less than its run-to-run spread, while pinned serial spawns showed
    // +50% and +8% at the median).
    let per_spawn_work = |c: &mut Config| {
        c.mode = Mode::Serial;
        c.cpus = placement_cpu().map(CpuList::single);
    };
    for m in [Method::PosixSpawn, Method::StdEnv] {
        for &e in &env {
            let mut c = Config::new(m);
            c.env_count = e;
            c.count = count(300);
            per_spawn_work(&mut c);
            push("env", format!("{m}-env{e}"), c);
        }
    }
    for &k in &misses {
        let mut c = Config::new(Method::PosixSpawn);
        c.program = "true".into();
        c.path_misses = k;
        c.count = count(300);
        per_spawn_work(&mut c);
        push("path", format!("posix-spawn-misses{k}"), c);
    }
    let tokio_modes = if quick {
        vec![Method::TokioSingle, Method::TokioMulti(2)]
    } else {
        vec![
            Method::TokioSingle,
            Method::TokioSingleBlocking,
            Method::TokioMulti(2),
            Method::TokioMulti(4),
        ]
    };
    for m in tokio_modes {
        let mut c = Config::new(m);
        c.count = count(300);
        push("tokio", m.to_string(), c);
    }
    // Fork, parent exits, child repeats: time per fork in windows along the chain.
    let mut c = Config::new(Method::ForkChain);
    c.count = count(3000);
    // One fork at a time by construction (each child forks the next); said
    // so, rather than the batched default that the chain never reads.
    c.mode = Mode::Serial;
    push("fork-chain", "fork-chain".into(), c);
    if let Some(only) = &opts.experiments {
        out.retain(|c| only.contains(&c.experiment));
    }
    out
}

/// The CPU the placement experiment pins to: the first this process may
/// use, when it may use more than one (with one there is nothing to compare).
pub(super) fn placement_cpu() -> Option<u32> {
    let allowed = CpuList::allowed().ok()?;
    (allowed.cpus().len() > 1).then(|| allowed.cpus()[0])
}

/// Parses `0,256M,1G` lists.
pub fn parse_list<T>(s: &str, item: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| item(p.trim()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(quick: bool) -> BenchOptions {
        BenchOptions {
            out_dir: "/tmp/x".into(),
            quick,
            methods: None,
            rss: None,
            env: None,
            path_misses: None,
            experiments: None,
            count: None,
            overhead: true,
            force: false,
            session: SessionOptions::default(),
        }
    }

    #[test]
    fn the_default_sweep_covers_the_seeds_experiments() {
        let s = sweep(&opts(false));
        let names: Vec<&str> = s.iter().map(|c| c.name.as_str()).collect();
        assert!(names.contains(&"method-rss/fork-exec-rss4gib"), "{names:?}");
        assert!(names.contains(&"thp/fork-exec-1gib-thp"));
        assert!(names.contains(&"env/std-env-env1000"));
        assert!(names.contains(&"path/posix-spawn-misses14"));
        assert!(names.contains(&"tokio/tokio-multi-4"));
        assert!(names.contains(&"fork-chain/fork-chain"));
        assert!(names.contains(&"minimal-child/posix-spawn"));
        if let Some(cpu) = placement_cpu() {
            assert!(names.contains(&"placement/fork-exec-any-cpu"), "{names:?}");
            let pinned = format!("placement/posix-spawn-cpu{cpu}");
            let c = s.iter().find(|c| c.name == pinned).expect("pinned config");
            assert_eq!(c.spawner.cpus, Some(CpuList::single(cpu)));
            assert!(c.spawner.minimal_child);
        }
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "names are unique");
        assert!(s.iter().all(|c| c.spawner.validate().is_ok()));
    }

    #[test]
    fn experiments_select_part_of_the_sweep() {
        let mut o = opts(true);
        o.experiments = Some(vec!["thp".into(), "path".into()]);
        let s = sweep(&o);
        assert!(!s.is_empty());
        assert!(
            s.iter()
                .all(|c| c.experiment == "thp" || c.experiment == "path")
        );
        // Every experiment the sweep makes is one that can be asked for.
        for c in sweep(&opts(false)) {
            assert!(EXPERIMENTS.contains(&c.experiment.as_str()), "{}", c.name);
        }
        let err = experiment_name("placment").unwrap_err().to_string();
        assert!(err.contains("placement"), "{err}");
    }

    #[test]
    fn quick_is_smaller_and_count_overrides() {
        assert!(sweep(&opts(true)).len() < sweep(&opts(false)).len() / 2);
        let mut o = opts(true);
        o.count = Some(7);
        assert!(sweep(&o).iter().all(|c| c.spawner.count == 7));
    }
}
