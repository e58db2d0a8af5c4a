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
    /// The node's name in a fleet (`--node-name`), kept in its facts.
    pub node_name: Option<String>,
}

/// An experiment: its configurations, each named within it.
type Experiment = fn(&Choices) -> Vec<(String, Config)>;

/// The experiments of the sweep, in the order they run.
const SWEEP: [(&str, Experiment); 8] = [
    ("method-rss", method_rss),
    ("minimal-child", minimal_child),
    ("placement", placement),
    ("thp", thp),
    ("env", env),
    ("path", path),
    ("tokio", tokio),
    ("fork-chain", fork_chain),
];

/// The experiments of the sweep, in the order they run.
pub const EXPERIMENTS: &[&str] = &names(&SWEEP);

const fn names<const N: usize>(sweep: &[(&'static str, Experiment); N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = sweep[i].0;
        i += 1;
    }
    out
}

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

/// Parses `0,256M,1G` lists.
pub fn parse_list<T>(s: &str, item: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| item(p.trim()))
        .collect()
}

/// The sweep, from the options (defaults reproduce the seeds' experiments).
pub fn sweep(opts: &BenchOptions) -> Vec<BenchConfig> {
    let choices = Choices::new(opts);
    let selected = |experiment: &str| {
        opts.experiments
            .as_ref()
            .is_none_or(|only| only.iter().any(|e| e == experiment))
    };
    SWEEP
        .iter()
        .filter(|(experiment, _)| selected(experiment))
        .flat_map(|(experiment, configs)| {
            configs(&choices)
                .into_iter()
                .map(move |(name, cfg)| BenchConfig {
                    name: format!("{experiment}/{name}"),
                    experiment: experiment.to_string(),
                    spawner: cfg,
                })
        })
        .collect()
}

/// `-o shared/%n` → `shared/node017`: `%n` is the node's name, `%%` a `%`.
/// A name that would leave the directory (`/`, `..`) is refused.
pub fn expand_node_name(pattern: &std::path::Path, node: &str) -> Result<PathBuf> {
    let text = pattern.to_string_lossy();
    if !text.contains('%') {
        return Ok(pattern.to_path_buf());
    }
    if node.is_empty() || node.contains('/') || node == "." || node == ".." {
        bail!("the node name {node:?} cannot name a directory; pass --node-name");
    }
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, c == '%') {
            (_, false) => out.push(c),
            (_, true) => match chars.next() {
                Some('n') => out.push_str(node),
                Some('%') => out.push('%'),
                other => bail!(
                    "{text:?}: %{} is not a placeholder; %n is the node's name, %% a %",
                    other.map_or(String::new(), String::from)
                ),
            },
        }
    }
    Ok(out.into())
}

/// The options with the defaults of a quick or full sweep filled in.
struct Choices {
    quick: bool,
    count: Option<u64>,
    methods: Vec<Method>,
    rss: Vec<u64>,
    env: Vec<u64>,
    misses: Vec<u32>,
}

impl Choices {
    fn new(opts: &BenchOptions) -> Self {
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
        Self {
            quick,
            count: opts.count,
            methods,
            rss,
            env,
            misses,
        }
    }

    /// Spawns of a configuration that makes `n` in the full sweep: a sixth
    /// (at least 10) in a quick one, `--count` over both.
    fn count(&self, n: u64) -> u64 {
        let scale = |n: u64| if self.quick { (n / 6).max(10) } else { n };
        self.count.unwrap_or_else(|| scale(n))
    }

    /// `method`, one spawn at a time, `n` spawns (scaled by [`Self::count`]).
    fn serial(&self, method: Method, n: u64) -> Config {
        let mut c = Config::new(method);
        c.count = self.count(n);
        c.mode = Mode::Serial;
        c
    }

    /// The environment and PATH cost CPU time inside each spawn (copying
    /// the strings, one failed execve per missing directory): serial and
    /// pinned, so that it is not drowned by children queueing for a CPU
    /// (batched on two vCPUs, 250 variables or 14 misses moved the call by
    /// less than its run-to-run spread, while pinned serial spawns showed
    /// +50% and +8% at the median).
    fn per_spawn_work(&self, method: Method, n: u64) -> Config {
        let mut c = self.serial(method, n);
        c.cpus = placement_cpu().map(CpuList::single);
        c
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

/// Every method at every resident size.
fn method_rss(c: &Choices) -> Vec<(String, Config)> {
    let mut out = Vec::new();
    for &m in &c.methods {
        for &r in &c.rss {
            let mut cfg = c.serial(m, method_rss_count(r));
            cfg.rss = r;
            out.push((format!("{m}-{}", rss_label(r)), cfg));
        }
    }
    out
}

/// The spawn alone, per method: the child is an exit-only program, so no
/// library loading or libc start-up runs between the spawns.
fn minimal_child(c: &Choices) -> Vec<(String, Config)> {
    c.methods
        .iter()
        .map(|&m| {
            let mut cfg = c.serial(m, method_rss_count(0));
            cfg.minimal_child = true;
            (m.to_string(), cfg)
        })
        .collect()
}

/// Where the child starts: anywhere (often another, idle CPU that must be
/// woken first) or on its parent's CPU, with the spawner pinned to one.
fn placement(c: &Choices) -> Vec<(String, Config)> {
    let Some(cpu) = placement_cpu() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in [Method::PosixSpawn, Method::ForkExec] {
        if !c.methods.contains(&m) {
            continue;
        }
        for cpus in [None, Some(CpuList::single(cpu))] {
            let mut cfg = c.serial(m, method_rss_count(0) * 3);
            cfg.minimal_child = true;
            let place = match &cpus {
                None => "any-cpu".to_string(),
                Some(l) => format!("cpu{l}"),
            };
            cfg.cpus = cpus;
            out.push((format!("{m}-{place}"), cfg));
        }
    }
    out
}

/// The CPU the placement experiment pins to: the first this process may
/// use, when it may use more than one (with one there is nothing to compare).
pub(super) fn placement_cpu() -> Option<u32> {
    let allowed = CpuList::allowed().ok()?;
    (allowed.cpus().len() > 1).then(|| allowed.cpus()[0])
}

/// Huge pages shrink the page-table copy: fork at 1 GiB with and without THP.
fn thp(c: &Choices) -> Vec<(String, Config)> {
    [HugePages::None, HugePages::Thp]
        .into_iter()
        .map(|hp| {
            let mut cfg = c.serial(Method::ForkExec, 50);
            cfg.rss = 1 << 30;
            cfg.huge_pages = hp;
            (format!("fork-exec-1gib-{hp}"), cfg)
        })
        .collect()
}

/// Extra environment variables, which each spawn copies.
fn env(c: &Choices) -> Vec<(String, Config)> {
    let mut out = Vec::new();
    for m in [Method::PosixSpawn, Method::StdEnv] {
        for &e in &c.env {
            let mut cfg = c.per_spawn_work(m, 300);
            cfg.env_count = e;
            out.push((format!("{m}-env{e}"), cfg));
        }
    }
    out
}

/// Nonexistent PATH entries before the real ones: one failed execve each.
fn path(c: &Choices) -> Vec<(String, Config)> {
    c.misses
        .iter()
        .map(|&k| {
            let mut cfg = c.per_spawn_work(Method::PosixSpawn, 300);
            cfg.program = "true".into();
            cfg.path_misses = k;
            (format!("posix-spawn-misses{k}"), cfg)
        })
        .collect()
}

/// The tokio runtimes' ways to spawn, in their default (batched) mode.
fn tokio(c: &Choices) -> Vec<(String, Config)> {
    let modes = if c.quick {
        vec![Method::TokioSingle, Method::TokioMulti(2)]
    } else {
        vec![
            Method::TokioSingle,
            Method::TokioSingleBlocking,
            Method::TokioMulti(2),
            Method::TokioMulti(4),
        ]
    };
    modes
        .into_iter()
        .map(|m| {
            let mut cfg = Config::new(m);
            cfg.count = c.count(300);
            (m.to_string(), cfg)
        })
        .collect()
}

/// Fork, parent exits, child repeats: time per fork in windows along the chain.
fn fork_chain(c: &Choices) -> Vec<(String, Config)> {
    // One fork at a time by construction (each child forks the next); said
    // so, rather than the batched default that the chain never reads.
    let cfg = c.serial(Method::ForkChain, 3000);
    vec![("fork-chain".into(), cfg)]
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
            node_name: None,
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
    fn the_output_pattern_takes_the_node_name() {
        let x = |p: &str, n: &str| expand_node_name(std::path::Path::new(p), n);
        assert_eq!(
            x("shared/%n", "node017").unwrap(),
            PathBuf::from("shared/node017")
        );
        assert_eq!(x("a/%n-%%/b", "n1").unwrap(), PathBuf::from("a/n1-%/b"));
        assert_eq!(x("plain", "../x").unwrap(), PathBuf::from("plain"));
        assert!(x("s/%n", "../x").is_err());
        let err = x("s/%j", "n").unwrap_err().to_string();
        assert!(err.contains("%j is not a placeholder"), "{err}");
    }

    #[test]
    fn quick_is_smaller_and_count_overrides() {
        assert!(sweep(&opts(true)).len() < sweep(&opts(false)).len() / 2);
        let mut o = opts(true);
        o.count = Some(7);
        assert!(sweep(&o).iter().all(|c| c.spawner.count == 7));
    }
}
