//! Pages rendered by a real browser: Debian's headless Chromium, which
//! `cargo xtask test` installs. Screenshots land under
//! `target/screenshots/` for a reviewer to look at.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The browser this machine has, if any (`SPAWNPROF_CHROMIUM` overrides).
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SPAWNPROF_CHROMIUM") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// The line a test prints when it cannot run a browser.
pub const NO_CHROMIUM: &str = "SKIPPED: no chromium on PATH (apt-get install --no-install-recommends chromium, or set SPAWNPROF_CHROMIUM)";

/// Where screenshots are kept, for people to look at.
pub fn screenshot_dir() -> PathBuf {
    let dir = super::workspace_root().join("target").join("screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    dir
}

/// A browser run on one page.
pub struct Page<'a> {
    pub browser: &'a Path,
    pub page: &'a Path,
    /// Appended to the address, e.g. `#sort=-processes`.
    pub fragment: &'a str,
    /// A throwaway profile directory.
    pub profile: &'a Path,
}

impl Page<'_> {
    /// Runs headless Chromium with `extra` arguments; returns its stdout
    /// and stderr. Offline: no component updates, sync or background
    /// requests.
    pub fn run(&self, extra: &[&str]) -> (String, String) {
        let mut child = Command::new(self.browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", self.profile.display()))
            .args(extra)
            .arg(format!("file://{}{}", self.page.display(), self.fragment))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // Read both pipes on threads so a chatty browser cannot block on them.
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let out_t = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut s);
            s
        });
        let err_t = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut s);
            s
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            match child.try_wait().expect("wait for chromium") {
                Some(_) => break,
                None if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("chromium did not finish rendering in 90 s");
                }
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        (
            out_t.join().unwrap_or_default(),
            err_t.join().unwrap_or_default(),
        )
    }

    /// The DOM after the page's scripts ran.
    pub fn dom(&self) -> String {
        let (dom, log) = self.run(&["--virtual-time-budget=2000", "--dump-dom"]);
        assert_no_console_errors(&log);
        dom
    }

    /// A screenshot `width`×`height` into `png`; returns its bytes.
    pub fn screenshot(&self, png: &Path, width: u32, height: u32) -> Vec<u8> {
        let (_, log) = self.run(&[
            &format!("--screenshot={}", png.display()),
            &format!("--window-size={width},{height}"),
            "--hide-scrollbars",
        ]);
        assert_no_console_errors(&log);
        let bytes = std::fs::read(png)
            .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{log}", png.display()));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        bytes
    }
}

fn assert_no_console_errors(log: &str) {
    for line in log.lines() {
        assert!(
            !line.contains("Uncaught") && !line.contains("ERROR:CONSOLE"),
            "console error while rendering: {line}"
        );
    }
}

/// The width and height of a PNG (its IHDR chunk).
pub fn png_size(png: &[u8]) -> (u32, u32) {
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}
