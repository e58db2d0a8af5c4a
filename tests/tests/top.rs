//! `spawnprof top` in a real terminal (tmux): its rows appear while a
//! spawner runs, a key changes the sort, and `q` leaves the terminal as
//! it found it.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use spawnprof_tests::{
    require_root,
    serve::{Cgroup, spawner_named, wait_for},
    spawnprof_bin,
};

struct Tmux {
    session: String,
}

impl Tmux {
    fn start(name: &str) -> Self {
        let session = format!("{name}-{}", std::process::id());
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                "200",
                "-y",
                "40",
                "sh",
            ])
            .status()
            .expect("running tmux (Debian's tmux package)")
            .success();
        assert!(ok, "tmux new-session failed");
        Self { session }
    }

    fn send(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux send-keys {keys:?}");
    }

    fn pane(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn format(&self, what: &str) -> String {
        let out = Command::new("tmux")
            .args(["display-message", "-p", "-t", &self.session, what])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn wait_for_text(&self, text: &str, secs: u64) -> Option<String> {
        wait_for(Duration::from_secs(secs), || {
            let pane = self.pane();
            pane.contains(text).then_some(pane)
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

fn tmux_installed() -> bool {
    Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// tmux and a cgroup for the spawner, or None once the reason is printed.
fn tmux_and_cgroup_or_skip(what: &str, cgroup: &str) -> Option<Cgroup> {
    if !tmux_installed() {
        println!("SKIPPED: {what}: tmux is not installed (`cargo xtask test` installs it)");
        return None;
    }
    Cgroup::new(cgroup)
        .inspect_err(|why| println!("SKIPPED: {what}: cannot make a cgroup v2 directory: {why}"))
        .ok()
}

/// Runs a spawner named `comm` in `cg` until top shows its row; returns
/// the pane then and the row.
fn row_of_a_spawner(tmux: &Tmux, cg: &Cgroup, test: &str, comm: &str) -> (String, String) {
    let spawner = spawner_named(test, comm);
    let mut run = spawn_in(cg, &spawner);
    let prefix = format!("{comm} ");
    let pane = tmux.wait_for_text(&prefix, 20);
    let _ = run.kill();
    let _ = run.wait();
    let pane = pane.unwrap_or_else(|| panic!("no row for the spawner:\n{}", tmux.pane()));
    let row = pane
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap()
        .to_string();
    (pane, row)
}

/// Types q and waits for top to exit 0; the pane after it.
fn quit(tmux: &Tmux) -> String {
    tmux.send(&["q"]);
    let after = tmux.wait_for_text("TOP_EXIT=", 20);
    let after = after.unwrap_or_else(|| panic!("q did not quit top:\n{}", tmux.pane()));
    assert!(after.contains("TOP_EXIT=0"), "{after}");
    after
}

#[test]
fn top_shows_a_row_per_binary_sorts_and_quits_with_the_terminal_restored() {
    require_root();
    let Some(cg) = tmux_and_cgroup_or_skip("top under tmux", "top") else {
        return;
    };
    let tmux = Tmux::start("spawnprof-top");
    let bin = spawnprof_bin();
    let cgroup = cg.path.display().to_string();
    let line = format!(
        // The markers are split with quotes so the typed line does not match them.
        "S=$(stty -g); {} top --cgroup {cgroup}; echo TOP_\"\"EXIT=$?; \
         [ \"$(stty -g)\" = \"$S\" ] && echo TTY_\"\"SAME",
        bin.display()
    );
    tmux.send(&[&line, "Enter"]);
    assert!(
        tmux.wait_for_text("SPAWNS/S", 90).is_some(),
        "top never drew its table:\n{}",
        tmux.pane()
    );
    let (pane, row) = row_of_a_spawner(&tmux, &cg, "top", "sp-top-row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    let total: u64 = cells[2].parse().unwrap_or(0);
    assert!(total > 0, "the row counts no spawn: {row}");
    assert!(
        row.contains("µs") || row.contains("ms"),
        "no latency in the row: {row}"
    );
    assert!(pane.contains("sorted by spawns/s"), "{pane}");
    tmux.send(&["s"]);
    assert!(
        tmux.wait_for_text("sorted by total", 5).is_some(),
        "s did not change the sort:\n{}",
        tmux.pane()
    );
    let after = quit(&tmux);
    assert!(
        after.contains("TTY_SAME"),
        "terminal modes not restored:\n{after}"
    );
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "0",
        "still on the alternate screen"
    );
    assert_eq!(tmux.format("#{cursor_flag}"), "1", "cursor left hidden");
}

fn spawn_in(cg: &Cgroup, spawner: &Path) -> std::process::Child {
    cg.command(
        spawner,
        &[
            "--method",
            "fork-exec",
            "--mode",
            "serial",
            "--warmup",
            "0",
            "--count",
            "5000000",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("starting the spawner")
}

/// `--cgroup-label`: a row per comm and cgroup, the cgroup named by its
/// path below the cgroup2 mount.
#[test]
fn top_with_cgroup_labels_names_each_rows_cgroup() {
    require_root();
    let Some(cg) = tmux_and_cgroup_or_skip("top --cgroup-label", "top-cg") else {
        return;
    };
    let tmux = Tmux::start("spawnprof-top-cg");
    let cgroup = cg.path.display().to_string();
    let line = format!(
        "{} top --cgroup {cgroup} --cgroup-label; echo TOP_\"\"EXIT=$?",
        spawnprof_bin().display()
    );
    tmux.send(&[&line, "Enter"]);
    assert!(
        tmux.wait_for_text("CGROUP", 90).is_some(),
        "top drew no CGROUP column:\n{}",
        tmux.pane()
    );
    let (_, row) = row_of_a_spawner(&tmux, &cg, "top-cg", "sp-top-cg");
    let cells: Vec<&str> = row.split_whitespace().collect();
    let name = format!("/{}", cg.path.file_name().unwrap().to_str().unwrap());
    assert_eq!(cells[1], name, "the row's cgroup: {row}");
    assert!(
        cells[3].parse::<u64>().unwrap_or(0) > 0,
        "no spawn counted: {row}"
    );
    quit(&tmux);
}

/// `top --label-by exec`: a PROGRAM column, and a row for the program the
/// spawner's children exec'd (true), not for the spawner.
#[test]
fn top_by_exec_has_a_row_per_program_the_children_ran() {
    require_root();
    let Some(cg) = tmux_and_cgroup_or_skip("top --label-by exec", "top-exec") else {
        return;
    };
    let tmux = Tmux::start("spawnprof-top-exec");
    let line = format!(
        "{} top --cgroup {} --label-by exec; echo TOP_\"\"EXIT=$?",
        spawnprof_bin().display(),
        cg.path.display()
    );
    tmux.send(&[&line, "Enter"]);
    assert!(
        tmux.wait_for_text("PROGRAM", 90).is_some(),
        "top drew no PROGRAM column:\n{}",
        tmux.pane()
    );
    let spawner = spawner_named("top-exec", "sp-top-exec");
    let mut run = spawn_in(&cg, &spawner);
    let pane = tmux.wait_for_text("true ", 20);
    let _ = run.kill();
    let _ = run.wait();
    let pane = pane.unwrap_or_else(|| panic!("no row for true:\n{}", tmux.pane()));
    let row = pane.lines().find(|l| l.starts_with("true ")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert!(
        cells[2].parse::<u64>().unwrap_or(0) > 0,
        "no spawn counted: {row}"
    );
    quit(&tmux);
}

/// A closed terminal (its tmux session killed) ends `top` and detaches its
/// probes; crossterm alone would spin on the hung-up tty for ever.
#[test]
fn top_exits_when_its_terminal_goes_away() {
    require_root();
    if !tmux_installed() {
        println!("SKIPPED: top hang-up: tmux is not installed (`cargo xtask test` installs it)");
        return;
    }
    let tmux = Tmux::start("spawnprof-top-hup");
    // exec: the pane's process is top itself.
    let line = format!("exec {} top --top-k 4", spawnprof_bin().display());
    tmux.send(&[&line, "Enter"]);
    assert!(
        tmux.wait_for_text("SPAWNS/S", 90).is_some(),
        "top never drew its table:\n{}",
        tmux.pane()
    );
    let pid = tmux.format("#{pane_pid}");
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    let comm = std::fs::read_to_string(proc_dir.join("comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "spawnprof", "pane {pid} is not top");
    drop(tmux);
    let gone = wait_for(Duration::from_secs(10), || {
        (!proc_dir.exists()).then_some(())
    });
    if gone.is_none() {
        let state = std::fs::read_to_string(proc_dir.join("status")).unwrap_or_default();
        // SAFETY: ending the process this test left behind.
        unsafe { libc::kill(pid.parse().unwrap_or(0), libc::SIGKILL) };
        panic!("top still runs 10 s after its terminal closed:\n{state}");
    }
}
