//! `cargo xtask setup`: install, only where missing, what the eBPF build needs
//! (see /work/shared/toolchain.md for why each piece is pinned as it is):
//! the nightly toolchain with rust-src (aya-build runs `-Z build-std=core`),
//! Debian's `llvm-<M>-dev` and bpf-linker built against it, where M is the
//! LLVM major of nightly rustc — bpf-linker must read the bitcode rustc emits.
//!
//! Every probe is a file check or one short process (~0.1 s in total), so the
//! builder subcommands run it every time instead of caching a stamp that could
//! go stale when nightly or the linker changes underneath it.
use std::env;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Result, bail};

use crate::{cmd, elf};

/// 0.11+ sanitizes BTF names the kernel rejects (`MaybeUninit<u32>`), and
/// 0.13.0 has an `llvm-22` feature matching nightly's LLVM today.
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// What `rustc -vV` tells us.
#[derive(Debug, Default, PartialEq)]
pub struct RustcInfo {
    pub release: String,
    pub commit_hash: String,
    pub host: String,
    pub llvm_major: Option<u32>,
}

pub fn parse_rustc_vv(text: &str) -> RustcInfo {
    let mut info = RustcInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        let value = value.trim().to_string();
        match key {
            "release" => info.release = value,
            "commit-hash" => info.commit_hash = value,
            "host" => info.host = value,
            "LLVM version" => info.llvm_major = leading_number(&value),
            _ => {}
        }
    }
    info
}

/// Parses `bpf-linker --version` into (version, LLVM major if printed).
/// 0.13.0 prints only `bpf-linker 0.13.0`; should a later release add its
/// LLVM version (`... LLVM 22.1.4`), it is used instead of the ELF fallback.
pub fn parse_bpf_linker_version(text: &str) -> Option<(String, Option<u32>)> {
    let first = text.lines().next()?;
    let mut words = first.split_whitespace();
    if words.next()? != "bpf-linker" {
        return None;
    }
    let version = words.next()?.trim_start_matches('v').to_string();
    let llvm = text.find("LLVM").and_then(|at| {
        let rest = text[at + 4..].trim_start_matches(|c: char| !c.is_ascii_digit() && c != '\n');
        leading_number(rest)
    });
    Some((version, llvm))
}

fn leading_number(s: &str) -> Option<u32> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Checks everything and installs what is missing. `quiet` (used before
/// builds) prints only steps that did something or failed.
pub fn ensure(quiet: bool) -> Result<()> {
    let mut setup = Setup {
        quiet,
        failed: false,
        manual: Vec::new(),
    };
    match setup.nightly() {
        Some(nightly) => {
            setup.rust_src(&nightly);
            let llvm_ok = setup.llvm_dev(nightly.llvm_major);
            setup.bpf_linker(nightly.llvm_major, llvm_ok);
        }
        None => {
            for step in ["rust-src (nightly)", "llvm-<M>-dev", "bpf-linker"] {
                setup.failed(
                    step,
                    "needs the nightly toolchain (its LLVM major picks the rest)",
                    &[],
                );
            }
        }
    }
    if setup.failed {
        println!("setup: run these by hand, then `cargo xtask setup` again:");
        for line in &setup.manual {
            println!("    {line}");
        }
        bail!("setup incomplete (see FAILED lines above)");
    }
    Ok(())
}

struct Setup {
    quiet: bool,
    failed: bool,
    /// Commands a human should run, accumulated from every failed step.
    manual: Vec<String>,
}

struct Nightly {
    /// e.g. `1.97.0-nightly (e50aa6fba)`, for the report.
    version: String,
    llvm_major: u32,
    sysroot: PathBuf,
}

impl Nightly {
    fn describe(&self) -> String {
        format!("rustc {}, LLVM {}", self.version, self.llvm_major)
    }
}

struct Linker {
    path: PathBuf,
    version: String,
    llvm_major: Option<u32>,
}

impl Setup {
    fn line(&self, step: &str, status: &str, detail: &str) {
        println!("setup: {step:<20} {status:<9} {detail}");
    }

    fn ok(&self, step: &str, detail: &str) {
        if !self.quiet {
            self.line(step, "ok", detail);
        }
    }

    fn installed(&self, step: &str, detail: &str) {
        self.line(step, "installed", detail);
    }

    fn failed(&mut self, step: &str, reason: &str, manual: &[String]) {
        self.line(step, "FAILED", reason);
        self.failed = true;
        self.manual.extend(manual.iter().cloned());
    }

    /// Announces a slow install before its output starts streaming.
    fn installing(&self, step: &str, why: &str) {
        self.line(step, "missing", &format!("{why}: installing..."));
    }

    fn nightly(&mut self) -> Option<Nightly> {
        const STEP: &str = "nightly toolchain";
        let install = "rustup toolchain install nightly --profile minimal -c rust-src";
        let why = match query_nightly() {
            Ok(n) => {
                self.ok(STEP, &n.describe());
                return Some(n);
            }
            Err(why) => why,
        };
        if cmd::find_in_path("rustup").is_none() {
            let manual = [
                "curl https://sh.rustup.rs -sSf | sh".to_string(),
                install.into(),
            ];
            self.failed(
                STEP,
                "rustup is not on PATH (see https://rustup.rs)",
                &manual,
            );
            return None;
        }
        let listed = cmd::stdout_of("rustup", &["toolchain", "list"]).unwrap_or_default();
        if listed.lines().any(|l| l.starts_with("nightly-")) {
            // Installed but broken (e.g. a half-finished update): don't guess.
            let msg = format!("nightly is installed but `rustc +nightly -vV` fails: {why}");
            self.failed(STEP, &msg, &[format!("{install} --force")]);
            return None;
        }
        self.installing(STEP, "no nightly toolchain");
        let result = cmd::run(Command::new("rustup").args(install.split(' ').skip(1)));
        match result
            .map_err(|e| e.to_string())
            .and_then(|()| query_nightly())
        {
            Ok(n) => {
                self.installed(STEP, &n.describe());
                Some(n)
            }
            Err(e) => {
                self.failed(STEP, &e, &[install.into()]);
                None
            }
        }
    }

    fn rust_src(&mut self, nightly: &Nightly) {
        const STEP: &str = "rust-src (nightly)";
        let library = nightly.sysroot.join("lib/rustlib/src/rust/library");
        if library.is_dir() {
            return self.ok(STEP, "");
        }
        let add = "rustup component add rust-src --toolchain nightly";
        self.installing(STEP, "build-std needs the core sources");
        match cmd::run(Command::new("rustup").args(add.split(' ').skip(1))) {
            Ok(()) if library.is_dir() => self.installed(STEP, ""),
            Ok(()) => self.failed(
                STEP,
                &format!("{} still missing", library.display()),
                &[add.into()],
            ),
            Err(e) => self.failed(STEP, &format!("{e:#}"), &[add.into()]),
        }
    }

    /// Returns whether LLVM's development files are present afterwards.
    fn llvm_dev(&mut self, major: u32) -> bool {
        let pkg = format!("llvm-{major}-dev");
        let prefix = llvm_prefix(major);
        // bpf-linker's build (llvm-sys) needs both: llvm-config to find
        // LLVM, and the libLLVM.so symlink to link against it.
        let present =
            || prefix.join("lib/libLLVM.so").exists() && prefix.join("bin/llvm-config").exists();
        if present() {
            self.ok(&pkg, &prefix.display().to_string());
            return true;
        }
        let sudo = if cmd::is_root() { "" } else { "sudo " };
        let manual = [
            format!("{sudo}apt-get update"),
            format!(
                "{sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {pkg}"
            ),
        ];
        if cmd::find_in_path("apt-get").is_none() {
            let why = format!(
                "apt-get not found: install LLVM {major}'s development files into {}",
                prefix.display()
            );
            self.failed(&pkg, &why, &[]);
            return false;
        }
        if !cmd::is_root() {
            self.failed(&pkg, "apt-get install needs root", &manual);
            return false;
        }
        self.installing(
            &pkg,
            &format!("{} missing", prefix.join("lib/libLLVM.so").display()),
        );
        if let Err(e) = apt(&["update"]) {
            // Stale lists may still hold the package; let the install decide.
            println!("setup: warning: {e:#}; trying the install anyway");
        }
        let install = ["install", "-y", "--no-install-recommends", pkg.as_str()];
        match apt(&install) {
            Ok(()) if present() => {
                self.installed(&pkg, &prefix.display().to_string());
                true
            }
            Ok(()) => {
                let why = format!(
                    "installed, but {} or bin/llvm-config still missing",
                    prefix.display()
                );
                self.failed(&pkg, &why, &manual);
                false
            }
            Err(e) => {
                let why = format!(
                    "{e:#} (offline? if apt does not know {pkg}, LLVM {major} is not packaged for this release: see https://apt.llvm.org)"
                );
                self.failed(&pkg, &why, &manual);
                false
            }
        }
    }

    fn bpf_linker(&mut self, major: u32, llvm_ok: bool) {
        let step = format!("bpf-linker {BPF_LINKER_VERSION}");
        let install = format!(
            "LLVM_PREFIX={} cargo install bpf-linker@{BPF_LINKER_VERSION} --locked --force --no-default-features --features llvm-{major}",
            llvm_prefix(major).display()
        );
        let why = match probe_linker() {
            Ok(l) if l.version != BPF_LINKER_VERSION => {
                format!("{} is version {}", l.path.display(), l.version)
            }
            Ok(l) => match l.llvm_major {
                Some(m) if m != major => format!(
                    "{} was built against LLVM {m} but nightly rustc uses LLVM {major}, so it cannot read rustc's bitcode",
                    l.path.display()
                ),
                _ => return self.ok(&step, &describe_linker(&l)),
            },
            Err(why) => why,
        };
        if !llvm_ok {
            let msg = format!("{why}; building it needs llvm-{major}-dev (see above)");
            return self.failed(&step, &msg, &[install]);
        }
        self.installing(&step, &format!("{why} (rebuilding takes about a minute)"));
        let mut cargo = cmd::cargo([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ]);
        cargo
            .env("LLVM_PREFIX", llvm_prefix(major))
            .stdin(Stdio::null());
        if let Err(e) = cmd::run(&mut cargo) {
            let msg = format!(
                "{e:#}; if bpf-linker {BPF_LINKER_VERSION} has no `llvm-{major}` feature, pick a release that does and update BPF_LINKER_VERSION in xtask/src/setup.rs"
            );
            return self.failed(&step, &msg, &[install]);
        }
        match probe_linker() {
            Ok(l) if l.version == BPF_LINKER_VERSION && l.llvm_major.is_none_or(|m| m == major) => {
                self.installed(&step, &describe_linker(&l))
            }
            Ok(l) => self.failed(
                &step,
                &format!("after install PATH still finds {}", describe_linker(&l)),
                &[],
            ),
            Err(why) => {
                let bin = cargo_home().join("bin");
                let msg = format!("{why} after install: is {} on PATH?", bin.display());
                self.failed(
                    &step,
                    &msg,
                    &[format!("export PATH=\"{}:$PATH\"", bin.display())],
                );
            }
        }
    }
}

fn query_nightly() -> Result<Nightly, String> {
    // `-vV` ignores `--print`, so ask twice, concurrently: the fast path
    // then costs one rustc start-up instead of two.
    let rustc = |args: &[&str]| {
        Command::new("rustc")
            .arg("+nightly")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run rustc: {e}"))
    };
    let version = rustc(&["-vV"])?;
    let sysroot = rustc(&["--print", "sysroot"])?;
    let version = finish(version)?;
    let sysroot = finish(sysroot)?;
    let info = parse_rustc_vv(&version);
    let llvm_major = info
        .llvm_major
        .ok_or("`rustc +nightly -vV` printed no `LLVM version:` line")?;
    let commit: String = info.commit_hash.chars().take(9).collect();
    Ok(Nightly {
        version: format!("{} ({commit})", info.release),
        llvm_major,
        sysroot: sysroot.trim().into(),
    })
}

/// Waits for a probe and returns its stdout, or its first stderr line.
fn finish(child: std::process::Child) -> Result<String, String> {
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(first_line(&out.stderr))
    }
}

fn probe_linker() -> Result<Linker, String> {
    let path = cmd::find_in_path("bpf-linker").ok_or("bpf-linker is not on PATH")?;
    let out = Command::new(&path)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if !out.status.success() {
        // Typically libLLVM.so.<M> was removed after bpf-linker was built.
        return Err(format!(
            "{} does not run: {}",
            path.display(),
            first_line(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (version, printed_llvm) = parse_bpf_linker_version(&text)
        .ok_or_else(|| format!("unexpected `bpf-linker --version` output: {}", text.trim()))?;
    let llvm_major = printed_llvm.or_else(|| {
        let needed = elf::needed_libraries(&path).ok()?;
        elf::llvm_major_from_needed(&needed)
    });
    Ok(Linker {
        path,
        version,
        llvm_major,
    })
}

fn describe_linker(l: &Linker) -> String {
    match l.llvm_major {
        Some(m) => format!("{}, LLVM {m}", l.path.display()),
        None => format!(
            "{}, LLVM version unknown (statically linked?)",
            l.path.display()
        ),
    }
}

fn apt(args: &[&str]) -> Result<()> {
    cmd::run(
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()),
    )
}

fn llvm_prefix(major: u32) -> PathBuf {
    PathBuf::from(format!("/usr/lib/llvm-{major}"))
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cargo"))
}

fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIGHTLY_VV: &str = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)
binary: rustc
commit-hash: e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a
commit-date: 2026-05-19
host: x86_64-unknown-linux-gnu
release: 1.97.0-nightly
LLVM version: 22.1.4
";

    #[test]
    fn parses_rustc_vv() {
        let info = parse_rustc_vv(NIGHTLY_VV);
        assert_eq!(
            info,
            RustcInfo {
                release: "1.97.0-nightly".into(),
                commit_hash: "e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a".into(),
                host: "x86_64-unknown-linux-gnu".into(),
                llvm_major: Some(22),
            }
        );
    }

    #[test]
    fn rustc_vv_without_llvm_line() {
        let info = parse_rustc_vv("rustc 1.0.0\nhost: x86_64-unknown-linux-gnu\n");
        assert_eq!(info.llvm_major, None);
        assert_eq!(info.host, "x86_64-unknown-linux-gnu");
    }

    #[test]
    fn parses_bpf_linker_version() {
        assert_eq!(
            parse_bpf_linker_version("bpf-linker 0.13.0\n"),
            Some(("0.13.0".into(), None))
        );
        // Hypothetical future formats that name the LLVM version.
        assert_eq!(
            parse_bpf_linker_version("bpf-linker 0.14.1 (LLVM 23.0.0)\n"),
            Some(("0.14.1".into(), Some(23)))
        );
        assert_eq!(
            parse_bpf_linker_version("bpf-linker v0.14.1\nLLVM version: 22.1.4\n"),
            Some(("0.14.1".into(), Some(22)))
        );
        assert_eq!(parse_bpf_linker_version("error: no such command\n"), None);
        assert_eq!(parse_bpf_linker_version(""), None);
    }
}
