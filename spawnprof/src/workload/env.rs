//! The spawner's own environment: extra variables and `PATH` misses are set
//! in the process environment (not per `Command`) so every method — raw
//! `execv`, `posix_spawn` with `environ`, std's fast path — hands the same
//! environment to each child.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Default value length when `--env-bytes` is not given: the seeds' harness
/// used 25 `X`s per variable.
pub const DEFAULT_VALUE_LEN: usize = 25;

/// Linux's MAX_ARG_STRLEN: one argv/envp string may not exceed 32 pages.
pub const MAX_ARG_STRLEN: u64 = 32 * 4096;

pub fn var_name(i: u64) -> String {
    format!("SPAWNPROF_ENV_{i}")
}

/// The extra variables for `count` variables totalling `bytes` bytes of
/// `NAME=value` (no NUL). Values are `x` padding spread evenly.
pub fn plan(count: u64, bytes: Option<u64>) -> Result<Vec<(String, String)>, String> {
    let names: Vec<String> = (0..count).map(var_name).collect();
    let overhead: u64 = names.iter().map(|n| n.len() as u64 + 1).sum();
    let values_total = match bytes {
        None => count * DEFAULT_VALUE_LEN as u64,
        Some(b) if b < overhead => {
            return Err(format!(
                "--env-bytes {b} is too small for --env-count {count}: the names and '=' alone take {overhead} bytes; use --env-bytes {overhead} or more"
            ));
        }
        Some(b) => b - overhead,
    };
    let mut vars = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let i = i as u64;
        let len = values_total / count + u64::from(i < values_total % count);
        if name.len() as u64 + 1 + len >= MAX_ARG_STRLEN {
            return Err(format!(
                "each variable would be about {len} bytes, over the kernel's {MAX_ARG_STRLEN}-byte limit per string; raise --env-count or lower --env-bytes"
            ));
        }
        vars.push((name, "x".repeat(len as usize)));
    }
    Ok(vars)
}

/// Sum of `NAME=value` lengths.
pub fn bytes_of(vars: &[(String, String)]) -> u64 {
    vars.iter()
        .map(|(k, v)| (k.len() + 1 + v.len()) as u64)
        .sum()
}

/// `PATH` with `k` nonexistent directories in front.
pub fn path_with_misses(path: &[u8], k: u32) -> OsString {
    let mut out = Vec::new();
    for i in 0..k {
        out.extend_from_slice(format!("/nonexistent/spawnprof-miss-{i}:").as_bytes());
    }
    if path.is_empty() && k > 0 {
        out.pop();
    }
    out.extend_from_slice(path);
    OsString::from_vec(out)
}

/// Set the variables and the PATH misses in this process's environment.
///
/// # Safety
/// Must run while the process is single-threaded (no other thread may read
/// or write the environment concurrently).
pub unsafe fn apply(vars: &[(String, String)], path_misses: u32) {
    for (k, v) in vars {
        // SAFETY: the caller guarantees no concurrent environment access.
        unsafe { std::env::set_var(k, v) };
    }
    if path_misses > 0 {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let new = path_with_misses(path.as_bytes(), path_misses);
        // SAFETY: as above.
        unsafe { std::env::set_var("PATH", new) };
    }
}

/// Resolve `program` the way `execvp` would: a name containing '/' is used
/// as is; a bare name is searched in `path` (empty entries mean ".").
/// Returns the executable found.
pub fn resolve_program(program: &str, path: &[u8]) -> Result<PathBuf, String> {
    if program.contains('/') {
        let p = Path::new(program);
        return if is_executable(p) {
            Ok(p.to_path_buf())
        } else if p.exists() {
            Err(format!(
                "--program {program} is not an executable file; pass an executable such as /bin/true"
            ))
        } else {
            Err(format!(
                "--program {program} does not exist; pass an existing executable such as /bin/true"
            ))
        };
    }
    for dir in path.split(|&b| b == b':') {
        let dir = if dir.is_empty() { b".".as_slice() } else { dir };
        let candidate = Path::new(std::ffi::OsStr::from_bytes(dir)).join(program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    let entries = if path.is_empty() {
        0
    } else {
        path.split(|&b| b == b':').count()
    };
    Err(format!(
        "--program {program} was not found in PATH ({entries} entries); pass an absolute path such as /bin/true, or a name on PATH"
    ))
}

fn is_executable(p: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(p) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c is a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_values_are_25_bytes() {
        let vars = plan(3, None).unwrap();
        assert_eq!(vars.len(), 3);
        assert_eq!(vars[0].0, "SPAWNPROF_ENV_0");
        assert!(vars.iter().all(|(_, v)| v.len() == 25));
    }

    #[test]
    fn bytes_are_exact() {
        for (count, bytes) in [(1, 100), (7, 1000), (250, 30_000), (180, 28_364)] {
            let vars = plan(count, Some(bytes)).unwrap();
            assert_eq!(bytes_of(&vars), bytes, "{count} {bytes}");
            let lens: Vec<usize> = vars.iter().map(|(_, v)| v.len()).collect();
            let (min, max) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
            assert!(max - min <= 1);
        }
        assert!(plan(0, None).unwrap().is_empty());
    }

    #[test]
    fn too_small_or_too_big() {
        let err = plan(10, Some(20)).unwrap_err();
        assert!(err.contains("use --env-bytes"), "{err}");
        assert!(plan(1, Some(200_000)).unwrap_err().contains("limit"));
    }

    #[test]
    fn path_misses() {
        assert_eq!(
            path_with_misses(b"/usr/bin:/bin", 0),
            OsString::from("/usr/bin:/bin")
        );
        assert_eq!(
            path_with_misses(b"/bin", 2),
            OsString::from("/nonexistent/spawnprof-miss-0:/nonexistent/spawnprof-miss-1:/bin")
        );
        assert_eq!(
            path_with_misses(b"", 1),
            OsString::from("/nonexistent/spawnprof-miss-0")
        );
    }

    #[test]
    fn resolving() {
        assert_eq!(
            resolve_program("/bin/true", b"").unwrap(),
            PathBuf::from("/bin/true")
        );
        let misses = path_with_misses(b"/usr/bin:/bin", 3);
        let found = resolve_program("true", misses.as_bytes()).unwrap();
        assert!(found.ends_with("true"));
        assert!(
            resolve_program("spawnprof-no-such-program", b"/usr/bin")
                .unwrap_err()
                .contains("absolute path")
        );
        assert!(
            resolve_program("/nonexistent/x", b"")
                .unwrap_err()
                .contains("does not exist")
        );
        assert!(
            resolve_program("/etc/passwd", b"")
                .unwrap_err()
                .contains("not an executable")
        );
    }
}
