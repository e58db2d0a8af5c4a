//! Helpers for the `serve` and `top` tests: a running `spawnprof serve`,
//! a real Prometheus (Debian's package) scraping it, a cgroup v2 directory
//! to scope them to, and plain HTTP over a socket.
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{out_dir, spawnprof_bin};

/// A free loopback port (bound then released: another process could take
/// it in between, which these tests accept).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a loopback port")
        .port()
}

/// GET `path` from 127.0.0.1:`port`: (status, body), or an error string.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// Polls until `f` returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A running `spawnprof serve`, stopped with SIGTERM on drop.
pub struct Serve {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Serve {
    /// Starts it with `args` (after `serve --listen …`) and waits for /ready.
    pub fn start(test: &str, args: &[&str]) -> Self {
        let port = free_port();
        let dir = out_dir(test);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("serve.log");
        let child = Command::new(spawnprof_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting spawnprof serve");
        let mut serve = Self { child, port, log };
        let ready = wait_for(Duration::from_secs(90), || {
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!("serve exited with {status}: {}", serve.log_text());
            }
            http_get(port, "/ready").ok().filter(|(s, _)| *s == 200)
        });
        assert!(
            ready.is_some(),
            "serve never got ready: {}",
            serve.log_text()
        );
        serve
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn metrics(&self) -> String {
        let (status, body) = http_get(self.port, "/metrics").expect("scraping /metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// SIGTERM, then its exit status (within 30 s).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = wait_for(Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten()
        });
        status.unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!(
                "serve did not stop within 30 s of SIGTERM: {}",
                self.log_text()
            )
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

/// The value of one sample line `name{labels}` (labels as written by serve,
/// in order) on a /metrics page.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A cgroup v2 directory for the test, removed on drop.
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    /// Under the first cgroup2 mount; None (with the reason) when there is none.
    pub fn new(test: &str) -> Result<Self, String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let mount = spawnprof::sys::cgroup::cgroup2_mounts(&info)
            .into_iter()
            .next()
            .ok_or("no cgroup2 mount on this machine")?;
        let path = mount.join(format!("spawnprof-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self { path })
    }

    /// A command that runs `program args…` inside the cgroup.
    pub fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("echo $$ > \"$0\" && exec \"$@\"")
            .arg(self.path.join("cgroup.procs"))
            .arg(program)
            .args(args);
        c
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Its processes are gone by now; a straggler leaves it behind.
        let _ = wait_for(Duration::from_secs(5), || {
            std::fs::remove_dir(&self.path).ok()
        });
    }
}

/// The spawner copied under another name, so its spawns get their own
/// comm label.
pub fn spawner_named(test: &str, name: &str) -> PathBuf {
    let dir = out_dir(&format!("{test}-bin"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::copy(crate::spawner_bin(), &path).expect("copying the spawner");
    path
}

/// A real Prometheus server on loopback scraping serve every second,
/// killed on drop.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

/// Where Debian's package puts it; None when it is not installed.
pub fn prometheus_bin() -> Option<PathBuf> {
    ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Prometheus {
    pub fn start(test: &str, bin: &Path, target_port: u16) -> Self {
        let dir = out_dir(&format!("{test}-prometheus"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  \
                 - job_name: spawnprof\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting prometheus");
        let mut p = Self { child, port, log };
        let ready = wait_for(Duration::from_secs(60), || {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited with {status}: {}", p.log_text());
            }
            http_get(port, "/-/ready").ok().filter(|(s, _)| *s == 200)
        });
        assert!(
            ready.is_some(),
            "prometheus never got ready: {}",
            p.log_text()
        );
        p
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query's first value, if it has one.
    pub fn query(&self, promql: &str) -> Option<f64> {
        let (status, body) = http_get(
            self.port,
            &format!("/api/v1/query?query={}", url_encode(promql)),
        )
        .ok()?;
        assert_eq!(status, 200, "{promql}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Resident memory of `pid` in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The BPF program ids whose file descriptors `pid` holds.
pub fn bpf_prog_ids(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut ids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
