//! Parameters of one spawner run. [`Config`] is a `clap::Args` so both the
//! `spawnprof-spawner` binary and `spawnprof bench` (which flattens it or
//! builds it directly and calls [`spawner_args`]) share one definition.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::cpus::CpuList;
use crate::units::{self, parse_u64_named};

/// How each process is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// libc `fork()` (a `clone` without `CLONE_VM`), then `execv`/`execvp`
    /// in the child, `_exit(127)` if that fails.
    ForkExec,
    /// The `vfork(2)` syscall, then exec in the child.
    VforkExec,
    /// `posix_spawn`, or `posix_spawnp` for a bare program name; glibc >= 2.24
    /// issues `clone3(CLONE_VM|CLONE_VFORK)`.
    PosixSpawn,
    /// Raw `clone3(CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD)` with the child
    /// on its own mmap'd stack, then exec.
    Clone3Vfork,
    /// `std::process::Command::spawn`, nothing customised (std's fast path:
    /// `posix_spawnp` with the inherited `environ`).
    Std,
    /// `Command` with one `.env("SPAWNPROF_X", "1")`: std rebuilds the whole
    /// environment for every spawn.
    StdEnv,
    /// `Command` with a no-op `pre_exec` closure, which forces std's
    /// fork+exec path (what it always does on glibc < 2.24).
    StdFork,
    /// `tokio::process::Command` on a current-thread runtime.
    TokioSingle,
    /// Current-thread runtime, each spawn inside `spawn_blocking`.
    TokioSingleBlocking,
    /// Multi-thread runtime with this many worker threads.
    TokioMulti(usize),
    /// A small helper forked before the RSS is allocated; it forks+execs on
    /// request over a socketpair and replies with the pid.
    Zygote,
    /// No exec: each process forks once and exits, its child forks next
    /// (the anon_vma chain case: parents exit before their children).
    ForkChain,
}

impl Method {
    /// Every fixed method name (plus the `tokio-multi-N` family).
    pub const NAMES: &'static [&'static str] = &[
        "fork-exec",
        "vfork-exec",
        "posix-spawn",
        "clone3-vfork",
        "std",
        "std-env",
        "std-fork",
        "tokio-single",
        "tokio-single-blocking",
        "tokio-multi-N",
        "zygote",
        "fork-chain",
    ];

    pub fn is_tokio(self) -> bool {
        matches!(
            self,
            Method::TokioSingle | Method::TokioSingleBlocking | Method::TokioMulti(_)
        )
    }

    /// The syscall the method is expected to issue on glibc >= 2.24 (for
    /// documentation and tests that check it with strace).
    pub fn expected_syscall(self) -> &'static str {
        match self {
            Method::ForkExec | Method::StdFork | Method::Zygote | Method::ForkChain => {
                "clone (no CLONE_VM)"
            }
            Method::VforkExec => "vfork",
            _ => "clone3 (CLONE_VM|CLONE_VFORK)",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::ForkExec => f.write_str("fork-exec"),
            Method::VforkExec => f.write_str("vfork-exec"),
            Method::PosixSpawn => f.write_str("posix-spawn"),
            Method::Clone3Vfork => f.write_str("clone3-vfork"),
            Method::Std => f.write_str("std"),
            Method::StdEnv => f.write_str("std-env"),
            Method::StdFork => f.write_str("std-fork"),
            Method::TokioSingle => f.write_str("tokio-single"),
            Method::TokioSingleBlocking => f.write_str("tokio-single-blocking"),
            Method::TokioMulti(n) => write!(f, "tokio-multi-{n}"),
            Method::Zygote => f.write_str("zygote"),
            Method::ForkChain => f.write_str("fork-chain"),
        }
    }
}

impl FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let m = match s.trim().to_ascii_lowercase().as_str() {
            "fork-exec" => Method::ForkExec,
            "vfork-exec" => Method::VforkExec,
            "posix-spawn" => Method::PosixSpawn,
            "clone3-vfork" => Method::Clone3Vfork,
            "std" => Method::Std,
            "std-env" => Method::StdEnv,
            "std-fork" => Method::StdFork,
            "tokio-single" => Method::TokioSingle,
            "tokio-single-blocking" => Method::TokioSingleBlocking,
            "zygote" => Method::Zygote,
            "fork-chain" => Method::ForkChain,
            other => match other.strip_prefix("tokio-multi-") {
                Some(n) => match n.parse::<usize>() {
                    Ok(n) if (1..=1024).contains(&n) => Method::TokioMulti(n),
                    _ => {
                        return Err(format!(
                            "'{s}': the worker count in tokio-multi-N must be 1..=1024, e.g. tokio-multi-4"
                        ));
                    }
                },
                None => {
                    return Err(format!(
                        "unknown method '{s}'; use one of: {}",
                        Method::NAMES.join(", ")
                    ));
                }
            },
        };
        Ok(m)
    }
}

impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// When children are reaped relative to the timed spawn calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Spawn (timed), wait for that child (untimed), repeat.
    Serial,
    /// Spawn all (timed), then reap all (untimed): the seeds' harness.
    Batched,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Serial => "serial",
            Mode::Batched => "batched",
        })
    }
}

/// How the spawner waits for its own children.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reap {
    /// waitpid (the wait4 syscall), as glibc callers, std and Python do.
    #[default]
    Waitpid,
    /// waitid(P_PID, pid, ..., WEXITED), as systemd and pidfd users do.
    Waitid,
}

impl fmt::Display for Reap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reap::Waitpid => "waitpid",
            Reap::Waitid => "waitid",
        })
    }
}

/// What backs the `--rss` ballast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HugePages {
    /// 4 KiB pages (MADV_NOHUGEPAGE, so even THP=always gives small pages).
    None,
    /// Transparent huge pages: 2 MiB-aligned mapping + MADV_HUGEPAGE.
    Thp,
    /// MAP_HUGETLB from the reserved pool (vm.nr_hugepages).
    Hugetlb,
}

impl fmt::Display for HugePages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HugePages::None => "none",
            HugePages::Thp => "thp",
            HugePages::Hugetlb => "hugetlb",
        })
    }
}

/// Everything one spawner run needs. Field docs double as `--help`.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
pub struct Config {
    /// Spawn method: fork-exec, vfork-exec, posix-spawn, clone3-vfork, std,
    /// std-env, std-fork, tokio-single, tokio-single-blocking, tokio-multi-N,
    /// zygote.
    #[arg(long, value_parser = parse_method)]
    pub method: Method,

    /// Number of timed spawns.
    #[arg(long, default_value_t = 1000, value_parser = parse_count, allow_negative_numbers = true)]
    pub count: u64,

    /// Untimed spawns (each reaped at once) before the timed part.
    #[arg(long, default_value_t = 10, value_parser = parse_warmup, allow_negative_numbers = true)]
    pub warmup: u64,

    /// Memory made resident (every page touched) before spawning: 0, 256M, 1G, 4GiB.
    #[arg(long, default_value = "0", value_parser = parse_rss, allow_hyphen_values = true)]
    pub rss: u64,

    /// Page size backing --rss.
    #[arg(long, value_enum, default_value_t = HugePages::None)]
    pub huge_pages: HugePages,

    /// Extra environment variables SPAWNPROF_ENV_<i> set in the spawner's own
    /// environment (so every method passes them on).
    #[arg(long, default_value_t = 0, value_parser = parse_env_count, allow_negative_numbers = true)]
    pub env_count: u64,

    /// Total bytes of the extra variables ("NAME=value" strings, no NUL);
    /// default: 25-byte values, like the seeds' harness. Accepts sizes (30K).
    #[arg(long, value_parser = parse_env_bytes, allow_hyphen_values = true)]
    pub env_bytes: Option<u64>,

    /// Program to run: an absolute path, or a bare name resolved through PATH.
    #[arg(long, default_value = "/bin/true")]
    pub program: String,

    /// Argument passed to the program (repeatable).
    #[arg(long = "arg", allow_hyphen_values = true)]
    pub args: Vec<String>,

    /// Exec a minimal static program that only calls exit(0) (written to a
    /// temporary file) instead of --program: the spawn without the child's
    /// own start-up (dynamic loading, libc initialisation).
    #[arg(long, conflicts_with_all = ["program", "args", "path_misses"])]
    pub minimal_child: bool,

    /// Prepend this many nonexistent directories to PATH, so a bare-name
    /// spawn makes that many failed execve attempts first.
    #[arg(long, default_value_t = 0, value_parser = parse_path_misses, allow_negative_numbers = true)]
    pub path_misses: u32,

    /// Spawning threads; each does count/threads spawns (not for tokio
    /// methods, whose concurrency is the runtime's).
    #[arg(long, default_value_t = 1, value_parser = parse_threads, allow_negative_numbers = true)]
    pub threads: u32,

    /// serial: spawn, wait (untimed), repeat. batched: spawn all, then reap all.
    #[arg(long, value_enum, default_value_t = Mode::Batched)]
    pub mode: Mode,

    /// How children are waited for: waitpid or waitid. waitid applies to
    /// fork-exec, vfork-exec, posix-spawn and clone3-vfork (std and tokio
    /// wait through the standard library; the zygote and the fork chain
    /// reap their own children).
    #[arg(long, value_enum, default_value_t = Reap::Waitpid)]
    pub reap: Reap,

    /// Run the spawner, and so every child it creates, only on these CPUs
    /// (e.g. 0 or 0-3,6). Default: wherever the scheduler puts them. One
    /// CPU keeps each child on its parent's CPU; otherwise a child may
    /// start on another CPU that has to be woken first.
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    #[serde(default)]
    pub cpus: Option<CpuList>,

    /// Sleep this many milliseconds after setup and before spawning, so a
    /// profiler can attach.
    #[arg(long, value_parser = parse_hold, allow_negative_numbers = true)]
    pub hold_ms: Option<u64>,
}

impl Config {
    /// A config with the CLI defaults for `method`.
    pub fn new(method: Method) -> Config {
        Config {
            method,
            count: 1000,
            warmup: 10,
            rss: 0,
            huge_pages: HugePages::None,
            env_count: 0,
            env_bytes: None,
            program: "/bin/true".into(),
            args: Vec::new(),
            minimal_child: false,
            path_misses: 0,
            threads: 1,
            mode: Mode::Batched,
            reap: Reap::Waitpid,
            cpus: None,
            hold_ms: None,
        }
    }

    /// Cross-field checks that clap cannot express. Messages name the fix.
    pub fn validate(&self) -> Result<(), String> {
        if u64::from(self.threads) > self.count {
            return Err(format!(
                "--threads {} is more than --count {}: every thread needs at least one spawn; lower --threads or raise --count",
                self.threads, self.count
            ));
        }
        if self.method == Method::ForkChain && self.threads != 1 {
            return Err("--method fork-chain is one chain of processes; drop --threads".into());
        }
        if self.method.is_tokio() && self.threads != 1 {
            return Err(format!(
                "--threads {} does not apply to {}: tokio methods get their concurrency from the runtime; use --method tokio-multi-N instead",
                self.threads, self.method
            ));
        }
        if self.reap == Reap::Waitid
            && !matches!(
                self.method,
                Method::ForkExec | Method::VforkExec | Method::PosixSpawn | Method::Clone3Vfork
            )
        {
            return Err(format!(
                "--reap waitid does not apply to {}: use fork-exec, vfork-exec, posix-spawn or clone3-vfork (the others wait through their runtime or reap their own children)",
                self.method
            ));
        }
        if self.env_bytes.is_some() && self.env_count == 0 {
            return Err(
                "--env-bytes needs --env-count N (the bytes are spread over N variables)".into(),
            );
        }
        if self.program.is_empty() {
            return Err(
                "--program is empty; pass an absolute path like /bin/true or a name on PATH".into(),
            );
        }
        if self.program.contains('\0') || self.args.iter().any(|a| a.contains('\0')) {
            return Err("--program and --arg must not contain NUL bytes".into());
        }
        Ok(())
    }
}

/// The command line (without the program name) that makes
/// `spawnprof-spawner` run `cfg`. Values are emitted in canonical form
/// (sizes in bytes) so parsing them back yields an equal `Config`.
pub fn spawner_args(cfg: &Config) -> Vec<String> {
    let mut a = vec![
        "--method".to_string(),
        cfg.method.to_string(),
        "--count".into(),
        cfg.count.to_string(),
        "--warmup".into(),
        cfg.warmup.to_string(),
        "--rss".into(),
        cfg.rss.to_string(),
        "--huge-pages".into(),
        cfg.huge_pages.to_string(),
        "--env-count".into(),
        cfg.env_count.to_string(),
    ];
    if let Some(b) = cfg.env_bytes {
        a.push("--env-bytes".into());
        a.push(b.to_string());
    }
    if cfg.minimal_child {
        // Excludes --program, --arg and --path-misses (left at their defaults).
        a.push("--minimal-child".into());
    } else {
        a.push("--program".into());
        a.push(cfg.program.clone());
        for arg in &cfg.args {
            // `--arg=VALUE` keeps values that start with '-' unambiguous.
            a.push(format!("--arg={arg}"));
        }
        a.push("--path-misses".into());
        a.push(cfg.path_misses.to_string());
    }
    a.extend([
        "--threads".into(),
        cfg.threads.to_string(),
        "--mode".into(),
        cfg.mode.to_string(),
        "--reap".into(),
        cfg.reap.to_string(),
    ]);
    if let Some(cpus) = &cfg.cpus {
        a.push("--cpus".into());
        a.push(cpus.to_string());
    }
    if let Some(h) = cfg.hold_ms {
        a.push("--hold-ms".into());
        a.push(h.to_string());
    }
    a
}

fn parse_method(s: &str) -> Result<Method, String> {
    s.parse()
}

fn parse_count(s: &str) -> Result<u64, String> {
    let n = parse_u64_named(s, "--count", "--count 1000")?;
    if n == 0 {
        return Err("--count must be at least 1; e.g. --count 1000".into());
    }
    if n > 10_000_000 {
        return Err(format!(
            "--count {n} is more than 10,000,000; split the run"
        ));
    }
    Ok(n)
}

fn parse_warmup(s: &str) -> Result<u64, String> {
    parse_u64_named(s, "--warmup", "--warmup 10")
}

fn parse_env_count(s: &str) -> Result<u64, String> {
    let n = parse_u64_named(s, "--env-count", "--env-count 250")?;
    if n > 100_000 {
        return Err(format!(
            "--env-count {n} is too many: the kernel caps exec's argv+envp (ARG_MAX); try --env-count 250"
        ));
    }
    Ok(n)
}

fn parse_env_bytes(s: &str) -> Result<u64, String> {
    units::parse_size(s).map_err(|e| format!("--env-bytes: {e}"))
}

fn parse_path_misses(s: &str) -> Result<u32, String> {
    let n = parse_u64_named(s, "--path-misses", "--path-misses 10")?;
    if n > 10_000 {
        return Err(format!(
            "--path-misses {n} is more than 10,000; try --path-misses 10"
        ));
    }
    Ok(n as u32)
}

fn parse_threads(s: &str) -> Result<u32, String> {
    let n = parse_u64_named(s, "--threads", "--threads 4")?;
    if n == 0 || n > 4096 {
        return Err(format!(
            "--threads must be 1..=4096 (got {n}); e.g. --threads 4"
        ));
    }
    Ok(n as u32)
}

fn parse_cpus(s: &str) -> Result<CpuList, String> {
    s.parse().map_err(|e| format!("--cpus: {e}"))
}

fn parse_hold(s: &str) -> Result<u64, String> {
    parse_u64_named(s, "--hold-ms", "--hold-ms 2000")
}

fn parse_rss(s: &str) -> Result<u64, String> {
    units::parse_size(s).map_err(|e| format!("--rss: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        cfg: Config,
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Cli::try_parse_from(std::iter::once("spawner").chain(args.iter().copied())).map(|c| c.cfg)
    }

    #[test]
    fn method_names_round_trip() {
        for name in Method::NAMES {
            let name = name.replace("-N", "-4");
            let m: Method = name.parse().unwrap();
            assert_eq!(m.to_string(), name);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<Method>(&json).unwrap(), m);
        }
        assert_eq!(
            "tokio-multi-8".parse::<Method>().unwrap(),
            Method::TokioMulti(8)
        );
        assert!("tokio-multi-0".parse::<Method>().is_err());
        assert!("tokio-multi-x".parse::<Method>().is_err());
        let err = "forkexec".parse::<Method>().unwrap_err();
        assert!(err.contains("fork-exec") && err.contains("zygote"), "{err}");
    }

    #[test]
    fn defaults() {
        let cfg = parse(&["--method", "std"]).unwrap();
        assert_eq!(cfg, Config::new(Method::Std));
    }

    #[test]
    fn full_command_line() {
        let cfg = parse(&[
            "--method",
            "tokio-multi-4",
            "--count",
            "500",
            "--warmup",
            "0",
            "--rss",
            "1G",
            "--huge-pages",
            "thp",
            "--env-count",
            "250",
            "--env-bytes",
            "30K",
            "--program",
            "sleep",
            "--arg",
            "0",
            "--arg",
            "-x",
            "--path-misses",
            "10",
            "--mode",
            "serial",
            "--hold-ms",
            "100",
        ])
        .unwrap();
        assert_eq!(cfg.method, Method::TokioMulti(4));
        assert_eq!(cfg.rss, 1 << 30);
        assert_eq!(cfg.env_bytes, Some(30 << 10));
        assert_eq!(cfg.args, vec!["0", "-x"]);
        assert_eq!(cfg.mode, Mode::Serial);
        assert_eq!(cfg.hold_ms, Some(100));
    }

    #[test]
    fn spawner_args_round_trip() {
        let mut cfg = Config::new(Method::Zygote);
        cfg.rss = 3 << 29;
        cfg.env_count = 3;
        cfg.env_bytes = Some(1000);
        cfg.args = vec!["-c".into(), "env | wc -l".into(), "--count".into()];
        cfg.program = "sh".into();
        cfg.path_misses = 2;
        cfg.threads = 2;
        cfg.mode = Mode::Serial;
        cfg.reap = Reap::Waitid;
        cfg.cpus = Some("0-1,3".parse().unwrap());
        cfg.hold_ms = Some(5);
        cfg.huge_pages = HugePages::Hugetlb;
        let args = spawner_args(&cfg);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(parse(&refs).unwrap(), cfg);
        let plain = Config::new(Method::TokioMulti(3));
        let args = spawner_args(&plain);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(parse(&refs).unwrap(), plain);
        let mut minimal = Config::new(Method::ForkExec);
        minimal.minimal_child = true;
        let args = spawner_args(&minimal);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(parse(&refs).unwrap(), minimal);
    }

    #[test]
    fn bad_values_are_rejected_with_remedy() {
        let msg = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert!(msg(&["--method", "nope"]).contains("use one of"));
        assert!(msg(&["--method", "std", "--count", "0"]).contains("at least 1"));
        assert!(msg(&["--method", "std", "--count", "-5"]).contains("negative"));
        assert!(msg(&["--method", "std", "--rss", "-1G"]).contains("negative"));
        assert!(msg(&["--method", "std", "--rss", "lots"]).contains("256K"));
        assert!(msg(&["--method", "std", "--threads", "0"]).contains("1..=4096"));
        assert!(msg(&["--method", "std", "--cpus", "two"]).contains("0-3,6"));
        assert!(parse(&["--count", "5"]).is_err(), "--method is required");
    }

    #[test]
    fn validate_cross_field() {
        let mut cfg = Config::new(Method::TokioSingle);
        cfg.threads = 2;
        assert!(cfg.validate().unwrap_err().contains("tokio-multi-N"));
        let mut cfg = Config::new(Method::Std);
        cfg.count = 2;
        cfg.threads = 3;
        assert!(cfg.validate().is_err());
        let mut cfg = Config::new(Method::Std);
        cfg.env_bytes = Some(100);
        assert!(cfg.validate().unwrap_err().contains("--env-count"));
        assert!(Config::new(Method::ForkExec).validate().is_ok());
        let mut cfg = Config::new(Method::Std);
        cfg.reap = Reap::Waitid;
        assert!(cfg.validate().unwrap_err().contains("posix-spawn"));
        cfg.method = Method::PosixSpawn;
        assert!(cfg.validate().is_ok());
    }
}
