//! CPU lists (`0`, `0-3,6`) and the spawner's CPU affinity: where a child
//! first runs, on its parent's CPU or on another that must be woken first,
//! can cost more than the spawn itself, so the bench controls it.
use std::{fmt, io, str::FromStr};

use serde::{Deserialize, Serialize};

/// CPUs an affinity mask can name (glibc's `cpu_set_t`).
const MAX_CPUS: u32 = libc::CPU_SETSIZE as u32;

/// A non-empty set of CPU numbers, kept sorted and without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(Vec<u32>);

impl CpuList {
    /// One CPU.
    pub fn single(cpu: u32) -> CpuList {
        CpuList(vec![cpu])
    }

    pub fn cpus(&self) -> &[u32] {
        &self.0
    }

    /// The CPUs the calling thread may run on.
    pub fn allowed() -> io::Result<CpuList> {
        // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the size passed is the size of `set`.
        let rc =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: CPU_ISSET reads the set for cpu < CPU_SETSIZE.
        let cpus: Vec<u32> = (0..MAX_CPUS)
            .filter(|&c| unsafe { libc::CPU_ISSET(c as usize, &set) })
            .collect();
        Ok(CpuList(cpus))
    }

    /// Restricts the calling thread, and so every thread and process it
    /// creates afterwards, to these CPUs.
    pub fn pin_current_thread(&self) -> io::Result<()> {
        // SAFETY: as in `allowed`.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in &self.0 {
            // SAFETY: parsing keeps every cpu below CPU_SETSIZE.
            unsafe { libc::CPU_SET(c as usize, &mut set) };
        }
        // SAFETY: the size passed is the size of `set`.
        let rc =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl fmt::Display for CpuList {
    /// Ranges of consecutive CPUs: `0-3,6`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end = self.0[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

impl FromStr for CpuList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |t: &str| -> Result<u32, String> {
            let n: u32 = t.trim().parse().map_err(|_| {
                format!("'{s}' is not a CPU list; use CPU numbers and ranges, e.g. 0 or 0-3,6")
            })?;
            if n >= MAX_CPUS {
                return Err(format!("CPU {n} is out of range (0..{MAX_CPUS})"));
            }
            Ok(n)
        };
        let mut cpus = Vec::new();
        for part in s.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (number(a)?, number(b)?);
                    if a > b {
                        return Err(format!("CPU range {a}-{b} is backwards; write {b}-{a}"));
                    }
                    cpus.extend(a..=b);
                }
                None => cpus.push(number(part)?),
            }
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(CpuList(cpus))
    }
}

impl Serialize for CpuList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CpuList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_to_sorted_sets_and_print_as_ranges() {
        let l: CpuList = "6,0-3,2".parse().unwrap();
        assert_eq!(l.cpus(), &[0, 1, 2, 3, 6]);
        assert_eq!(l.to_string(), "0-3,6");
        assert_eq!(CpuList::single(5).to_string(), "5");
        assert_eq!("1,3,4".parse::<CpuList>().unwrap().to_string(), "1,3-4");
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(json, "\"0-3,6\"");
        assert_eq!(serde_json::from_str::<CpuList>(&json).unwrap(), l);
    }

    #[test]
    fn nonsense_lists_are_rejected_with_an_example() {
        for bad in ["", "x", "1,", "-1", "3-1", "1-", "0-99999"] {
            let err = bad.parse::<CpuList>().unwrap_err();
            assert!(
                err.contains("e.g.") || err.contains("range") || err.contains("backwards"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn this_thread_has_some_cpu() {
        let allowed = CpuList::allowed().unwrap();
        assert!(!allowed.cpus().is_empty());
    }
}
