//! Just enough ELF reading to list a binary's DT_NEEDED libraries and its
//! dynamic loader.
//!
//! `bpf-linker --version` does not say which LLVM it was built against, but a
//! bpf-linker built with `--features llvm-<M>` links `libLLVM.so.<M>.<minor>`,
//! so its dynamic section does. vm-test copies each guest binary's libraries
//! into the initramfs, for arm64 binaries too, which `ldd` cannot run.
//! Reading the headers directly takes well under a millisecond and needs no
//! binutils.
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

const PT_INTERP: u32 = 3;
const SHT_DYNAMIC: u32 = 6;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

/// The program headers (`program`) or the section headers of a 64-bit
/// little-endian ELF file (x86_64, aarch64), as entries of their size.
fn header_table(file: &mut File, program: bool) -> io::Result<Vec<Vec<u8>>> {
    let header = read_at(file, 0, 64)?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return Err(invalid("not a 64-bit little-endian ELF file"));
    }
    // e_phoff, e_phentsize, e_phnum, or e_shoff, e_shentsize, e_shnum.
    let (off, size) = if program { (0x20, 0x36) } else { (0x28, 0x3a) };
    let entsize = u16_at(&header, size) as usize;
    let count = u16_at(&header, size + 2) as usize;
    // The fields read below lie within 56 bytes (program) or 64 (section).
    if entsize < if program { 56 } else { 64 } {
        return Err(invalid("ELF header entries too short"));
    }
    let table = read_at(file, u64_at(&header, off), entsize * count)?;
    Ok(table.chunks_exact(entsize).map(<[u8]>::to_vec).collect())
}

/// The PT_INTERP path (the dynamic loader), None for a static binary.
pub fn interpreter(path: &Path) -> io::Result<Option<String>> {
    let mut file = File::open(path)?;
    let program_headers = header_table(&mut file, true)?;
    let Some(interp) = program_headers.iter().find(|ph| u32_at(ph, 0) == PT_INTERP) else {
        return Ok(None);
    };
    let bytes = read_at(&mut file, u64_at(interp, 8), u64_at(interp, 32) as usize)?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Ok(Some(String::from_utf8_lossy(&bytes[..end]).into_owned()))
}

/// DT_NEEDED entries of a 64-bit little-endian ELF file (x86_64, aarch64).
pub fn needed_libraries(path: &Path) -> io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    let sections = header_table(&mut file, false)?;
    let Some(dynamic) = sections.iter().find(|s| u32_at(s, 4) == SHT_DYNAMIC) else {
        return Ok(Vec::new()); // statically linked
    };
    // The dynamic section's sh_link names the string table its entries use.
    let strtab = sections
        .get(u32_at(dynamic, 40) as usize)
        .ok_or_else(|| invalid("the dynamic section links to no string table"))?;
    let entries = read_at(&mut file, u64_at(dynamic, 24), u64_at(dynamic, 32) as usize)?;
    let strings = read_at(&mut file, u64_at(strtab, 24), u64_at(strtab, 32) as usize)?;

    let mut needed = Vec::new();
    for entry in entries.chunks_exact(16) {
        match u64_at(entry, 0) {
            DT_NULL => break,
            DT_NEEDED => {
                let start = u64_at(entry, 8) as usize;
                let name = strings.get(start..).unwrap_or_default();
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                needed.push(String::from_utf8_lossy(&name[..end]).into_owned());
            }
            _ => {}
        }
    }
    Ok(needed)
}

/// The LLVM major a binary links against, from sonames such as
/// `libLLVM.so.22.1` (Debian/apt.llvm.org today) or `libLLVM-19.so` (older).
pub fn llvm_major_from_needed(needed: &[String]) -> Option<u32> {
    needed.iter().find_map(|lib| {
        let rest = lib
            .strip_prefix("libLLVM.so.")
            .or_else(|| lib.strip_prefix("libLLVM-"))?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

fn read_at(file: &mut File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    // Guard against corrupt headers asking for absurd allocations.
    if len > 64 << 20 {
        return Err(invalid("ELF section larger than 64 MiB"));
    }
    let mut buf = vec![0; len];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_needed_libraries_of_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let needed = needed_libraries(&exe).unwrap();
        assert!(
            needed.iter().any(|l| l.starts_with("libc.so")),
            "{needed:?}"
        );
    }

    #[test]
    fn reads_the_interpreter_of_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let interp = interpreter(&exe).unwrap().expect("dynamically linked");
        assert!(interp.contains("/ld-linux"), "{interp}");
    }

    #[test]
    fn rejects_non_elf_files() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        assert!(needed_libraries(&manifest).is_err());
    }

    #[test]
    fn llvm_major_from_sonames() {
        let libs = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let debian = libs(&["libLLVM.so.22.1", "libgcc_s.so.1", "libc.so.6"]);
        assert_eq!(llvm_major_from_needed(&debian), Some(22));
        assert_eq!(llvm_major_from_needed(&libs(&["libLLVM-19.so"])), Some(19));
        assert_eq!(llvm_major_from_needed(&libs(&["libc.so.6"])), None);
    }
}
