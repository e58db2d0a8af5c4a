//! The `--rss` ballast: anonymous memory made resident before spawning, so
//! that `fork` has page tables to copy (the seeds' "RSS 1..5 GiB" runs).
//!
//! Every page is written once, so the memory is really resident and not
//! just reserved. The mapping is private and never touched again, which
//! keeps later `fork`s from triggering copy-on-write faults in the parent.

use std::io;

use super::config::HugePages;
use crate::sys::procfs::{bracketed, meminfo_field};
use crate::units::format_bytes;

const SMALL_PAGE: usize = 4096;
const THP_SIZE: usize = 2 << 20;

/// Check that `size` bytes backed by `huge` pages can be allocated here.
/// Errors name the remedy (and, for hugetlb, the exact command).
pub fn check_request(size: u64, huge: HugePages) -> Result<(), String> {
    if size == 0 {
        return Ok(());
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    check_request_with(size, huge, &meminfo, thp_enabled().as_deref())
}

/// [`check_request`] on given /proc/meminfo text and THP mode (testable).
pub fn check_request_with(
    size: u64,
    huge: HugePages,
    meminfo: &str,
    thp_mode: Option<&str>,
) -> Result<(), String> {
    if size == 0 {
        return Ok(());
    }
    if usize::try_from(size).is_err() {
        return Err(format!(
            "--rss {size} does not fit this machine's address space"
        ));
    }
    let total = meminfo_field(meminfo, "MemTotal");
    let available = meminfo_field(meminfo, "MemAvailable");
    match huge {
        HugePages::Hugetlb => {
            let page = meminfo_field(meminfo, "Hugepagesize").unwrap_or(THP_SIZE as u64);
            let needed = size.div_ceil(page);
            let pool_total = meminfo_field(meminfo, "HugePages_Total").unwrap_or(0);
            let free = meminfo_field(meminfo, "HugePages_Free").unwrap_or(0);
            if free < needed {
                let target = pool_total - free.min(pool_total) + needed;
                return Err(format!(
                    "--huge-pages hugetlb with --rss {} needs {needed} free huge pages of {}, but only {free} are free ({pool_total} reserved in total). Reserve them as root with:\n    sysctl -w vm.nr_hugepages={target}\n(or: echo {target} > /proc/sys/vm/nr_hugepages), then check HugePages_Free in /proc/meminfo",
                    format_bytes(size),
                    format_bytes(page),
                ));
            }
        }
        HugePages::None | HugePages::Thp => {
            if let Some(total) = total
                && size > total
            {
                return Err(format!(
                    "--rss {} is more than this machine's memory ({} MemTotal); use a smaller --rss, e.g. --rss 1G",
                    format_bytes(size),
                    format_bytes(total)
                ));
            }
            if let Some(avail) = available
                && size > avail
            {
                return Err(format!(
                    "--rss {} is more than the memory available now ({} MemAvailable of {} total); touching it would swap or invoke the OOM killer. Use a smaller --rss",
                    format_bytes(size),
                    format_bytes(avail),
                    format_bytes(total.unwrap_or(0))
                ));
            }
            if huge == HugePages::Thp && thp_mode == Some("never") {
                return Err("--huge-pages thp needs transparent huge pages, but /sys/kernel/mm/transparent_hugepage/enabled is [never]. Enable them as root with:\n    echo madvise > /sys/kernel/mm/transparent_hugepage/enabled".into());
            }
        }
    }
    Ok(())
}

pub fn thp_enabled() -> Option<String> {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .ok()
        .and_then(|s| bracketed(&s))
}

/// Resident, touched anonymous memory; unmapped on drop.
pub struct Ballast {
    ptr: *mut libc::c_void,
    map_len: usize,
    pub requested: u64,
    pub huge: HugePages,
}

// SAFETY: the mapping is owned exclusively and only unmapped on drop.
unsafe impl Send for Ballast {}

impl Ballast {
    /// Map `size` bytes (rounded up to the page size in use) and touch every
    /// page. `size == 0` maps nothing.
    pub fn allocate(size: u64, huge: HugePages) -> io::Result<Ballast> {
        let empty = Ballast {
            ptr: std::ptr::null_mut(),
            map_len: 0,
            requested: size,
            huge,
        };
        if size == 0 {
            return Ok(empty);
        }
        let size = usize::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::ENOMEM))?;
        match huge {
            HugePages::None => {
                let len = size.next_multiple_of(SMALL_PAGE);
                let ptr = mmap_anon(len, 0)?;
                let b = Ballast {
                    ptr,
                    map_len: len,
                    ..empty
                };
                // Guarantee 4 KiB pages even when THP is "always".
                // SAFETY: ptr..ptr+len is our mapping.
                unsafe { libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE) };
                b.touch(SMALL_PAGE);
                Ok(b)
            }
            HugePages::Thp => {
                let len = size.next_multiple_of(THP_SIZE);
                let raw_len = len + THP_SIZE;
                let raw = mmap_anon(raw_len, 0)?;
                // Trim to a 2 MiB-aligned window so every 2 MiB is THP-eligible.
                let start = (raw as usize).next_multiple_of(THP_SIZE);
                let head = start - raw as usize;
                let tail = raw_len - head - len;
                // SAFETY: both trimmed ranges lie inside the fresh mapping.
                unsafe {
                    if head > 0 {
                        libc::munmap(raw, head);
                    }
                    if tail > 0 {
                        libc::munmap((start + len) as *mut libc::c_void, tail);
                    }
                }
                let ptr = start as *mut libc::c_void;
                let b = Ballast {
                    ptr,
                    map_len: len,
                    ..empty
                };
                // SAFETY: ptr..ptr+len is our mapping.
                if unsafe { libc::madvise(ptr, len, libc::MADV_HUGEPAGE) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                b.touch(SMALL_PAGE);
                Ok(b)
            }
            HugePages::Hugetlb => {
                let page = hugetlb_page_size();
                let len = size.next_multiple_of(page);
                let ptr = mmap_anon(len, libc::MAP_HUGETLB)?;
                let b = Ballast {
                    ptr,
                    map_len: len,
                    ..empty
                };
                b.touch(page);
                Ok(b)
            }
        }
    }

    /// Bytes actually mapped (requested size rounded up to whole pages).
    pub fn mapped(&self) -> u64 {
        self.map_len as u64
    }

    fn touch(&self, step: usize) {
        let base = self.ptr.cast::<u8>();
        let mut off = 0;
        while off < self.map_len {
            // SAFETY: off < map_len, inside our writable mapping.
            unsafe { base.add(off).write_volatile(1) };
            off += step;
        }
    }
}

impl Drop for Ballast {
    fn drop(&mut self) {
        if self.map_len > 0 {
            // SAFETY: we own this mapping.
            unsafe { libc::munmap(self.ptr, self.map_len) };
        }
    }
}

fn mmap_anon(len: usize, extra: libc::c_int) -> io::Result<*mut libc::c_void> {
    // SAFETY: anonymous private mapping with no address hint.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p)
    }
}

/// The size of a hugetlb page here (`Hugepagesize`), 2 MiB if unknown.
pub(crate) fn hugetlb_page_size() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| meminfo_field(&m, "Hugepagesize"))
        .map_or(THP_SIZE, |v| v as usize)
}

/// This process's memory mappings (VMAs): a fork copies each one.
pub fn self_mappings() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/maps").ok()?;
    Some(text.lines().count() as u64)
}

/// AnonHugePages of this process (THP-backed anonymous memory) in bytes.
pub fn self_anon_huge() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    meminfo_field(&text, "AnonHugePages")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::procfs::self_status;

    const MEMINFO: &str = "MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\nHugePages_Total:       4\nHugePages_Free:        2\nHugepagesize:       2048 kB\n";

    #[test]
    fn request_checks() {
        let gib = 1u64 << 30;
        assert!(check_request_with(gib, HugePages::None, MEMINFO, Some("madvise")).is_ok());
        let e = check_request_with(10 << 40, HugePages::None, MEMINFO, None).unwrap_err();
        assert!(e.contains("MemTotal") && e.contains("smaller --rss"), "{e}");
        let e = check_request_with(21 * 1000 * 1000 * 1024, HugePages::None, MEMINFO, None)
            .unwrap_err();
        assert!(e.contains("MemAvailable"), "{e}");
        let e = check_request_with(gib, HugePages::Thp, MEMINFO, Some("never")).unwrap_err();
        assert!(e.contains("echo madvise"), "{e}");
        // 1 GiB = 512 pages; 2 of 4 free → reserve 4 - 2 + 512 = 514.
        let e = check_request_with(gib, HugePages::Hugetlb, MEMINFO, None).unwrap_err();
        assert!(e.contains("needs 512 free huge pages"), "{e}");
        assert!(e.contains("sysctl -w vm.nr_hugepages=514"), "{e}");
        assert!(check_request_with(4 << 20, HugePages::Hugetlb, MEMINFO, None).is_ok());
        assert!(check_request_with(0, HugePages::Hugetlb, "", None).is_ok());
    }

    #[test]
    fn ballast_is_resident() {
        let before = self_status("VmRSS").unwrap();
        let b = Ballast::allocate(64 << 20, HugePages::None).unwrap();
        let after = self_status("VmRSS").unwrap();
        assert!(after >= before + (60 << 20), "{before} -> {after}");
        assert_eq!(b.mapped(), 64 << 20);
        drop(b);
        let empty = Ballast::allocate(0, HugePages::Thp).unwrap();
        assert_eq!(empty.mapped(), 0);
    }
}
