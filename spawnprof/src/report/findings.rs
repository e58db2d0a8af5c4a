//! The findings of a recording: each hidden cost its spawns paid
//! ([`HiddenCosts`]) in one line, with its figures and what avoids it,
//! once it reaches [`WORTH_SAYING`] of the spawn time. The terminal prints
//! them after the counts, report.html under its headline.
use crate::{
    analysis::{HiddenCost, HiddenCosts},
    units::format_ns,
};

/// The share of all spawn time a cost must reach to be a finding.
const WORTH_SAYING: f64 = 0.05;

/// The findings, worded; none for an older recording without the costs.
pub fn findings(costs: Option<&HiddenCosts>) -> Vec<String> {
    let Some(h) = costs else {
        return Vec::new();
    };
    type Words = fn(&HiddenCost, f64) -> String;
    let costs: [(&Option<HiddenCost>, Words); 3] = [
        (&h.forks_then_exec, forks_then_exec),
        (&h.path_search, path_search),
        (&h.re_exec, re_exec),
    ];
    (costs.into_iter())
        .filter_map(|(cost, words)| {
            let c = cost.as_ref()?;
            let share = c.total_ns as f64 / h.spawn_ns.max(1) as f64;
            (h.spawn_ns > 0 && share >= WORTH_SAYING).then(|| words(c, 100.0 * share))
        })
        .collect()
}

fn forks_then_exec(c: &HiddenCost, pct: f64) -> String {
    let what = match c.timed.as_str() {
        "dup_mmap" => "copying the parent's page tables (dup_mmap)",
        _ => "duplicating the parent (copy_process)",
    };
    format!(
        "{} spawns forked and then exec'd ({} by {}): {what} took {} p50, {} in all ({pct:.0}% \
         of spawn time). A child that execs at once can skip that copy: posix_spawn, or vfork \
         (CLONE_VM|CLONE_VFORK).",
        c.spawns,
        c.most_common_spawns,
        c.most_common,
        format_ns(c.p50_ns),
        format_ns(c.total_ns),
    )
}

fn path_search(c: &HiddenCost, pct: f64) -> String {
    format!(
        "{} spawns searched PATH before their exec (most often for {}): {} failed execs, {:.1} \
         a spawn, {} in all ({pct:.0}% of spawn time). Exec by full path, or put the program's \
         directory first in PATH.",
        c.spawns,
        c.most_common,
        c.failed_execs,
        c.failed_execs as f64 / c.spawns.max(1) as f64,
        format_ns(c.total_ns),
    )
}

fn re_exec(c: &HiddenCost, pct: f64) -> String {
    format!(
        "{} spawns exec'd a wrapper that exec'd again ({} of them {}): each second exec took {} \
         p50, {} in all ({pct:.0}% on top of spawn time).",
        c.spawns,
        c.most_common_spawns,
        c.most_common,
        format_ns(c.p50_ns),
        format_ns(c.total_ns),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        analysis::Accumulator,
        model::{ExecAttempt, SpawnRecord},
    };

    /// The findings of `records`, through the summary's accumulator.
    fn of(records: &[SpawnRecord]) -> Vec<String> {
        let mut acc = Accumulator::default();
        records.iter().for_each(|r| acc.add(r));
        findings(Some(&acc.hidden_costs()))
    }

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
        let said = of(&vec![fork(200_000); 10]);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with("10 spawns forked and then exec'd (10 by node): duplicating the parent (copy_process) took 200 µs p50, 2 ms in all (20% of spawn time)"),
            "{}",
            said[0]
        );
        assert!(said[0].contains("posix_spawn"), "{}", said[0]);
        assert!(findings(None).is_empty(), "an older recording");
        // Below a twentieth: nothing.
        assert!(of(&vec![fork(40_000); 10]).is_empty());
        // A vfork-style spawn copies nothing; a root command is not a spawn.
        let mut vfork = fork(200_000);
        vfork.method = Some("vfork".into());
        let mut root = fork(200_000);
        root.root = true;
        assert!(of(&[vfork, root]).is_empty());
    }

    #[test]
    fn path_searches_and_wrappers_name_their_program() {
        let mut search = spawn("vfork", "/usr/bin/make");
        search.failed_exec_attempts = 3;
        search.ts.exec_first_enter = Some(100_000);
        search.ts.exec_enter = Some(400_000);
        search.derive_durations();
        let said = of(&[search]);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with("1 spawns searched PATH before their exec (most often for /usr/bin/make): 3 failed execs, 3.0 a spawn, 300 µs in all (30% of spawn time)"),
            "{}",
            said[0]
        );
        let mut java = spawn("vfork", "/usr/lib/jvm/lib/jspawnhelper");
        java.exec_attempts = vec![attempt(0, 10, 20), attempt(0, 500, 90_500)];
        let said = of(&[java.clone(), java]);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with("2 spawns exec'd a wrapper that exec'd again (2 of them /usr/lib/jvm/lib/jspawnhelper): each second exec took 90 µs p50, 180 µs in all (9% on top of spawn time)"),
            "{}",
            said[0]
        );
    }
}
