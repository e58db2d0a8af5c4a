//! `--minimal-child`: a program that only calls exit(0), so a spawn can be
//! measured without the child's own start-up. A dynamically linked
//! /bin/true spends far longer loading libraries and initialising glibc
//! (about 750 µs on the development VM, mostly `cpuid` probing that traps
//! to the hypervisor) than the spawn itself takes, and it runs between the
//! spawns, evicting their caches.
//!
//! The program is a hand-made static ELF file of one loadable segment,
//! written to a temporary file for the length of the run.
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// exit(0) in machine code, and the ELF machine number to go with it.
#[cfg(target_arch = "x86_64")]
const CODE: (&[u8], u16) = (
    &[
        0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60 (exit)
        0x31, 0xff, // xor edi, edi
        0x0f, 0x05, // syscall
    ],
    0x3e,
);
#[cfg(target_arch = "aarch64")]
const CODE: (&[u8], u16) = (
    &[
        0x00, 0x00, 0x80, 0xd2, // mov x0, #0
        0xa8, 0x0b, 0x80, 0xd2, // mov x8, #93 (exit)
        0x01, 0x00, 0x00, 0xd4, // svc #0
    ],
    0xb7,
);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const CODE: (&[u8], u16) = (&[], 0);

pub const SUPPORTED: bool = !CODE.0.is_empty();

const LOAD_ADDRESS: u64 = 0x40_0000;
const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;

/// The whole file: ELF header, one PT_LOAD program header mapping the file
/// read+execute, then the code.
pub fn image() -> Vec<u8> {
    let (code, machine) = CODE;
    let size = EHDR_SIZE + PHDR_SIZE + code.len() as u64;
    let mut f = Vec::with_capacity(size as usize);
    f.extend_from_slice(b"\x7fELF");
    f.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little-endian, version 1, System V
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&machine.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    f.extend_from_slice(&(LOAD_ADDRESS + EHDR_SIZE + PHDR_SIZE).to_le_bytes()); // entry
    f.extend_from_slice(&EHDR_SIZE.to_le_bytes()); // program headers
    f.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    f.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    f.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes()); // one program header
    f.extend_from_slice(&[0; 6]); // no sections
    f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    f.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    f.extend_from_slice(&0u64.to_le_bytes()); // from file offset 0
    f.extend_from_slice(&LOAD_ADDRESS.to_le_bytes());
    f.extend_from_slice(&LOAD_ADDRESS.to_le_bytes());
    f.extend_from_slice(&size.to_le_bytes()); // file size
    f.extend_from_slice(&size.to_le_bytes()); // memory size
    f.extend_from_slice(&0x1000u64.to_le_bytes()); // alignment
    f.extend_from_slice(code);
    f
}

/// The program on disk; removed when dropped.
pub struct MinimalChild {
    path: PathBuf,
}

impl MinimalChild {
    /// Writes the program into `dir` and checks that it runs there (a
    /// directory mounted noexec would fail every spawn).
    pub fn create(dir: &Path) -> io::Result<MinimalChild> {
        let path = dir.join(format!("spawnprof-exit-only-{}", std::process::id()));
        let _ = fs::remove_file(&path);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "creating {}: {e} (point TMPDIR at a writable directory)",
                        path.display()
                    ),
                )
            })?;
        file.write_all(&image())?;
        drop(file);
        // Set after creation: a creation mode would be cut by the umask.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        let child = MinimalChild { path };
        let ran = std::process::Command::new(&child.path).status();
        match ran {
            Ok(status) if status.success() => Ok(child),
            Ok(status) => Err(io::Error::other(format!(
                "{} exited with {status}",
                child.path.display()
            ))),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot run {}: {e} (is {} mounted noexec? point TMPDIR at a directory that allows executables)",
                    child.path.display(),
                    dir.display()
                ),
            )),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MinimalChild {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimal_child_runs_and_exits_0() {
        if !SUPPORTED {
            eprintln!("SKIPPED: no exit(0) machine code for this architecture");
            return;
        }
        let dir = std::env::temp_dir();
        let child = MinimalChild::create(&dir).expect("create and run");
        let path = child.path().to_path_buf();
        assert_eq!(fs::metadata(&path).unwrap().len(), image().len() as u64);
        assert!(
            std::process::Command::new(&path)
                .status()
                .unwrap()
                .success()
        );
        drop(child);
        assert!(!path.exists(), "removed when dropped");
    }
}
