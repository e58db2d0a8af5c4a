//! The terminal report's findings: the hidden spawn costs a recording
//! shows, each in one line with its figures and what avoids it. A fork
//! that execs at once still copies its parent's page tables; a PATH search
//! pays one failed exec per directory; a wrapper (Java's jspawnhelper,
//! env) pays a second exec. A cost below [`WORTH_SAYING`] of spawn time
//! is left out.
use std::collections::BTreeMap;

use crate::{analysis::Accumulator, model::SpawnRecord, units::format_ns};

/// The share of all spawn time a cost must reach to be a finding.
const WORTH_SAYING: f64 = 0.05;

/// The findings of `records` (the terminal keeps the first thousand: the
/// shares are of their spawn time, each spawn's clone entry to its exec).
pub fn findings(records: &[SpawnRecord]) -> Vec<String> {
    let mut acc = Accumulator::default();
    records.iter().for_each(|r| acc.add(r));
    let spawn_ns = acc.spawn_time().map_or(0, |t| t.total.total_ns);
    let spawns: Vec<&SpawnRecord> = records.iter().filter(|r| !r.root && !r.thread).collect();
    [forks_that_exec, path_searches, wrappers]
        .iter()
        .filter_map(|finding| finding(&spawns, spawn_ns))
        .collect()
}

/// Sums `values`, and says whether that sum is worth a finding.
fn worth(values: &[u64], spawn_ns: u64) -> Option<u64> {
    let sum: u64 = values.iter().sum();
    (spawn_ns > 0 && sum as f64 >= WORTH_SAYING * spawn_ns as f64).then_some(sum)
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values
        .get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

/// The most frequent of `names`, with its count.
fn most_common<'a>(names: impl Iterator<Item = &'a str>) -> (String, usize) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    names.for_each(|n| *counts.entry(n).or_default() += 1);
    let (name, n) = counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .unwrap_or(("", 0));
    (name.to_string(), n)
}

/// Forks whose child exec'd: the page-table copy bought nothing.
fn forks_that_exec(spawns: &[&SpawnRecord], spawn_ns: u64) -> Option<String> {
    let forks: Vec<&&SpawnRecord> = (spawns.iter())
        .filter(|r| r.method.as_deref() == Some("fork") && r.exec_path.is_some())
        .collect();
    let (stage, what) = match forks.iter().any(|r| r.duration("dup_mmap").is_some()) {
        true => ("dup_mmap", "copying the parent's page tables (dup_mmap)"),
        false => ("copy_process", "duplicating the parent (copy_process)"),
    };
    let mut copies: Vec<u64> = forks.iter().filter_map(|r| r.duration(stage)).collect();
    let sum = worth(&copies, spawn_ns)?;
    let (parent, n) = most_common(forks.iter().filter_map(|r| r.parent_comm.as_deref()));
    Some(format!(
        "{} spawns forked and then exec'd ({n} by {parent}): {what} took {} p50, {} in all \
         ({:.0}% of spawn time). A child that execs at once can skip that copy: posix_spawn, \
         or vfork (CLONE_VM|CLONE_VFORK).",
        forks.len(),
        format_ns(median(&mut copies)),
        format_ns(sum),
        100.0 * sum as f64 / spawn_ns as f64,
    ))
}

/// Failed execs before a successful one: a PATH search.
fn path_searches(spawns: &[&SpawnRecord], spawn_ns: u64) -> Option<String> {
    let searched: Vec<&&SpawnRecord> = (spawns.iter())
        .filter(|r| r.exec_path.is_some() && r.failed_exec_attempts > 0)
        .collect();
    let times: Vec<u64> = searched
        .iter()
        .filter_map(|r| r.duration("path_search"))
        .collect();
    let sum = worth(&times, spawn_ns)?;
    let failed: u64 = searched.iter().map(|r| r.failed_exec_attempts).sum();
    let (program, _) = most_common(searched.iter().filter_map(|r| r.exec_path.as_deref()));
    Some(format!(
        "{} spawns searched PATH before their exec (most often for {program}): {failed} failed \
         execs, {:.1} a spawn, {} in all ({:.0}% of spawn time). Exec by full path, or put the \
         program's directory first in PATH.",
        searched.len(),
        failed as f64 / searched.len() as f64,
        format_ns(sum),
        100.0 * sum as f64 / spawn_ns as f64,
    ))
}

/// Processes that exec'd again after their first exec: each second exec
/// is a cost on top of the spawn (it falls in the child's run).
fn wrappers(spawns: &[&SpawnRecord], spawn_ns: u64) -> Option<String> {
    let mut again: Vec<(&str, u64)> = Vec::new();
    for r in spawns {
        let mut ok = r.exec_attempts.iter().filter(|a| a.succeeded());
        let (Some(_), Some(second)) = (ok.next(), ok.next()) else {
            continue;
        };
        let took = second.exit.map_or(0, |e| e.saturating_sub(second.enter));
        again.push((r.exec_path.as_deref().unwrap_or("?"), took));
    }
    let mut took: Vec<u64> = again.iter().map(|(_, t)| *t).collect();
    let sum = worth(&took, spawn_ns)?;
    let (wrapper, n) = most_common(again.iter().map(|(p, _)| *p));
    Some(format!(
        "{} spawns exec'd a wrapper that exec'd again ({n} of them {wrapper}): each second exec \
         took {} p50, {} in all ({:.0}% on top of spawn time).",
        again.len(),
        format_ns(median(&mut took)),
        format_ns(sum),
        100.0 * sum as f64 / spawn_ns as f64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ExecAttempt;

    fn spawn(method: &str, exec: &str) -> SpawnRecord {
        let mut r = SpawnRecord {
            method: Some(method.into()),
            parent_comm: Some("node".into()),
            exec_path: Some(exec.into()),
            ..Default::default()
        };
        r.ts.clone_enter = Some(0);
        r.ts.exec_return = Some(1_000_000);
        r.derive_durations();
        r
    }

    fn attempt(ret: i64, enter: u64, exit: u64) -> ExecAttempt {
        ExecAttempt {
            ret: Some(ret),
            enter,
            exit: Some(exit),
            ..Default::default()
        }
    }

    #[test]
    fn each_cost_is_said_once_it_is_a_twentieth_of_spawn_time() {
        let fork = |copy_ns: u64| {
            let mut r = spawn("fork", "/bin/true");
            r.ts.fork_done = Some(copy_ns);
            r.derive_durations();
            r
        };
        let said = findings(&vec![fork(200_000); 10]);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with("10 spawns forked and then exec'd (10 by node): duplicating the parent (copy_process) took 200 µs p50, 2 ms in all (20% of spawn time)"),
            "{}",
            said[0]
        );
        assert!(said[0].contains("posix_spawn"), "{}", said[0]);
        // Below a twentieth: nothing.
        assert!(findings(&vec![fork(40_000); 10]).is_empty());
        // A vfork-style spawn copies nothing; a root command is not a spawn.
        let mut vfork = fork(200_000);
        vfork.method = Some("vfork".into());
        let mut root = fork(200_000);
        root.root = true;
        assert!(findings(&[vfork, root]).is_empty());
    }

    #[test]
    fn path_searches_and_wrappers_name_their_program() {
        let mut search = spawn("vfork", "/usr/bin/make");
        search.failed_exec_attempts = 3;
        search.ts.exec_first_enter = Some(100_000);
        search.ts.exec_enter = Some(400_000);
        search.derive_durations();
        let said = findings(&[search]);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with("1 spawns searched PATH before their exec (most often for /usr/bin/make): 3 failed execs, 3.0 a spawn, 300 µs in all (30% of spawn time)"),
            "{}",
            said[0]
        );
        let mut java = spawn("vfork", "/usr/lib/jvm/lib/jspawnhelper");
        java.exec_attempts = vec![attempt(0, 10, 20), attempt(0, 500, 90_500)];
        let said = findings(&[java.clone(), java]);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with("2 spawns exec'd a wrapper that exec'd again (2 of them /usr/lib/jvm/lib/jspawnhelper): each second exec took 90 µs p50, 180 µs in all (9% on top of spawn time)"),
            "{}",
            said[0]
        );
    }
}
