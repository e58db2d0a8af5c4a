//! The guest's initramfs: busybox with its applet links, the binaries under
//! test with the libraries they load, and the /init script that runs the
//! commands and powers off; packed as a gzipped newc cpio.
use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, ensure};

use super::binaries::Binaries;
use super::console::marker;
use super::files::{copy_file, create_dir, read_dir, remove_dir_if_exists, set_executable};
use super::runs::VmCommand;
use crate::cmd::run_checked;

/// Where busybox-static installs its (statically linked) binary.
const BUSYBOX: &str = "/bin/busybox";
/// Limit for each command inside the VM, so one hung command still leaves
/// time for the others (and for the dmesg dump) before the host gives up.
const COMMAND_TIMEOUT_SECS: u32 = 100;
/// Outputs longer than this many lines come back shortened to their first
/// and last KEEP_LINES lines (JSON outputs stay far below).
const MAX_LINES: usize = 10_000;
const KEEP_LINES: usize = 3_000;

/// Stages busybox (with its applet links), the binaries under test with the
/// libraries they load, and /init, then packs it all as a gzipped newc cpio.
pub fn build_initramfs(cache: &Path, bins: &Binaries, init: &str) -> Result<PathBuf> {
    let root = cache.join("initramfs");
    remove_dir_if_exists(&root)?;
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "root", "etc",
    ] {
        create_dir(&root.join(dir))?;
    }

    install_busybox(&root)?;
    let mut binaries = vec![(bins.spawnprof.clone(), "spawnprof")];
    if let Some(spawner) = &bins.spawner {
        binaries.push((spawner.clone(), "spawnprof-spawner"));
    }
    let mut libs = HashSet::new();
    for (path, name) in &binaries {
        install_executable(path, &root.join(name))?;
        libs.extend(shared_libraries(path)?);
    }
    for lib in &libs {
        // Same absolute path as on the host: that is where the binaries'
        // PT_INTERP and the loader's default search path look.
        let dest = root.join(lib.strip_prefix("/").unwrap_or(lib));
        if let Some(parent) = dest.parent() {
            create_dir(parent)?;
        }
        copy_file(lib, &dest)?; // follows symlinks: the VM gets real files
    }

    let init_path = root.join("init");
    fs::write(&init_path, init).with_context(|| format!("writing {}", init_path.display()))?;
    set_executable(&init_path)?;

    let initrd = cache.join("initrd.gz");
    pack_cpio(&root, &initrd)?;
    Ok(initrd)
}

fn install_busybox(root: &Path) -> Result<()> {
    let busybox = root.join("bin/busybox");
    install_executable(Path::new(BUSYBOX), &busybox)?;
    ensure!(
        shared_libraries(Path::new(BUSYBOX))?.is_empty(),
        "{BUSYBOX} is dynamically linked; install busybox-static \
         (apt-get install -y --no-install-recommends busybox-static)"
    );
    let list = run_checked(Command::new(BUSYBOX).arg("--list-full"))?;
    for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let link = root.join(applet);
        if link.exists() {
            continue;
        }
        if let Some(parent) = link.parent() {
            create_dir(parent)?;
        }
        symlink("/bin/busybox", &link).with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

fn install_executable(from: &Path, to: &Path) -> Result<()> {
    copy_file(from, to)?;
    set_executable(to)
}

/// The absolute paths `ldd` lists for `binary`, the dynamic loader included;
/// empty for a static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .with_context(|| format!("running ldd {}", binary.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.contains("not a dynamic executable") || stderr.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    ensure!(
        out.status.success(),
        "ldd {} failed: {stderr}",
        binary.display()
    );
    let mut libs = Vec::new();
    for line in stdout.lines().map(str::trim) {
        // `libc.so.6 => /lib/.../libc.so.6 (0x..)`, `/lib64/ld-linux-x86-64.so.2 (0x..)`,
        // or `linux-vdso.so.1 (0x..)` (in the kernel, nothing to copy).
        let target = line.split_once("=>").map_or(line, |(_, t)| t.trim());
        ensure!(
            !target.starts_with("not found"),
            "{} needs a library that is not installed: {line}",
            binary.display()
        );
        if let Some(path) = target
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// `find . | cpio -o -H newc | gzip`, without a shell so each tool's failure
/// is reported on its own.
fn pack_cpio(root: &Path, initrd: &Path) -> Result<()> {
    let mut list = String::new();
    list_tree(root, Path::new("."), &mut list)?;

    let tmp = initrd.with_extension("gz.tmp");
    let out = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet", "-R", "0:0"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running cpio (apt-get install -y --no-install-recommends cpio)")?;
    let cpio_out = cpio
        .stdout
        .take()
        .ok_or_else(|| anyhow!("cpio has no stdout"))?;
    let mut gzip = Command::new("gzip")
        .arg("-1") // the kernel unpacks it under TCG: fast beats small
        .stdin(cpio_out)
        .stdout(out)
        .spawn()
        .context("running gzip")?;
    {
        let mut stdin = cpio
            .stdin
            .take()
            .ok_or_else(|| anyhow!("cpio has no stdin"))?;
        stdin
            .write_all(list.as_bytes())
            .context("feeding the file list to cpio")?;
    } // dropping stdin ends cpio's input
    let cpio_status = cpio.wait().context("waiting for cpio")?;
    let gzip_status = gzip.wait().context("waiting for gzip")?;
    ensure!(cpio_status.success(), "cpio failed ({cpio_status})");
    ensure!(gzip_status.success(), "gzip failed ({gzip_status})");
    fs::rename(&tmp, initrd).with_context(|| format!("moving {}", initrd.display()))
}

/// Pre-order listing (each directory before its contents, as the kernel's
/// unpacker needs), relative to `root`, sorted so the archive is reproducible.
fn list_tree(root: &Path, rel: &Path, out: &mut String) -> Result<()> {
    let mut entries: Vec<_> = read_dir(&root.join(rel))?
        .into_iter()
        .map(|e| e.file_name())
        .collect();
    entries.sort();
    for name in entries {
        let path = rel.join(&name);
        let _ = writeln!(out, "{}", path.display());
        let meta = fs::symlink_metadata(root.join(&path))
            .with_context(|| format!("reading {}", path.display()))?;
        if meta.is_dir() {
            list_tree(root, &path, out)?;
        }
    }
    Ok(())
}

/// The /init script (PID 1 in the VM): mount what spawnprof needs, run each
/// command with its output captured to a file (so it is not interleaved and
/// does not see a tty, which keeps progress bars out), print that output
/// between markers with the exit status, then power off.
pub fn init_script(nonce: &str, cmds: &[VmCommand]) -> String {
    let mut s = format!(
        r#"#!/bin/sh
# Generated by `cargo xtask vm-test`; runs as PID 1 in the test VM.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpffs /sys/fs/bpf
# Keep kernel messages off the console so they cannot split the lines the
# host parses; the dmesg command dumps them instead.
dmesg -n 1
section() {{
    echo "{mark} begin $1"
    timeout {COMMAND_TIMEOUT_SECS} sh -c "$2" </dev/null >/tmp/.section-out 2>&1
    rc=$?
    # Verifier logs can run to 100k lines, minutes over the serial port:
    # keep head and tail of such floods.
    n=$(wc -l </tmp/.section-out)
    if [ "$n" -gt {MAX_LINES} ]; then
        head -n {KEEP_LINES} /tmp/.section-out
        echo "[vm-test: $((n - 2 * {KEEP_LINES})) lines omitted]"
        tail -n {KEEP_LINES} /tmp/.section-out
    else
        cat /tmp/.section-out
    fi
    echo
    echo "{mark} end $1 rc=$rc"
}}
# The firmware leaves terminal escapes on the current line: start a fresh one.
echo
echo "{mark} ready"
"#,
        mark = marker(nonce),
    );
    for cmd in cmds {
        let _ = writeln!(
            s,
            "section {} {}",
            sh_quote(&cmd.name),
            sh_quote(&cmd.shell)
        );
    }
    s.push_str("sync\npoweroff -f\n");
    s
}

pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
