//! The guests' initramfs: three gzipped newc cpio archives, which the kernel
//! unpacks one over the other. The base (busybox for the architecture) and
//! the payload (the binaries under test with the libraries they load) are
//! cached and rebuilt only when their inputs change; each guest adds its own
//! small /init.
use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, ensure};

use super::apt::Apt;
use super::binaries::Binaries;
use super::console::marker;
use super::files::{copy_file, create_dir, read_dir, remove_dir_if_exists, set_executable};
use super::guests::Arch;
use super::runs::{VmCommand, sh_quote};
use crate::elf;

/// Limit for each command inside the VM, so one hung command still leaves
/// time for the others (and for the dmesg dump) before the host gives up.
const COMMAND_TIMEOUT_SECS: u32 = 100;
/// Outputs longer than this many lines come back shortened to their first
/// and last KEEP_LINES lines (JSON outputs stay far below).
const MAX_LINES: usize = 10_000;
const KEEP_LINES: usize = 3_000;

/// The base archive for `arch`: Debian's busybox-static for it, which /init
/// links its applets to. Downloaded through vm-test's apt once.
pub fn base(cache: &Path, apt: &Apt, arch: Arch) -> Result<PathBuf> {
    let unpacked = cache.join(format!("busybox-{}", arch.debian()));
    // bookworm's package has bin/busybox, trixie's usr/bin/busybox.
    let find = || {
        ["bin/busybox", "usr/bin/busybox"]
            .map(|p| unpacked.join(p))
            .into_iter()
            .find(|p| p.is_file())
    };
    let busybox = match find() {
        Some(busybox) => busybox,
        None => {
            println!("vm-test: downloading busybox-static for {}", arch.debian());
            apt.unpack(&format!("busybox-static:{}", arch.debian()), &unpacked)?;
            find().ok_or_else(|| anyhow!("busybox-static has no bin/busybox"))?
        }
    };
    let out = cache.join(format!("base-{}.cpio.gz", arch.debian()));
    cached(&out, &key(std::slice::from_ref(&busybox))?, |root| {
        for dir in [
            "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "root", "etc",
        ] {
            create_dir(&root.join(dir))?;
        }
        install_executable(&busybox, &root.join("bin/busybox"))?;
        let sh = root.join("bin/sh");
        symlink("busybox", &sh).with_context(|| format!("linking {}", sh.display()))
    })
}

/// The payload archive: the binaries under test at / and every library they
/// load (the dynamic loader at its PT_INTERP path, the others in the
/// architecture's multiarch directory).
pub fn payload(cache: &Path, bins: &Binaries) -> Result<PathBuf> {
    let mut files: Vec<(PathBuf, PathBuf)> =
        vec![(bins.spawnprof.clone(), PathBuf::from("/spawnprof"))];
    if let Some(spawner) = &bins.spawner {
        files.push((spawner.clone(), PathBuf::from("/spawnprof-spawner")));
    }
    let mut libs = Vec::new();
    for (binary, _) in &files {
        libs.extend(libraries(binary, bins.arch)?);
    }
    files.extend(libs);
    let sources: Vec<PathBuf> = files.iter().map(|(from, _)| from.clone()).collect();
    let out = cache.join(format!("payload-{}.cpio.gz", bins.arch.debian()));
    cached(&out, &key(&sources)?, |root| {
        for (from, to) in &files {
            let dest = root.join(to.strip_prefix("/").unwrap_or(to));
            if let Some(parent) = dest.parent() {
                create_dir(parent)?;
            }
            install_executable(from, &dest)?; // follows symlinks: the VM gets real files
        }
        Ok(())
    })
}

/// One guest's initrd: the base, the payload and an archive holding only
/// its /init, written to `out`.
pub fn initrd(base: &Path, payload: &Path, init: &str, out: &Path) -> Result<()> {
    let init_cpio = out.with_extension("init.cpio.gz");
    pack_dir(&init_cpio, |root| {
        let path = root.join("init");
        fs::write(&path, init).with_context(|| format!("writing {}", path.display()))?;
        set_executable(&path)
    })?;
    let mut file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    for part in [base, payload, &init_cpio] {
        let bytes = fs::read(part).with_context(|| format!("reading {}", part.display()))?;
        file.write_all(&bytes)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// (host file, guest path) of every library `binary` loads, found in the
/// host's directories for its architecture, the dynamic loader included.
fn libraries(binary: &Path, arch: Arch) -> Result<Vec<(PathBuf, PathBuf)>> {
    let (guest_dir, host_dirs) = arch.lib_dirs();
    let find = |name: &str| {
        host_dirs
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|p| p.exists())
            .ok_or_else(|| {
                anyhow!(
                    "{} needs {name}, which is in none of {}",
                    binary.display(),
                    host_dirs.join(", ")
                )
            })
    };
    let read_err = |e| anyhow!("reading {}: {e}", binary.display());
    let mut found = Vec::new();
    if let Some(interp) = elf::interpreter(binary).map_err(read_err)? {
        let name = Path::new(&interp).file_name().unwrap_or_default();
        found.push((find(&name.to_string_lossy())?, PathBuf::from(&interp)));
    }
    let mut queue = elf::needed_libraries(binary).map_err(read_err)?;
    let mut seen = HashSet::new();
    while let Some(name) = queue.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let path = find(&name)?;
        queue.extend(elf::needed_libraries(&path).map_err(read_err)?);
        found.push((path, Path::new(guest_dir).join(&name)));
    }
    Ok(found)
}

/// `out`, built by `fill` (into an empty staging dir) unless it was last
/// built from inputs with the same `key`.
fn cached(out: &Path, key: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let key_file = out.with_extension("key");
    if out.is_file() && fs::read_to_string(&key_file).ok().as_deref() == Some(key) {
        return Ok(out.to_path_buf());
    }
    pack_dir(out, fill)?;
    fs::write(&key_file, key).with_context(|| format!("writing {}", key_file.display()))?;
    Ok(out.to_path_buf())
}

/// The inputs' paths, sizes and modification times: what a rebuild changes.
fn key(inputs: &[PathBuf]) -> Result<String> {
    let mut key = String::new();
    for input in inputs {
        let m = fs::metadata(input).with_context(|| format!("reading {}", input.display()))?;
        let _ = writeln!(
            key,
            "{} {} {}.{}",
            input.display(),
            m.size(),
            m.mtime(),
            m.mtime_nsec()
        );
    }
    Ok(key)
}

/// Fills a fresh staging dir next to `out` with `fill` and packs it to `out`.
fn pack_dir(out: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let root = out.with_extension("staging");
    remove_dir_if_exists(&root)?;
    create_dir(&root)?;
    fill(&root)?;
    pack_cpio(&root, out)?;
    remove_dir_if_exists(&root)
}

fn install_executable(from: &Path, to: &Path) -> Result<()> {
    copy_file(from, to)?;
    set_executable(to)
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

/// The /init script (PID 1 in the VM): link busybox's applets, mount what
/// spawnprof needs, run each command with its output captured to a file (so
/// it is not interleaved and does not see a tty, which keeps progress bars
/// out), print that output between markers with the exit status and the
/// time it took, then power off.
pub fn init_script(nonce: &str, cmds: &[VmCommand]) -> String {
    let mut s = format!(
        r#"#!/bin/sh
# Generated by `cargo xtask vm-test`; runs as PID 1 in the test VM.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=dumb
# busybox finds itself through /proc to link its applets.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpffs /sys/fs/bpf
# Keep kernel messages off the console so they cannot split the lines the
# host parses; the dmesg command dumps them instead.
dmesg -n 1
# Centiseconds since boot, for each section's duration.
now() {{
    cut -d' ' -f1 /proc/uptime | tr -d .
}}
section() {{
    echo "{mark} begin $1"
    start=$(now)
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
    echo "{mark} end $1 rc=$rc cs=$(( $(now) - start ))"
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
