//! The Debian package, the way a user who is not a Rust developer gets
//! spawnprof: installed with dpkg on this machine, used, and removed,
//! leaving the machine as it was. `cargo xtask test` builds the package
//! (`cargo xtask deb`) and passes its path in `SPAWNPROF_DEB`.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use spawnprof_tests::{out_dir, require_root, spawnprof_bin};

const PACKAGE: &str = "spawnprof";

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"install ok installed"))
}

fn dpkg(args: &[&str]) -> std::process::Output {
    let out = Command::new("dpkg").args(args).output().expect("run dpkg");
    assert!(
        out.status.success(),
        "dpkg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Removes the package however the test ends, so a failure does not leave
/// it installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if installed() {
            let _ = Command::new("dpkg").args(["-r", PACKAGE]).status();
        }
    }
}

#[test]
fn the_deb_installs_records_and_removes_cleanly() {
    let Some(deb) = std::env::var_os("SPAWNPROF_DEB").map(PathBuf::from) else {
        println!(
            "SKIPPED: no package to test: `cargo xtask test` builds one with `cargo xtask deb` (or set SPAWNPROF_DEB)"
        );
        return;
    };
    require_root();
    assert!(deb.is_file(), "{} is not a file", deb.display());
    // Never replace what someone installed on this machine.
    assert!(
        !installed() && !Path::new("/usr/bin/spawnprof").exists(),
        "spawnprof is already installed in /usr/bin; this test installs and removes its own package: remove it first (dpkg -r spawnprof)"
    );
    let info =
        String::from_utf8_lossy(&dpkg(&["--info", deb.to_str().unwrap()]).stdout).into_owned();
    assert!(
        info.contains("Package: spawnprof") && info.contains("Depends: libc6"),
        "{info}"
    );

    let guard = Installed;
    dpkg(&["-i", deb.to_str().unwrap()]);
    assert!(installed());
    let files = String::from_utf8_lossy(&dpkg(&["-L", PACKAGE]).stdout).into_owned();
    for f in [
        "/usr/bin/spawnprof",
        "/usr/bin/spawnprof-spawner",
        "/usr/share/doc/spawnprof/README.md",
        "/usr/share/doc/spawnprof/SERVE.md",
        "/lib/systemd/system/spawnprof-serve.service",
    ] {
        assert!(
            files.lines().any(|l| l == f),
            "{f} not in the package:\n{files}"
        );
    }
    used_as_a_user_would();

    dpkg(&["-r", PACKAGE]);
    drop(guard);
    assert!(!installed());
    assert!(
        !Path::new("/usr/bin/spawnprof").exists(),
        "removed with the package"
    );
    assert!(!Path::new("/usr/bin/spawnprof-spawner").exists());
}

/// `spawnprof record -- /bin/true` from PATH, as the README says, and the
/// reference spawner next to it.
fn used_as_a_user_would() {
    let dir = out_dir("deb-record");
    let out = Command::new("spawnprof")
        .env("PATH", "/usr/bin:/bin")
        .args(["record", "-o"])
        .arg(&dir)
        .args(["--", "/bin/true"])
        .output()
        .expect("run the installed spawnprof");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("recording written to"), "{stderr}");
    for f in ["summary.json", "spawns.jsonl", "report.html"] {
        assert!(dir.join(f).is_file(), "{f} in {}", dir.display());
    }
    // Statically linked, so its forks copy no more mappings than a C
    // loop's; every method still works.
    let spawner = Path::new("/usr/bin/spawnprof-spawner");
    assert!(
        !has_interpreter(spawner),
        "{} is dynamically linked",
        spawner.display()
    );
    for method in [
        "posix-spawn",
        "fork-exec",
        "vfork-exec",
        "clone3-vfork",
        "std",
        "zygote",
    ] {
        let out = Command::new(spawner)
            .args(["--method", method, "--count", "5"])
            .output()
            .expect("run the installed spawner");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("\"failed_spawns\":0"),
            "{method}: {out:?}"
        );
    }
}

/// Whether an ELF64 file has a PT_INTERP program header (a dynamic loader).
fn has_interpreter(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let elf = std::fs::read(path).expect("read the binary");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == PT_INTERP
    })
}

/// The unit the package installs, as systemd reads it: no unknown key, no
/// value it would ignore (systemd only warns about those, and the service
/// would run without its limits).
#[test]
fn the_service_unit_passes_systemd_analyze() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        println!("SKIPPED: systemd-analyze is missing (Debian's systemd package has it)");
        return;
    };
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/spawnprof-serve.service");
    let text = std::fs::read_to_string(&unit).expect("the unit file");
    assert!(
        text.contains("ExecStart=/usr/bin/spawnprof serve"),
        "{text}"
    );
    // Its ExecStart must exist: the binary under test stands in for it.
    let dir = out_dir("systemd-unit");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("spawnprof-serve.service");
    let bin = spawnprof_bin();
    std::fs::write(
        &copy,
        text.replace("/usr/bin/spawnprof", bin.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
