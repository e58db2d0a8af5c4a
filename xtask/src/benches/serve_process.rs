//! A `spawnprof serve` started for a bench: on a free loopback port, ready
//! when started, stopped with SIGTERM when dropped.
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// A running `spawnprof serve --all` on a free loopback port.
pub(super) struct Serve {
    child: Child,
    pub(super) port: u16,
}

impl Serve {
    pub(super) fn start(spawnprof: &Path, args: &[&str]) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(spawnprof)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stderr(Stdio::null())
            .spawn()
            .context("starting spawnprof serve")?;
        let serve = Self { child, port };
        let end = Instant::now() + Duration::from_secs(60);
        while get(port, "/ready").map(|(s, _)| s) != Some(200) {
            if Instant::now() > end {
                bail!("serve did not get ready in 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(serve)
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn scrape(&self) -> Option<usize> {
        get(self.port, "/metrics")
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b.len())
    }

    /// utime + stime in clock ticks (/proc/PID/stat fields 14 and 15).
    pub(super) fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }

    pub(super) fn rss_kib(&self) -> Option<u64> {
        super::storm::vm_kib(self.child.id(), "VmRSS:")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// GET `path` from serve: (status, body).
pub(super) fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((
        head.split_whitespace().nth(1)?.parse().ok()?,
        body.to_string(),
    ))
}
