//! Small process and path helpers shared by the subcommands.
use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{Context, Result, bail};

/// The workspace root. xtask is always built from this repository, so the
/// compile-time manifest path is reliable and avoids a slow `cargo metadata`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ lives inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` like cargo does.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => repo_root().join(dir), // join keeps absolute paths as they are
        None => repo_root().join("target"),
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Looks `name` up in PATH the way a shell would (first executable match).
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A `cargo` command run from the workspace root, so that the workspace's
/// default members and `.cargo/config.toml` apply wherever xtask was started.
pub fn cargo<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("cargo");
    cmd.args(args).current_dir(repo_root());
    cmd
}

/// A command that runs `program` as root: directly when we already are root
/// (CI), else through `sudo -E` so SPAWNPROF_* and RUST_LOG survive.
pub fn as_root(program: impl AsRef<OsStr>) -> Result<Command> {
    if is_root() {
        return Ok(Command::new(program));
    }
    if find_in_path("sudo").is_none() {
        bail!("this needs root (eBPF) and sudo is not installed: re-run as root");
    }
    let mut cmd = Command::new("sudo");
    cmd.arg("-E").arg(program);
    Ok(cmd)
}

/// Runs a command with inherited stdio and turns a non-zero exit into an error.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    check(status, cmd)
}

pub fn check(status: ExitStatus, cmd: &Command) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("`{}` failed ({status})", describe(cmd))
    }
}

/// Runs a command and returns its stdout, or None if it could not start or
/// exited non-zero. Used for cheap probes where the reason does not matter.
pub fn stdout_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `program arg1 arg2` for messages.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Installs the Debian packages of `pkgs` that are missing (`who` prefixes
/// what is printed), with `apt-get update` when the first try fails (stale
/// or absent package lists). An error names the command to run by hand.
pub fn ensure_debian_packages(who: &str, pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .copied()
        .filter(|pkg| !is_installed(pkg))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("{who}: installing {}", missing.join(" "));
    let remedy = format!(
        "as root, run: apt-get update && apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if find_in_path("apt-get").is_none() {
        bail!("apt-get not found; install {} by hand", missing.join(" "));
    }
    let install = || {
        let mut apt = Command::new("apt-get");
        apt.args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive");
        run_checked(&mut apt)
    };
    if install().is_err() {
        run_checked(Command::new("apt-get").args(["update", "-q"]))
            .with_context(|| format!("apt-get update failed; {remedy}"))?;
        install().with_context(|| format!("installing {} failed; {remedy}", missing.join(" ")))?;
    }
    if let Some(pkg) = missing.iter().find(|pkg| !is_installed(pkg)) {
        bail!("{pkg} is still not installed after apt-get; {remedy}");
    }
    Ok(())
}

fn is_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout == b"install ok installed")
}

/// Runs `cmd` with its output captured and returns its stdout; the error
/// names the command and quotes its stderr.
pub fn run_checked(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running `{}`", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
