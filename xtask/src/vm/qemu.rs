//! Booting a guest under QEMU TCG, with a timeout, capturing its serial
//! console. No -enable-kvm: it hangs on these hosts, and TCG boots the
//! kernels in seconds.
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::guests::Arch;

/// Boots the kernel with the initramfs and returns the serial console text.
/// The console is written to `log` as it arrives so that it survives a
/// timeout or a crash of this process.
pub fn boot(
    arch: Arch,
    vmlinuz: &Path,
    initrd: &Path,
    log: &Path,
    timeout: Duration,
    verbose: bool,
) -> Result<String> {
    let log_file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let (qemu, cpu) = arch.qemu();
    let mut child = Command::new(qemu)
        .args(cpu)
        .args(["-m", "2048", "-smp", "2"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!("console={} quiet panic=-1", arch.console()))
        .args(["-nographic", "-no-reboot"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "starting {qemu} (apt-get install -y --no-install-recommends {})",
                arch.host_packages()[0]
            )
        })?;
    let console_reader = reader(child.stdout.take(), "stdout", Some(log_file), verbose)?;
    let stderr_reader = reader(child.stderr.take(), "stderr", None, false)?;

    let waited = wait_with_timeout(&mut child, timeout);
    let console = console_reader
        .join()
        .map_err(|_| anyhow!("the console reader thread panicked"))?
        .with_context(|| format!("reading the serial console into {}", log.display()))?;
    let qemu_stderr = stderr_reader
        .join()
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let qemu_stderr = String::from_utf8_lossy(&qemu_stderr);
    let console = String::from_utf8_lossy(&console).replace('\r', "");

    match waited? {
        None => bail!(
            "the VM did not power off within {}s and was killed (raise --timeout, or look \
             at where it stopped); last console lines:\n{}",
            timeout.as_secs(),
            tail(&console, 15)
        ),
        Some(status) if !status.success() => bail!(
            "{qemu} failed ({status}): {}\nlast console lines:\n{}",
            qemu_stderr.trim(),
            tail(&console, 15)
        ),
        Some(_) => Ok(console),
    }
}

/// A thread reading `pipe` to its end, copying what arrives to `log` (and
/// to our stderr when `echo`), returning all of it.
fn reader(
    pipe: Option<impl Read + Send + 'static>,
    what: &str,
    mut log: Option<fs::File>,
    echo: bool,
) -> Result<JoinHandle<std::io::Result<Vec<u8>>>> {
    let mut pipe = pipe.ok_or_else(|| anyhow!("qemu has no {what}"))?;
    Ok(thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = pipe.read(&mut buf)?;
            if n == 0 {
                return Ok(all);
            }
            if let Some(log) = log.as_mut() {
                log.write_all(&buf[..n])?;
            }
            if echo {
                let _ = std::io::stderr().write_all(&buf[..n]);
            }
            all.extend_from_slice(&buf[..n]);
        }
    }))
}

/// Waits for `child`, killing it after `timeout`; None means it was killed.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for qemu")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            child.kill().context("killing qemu after the timeout")?;
            child.wait().context("reaping qemu")?;
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The last `lines` lines of console text, without the firmware's terminal
/// escapes and other control characters.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .join("\n")
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}
