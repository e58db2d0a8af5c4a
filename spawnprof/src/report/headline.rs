//! The one line at the top of report.html: for the spawn method that
//! takes the most time, the stage that takes most of it, in words, e.g.
//! "fork spawns (50): copying the parent's page tables (dup_mmap) took
//! 8.9 ms of the 9.0 ms a spawn took on average (99%)".
use super::folded::{StageFolder, WEIGHTS, flame_stages};
use crate::units::format_ns;

/// What a stage's own time is, in words.
fn in_words(stage: &str) -> &'static str {
    match stage {
        "copy_process" => "duplicating the task (copy_process)",
        "dup_mmap" => "copying the parent's page tables (dup_mmap)",
        "mm_lock_wait" => "waiting for the parent's mmap lock (mm_lock_wait)",
        "copy_page_range" => "copying page tables (copy_page_range)",
        "anon_vma_fork" => "linking anonymous memory (anon_vma_fork)",
        "fork_wakeup" => "queueing the new child (fork_wakeup)",
        "sched_delay" => "the child waiting to first run on a CPU (sched_delay)",
        "pre_exec" => "the child's own work before its exec (pre_exec)",
        "path_search" => "failed execs searching PATH (path_search)",
        "exec" => "the exec (exec)",
        "exec_load" => "the exec reading the program and copying argv and environment (exec_load)",
        "exec_replace" => "the exec replacing the old image (exec_replace)",
        "exec_finish" => "returning into the new program (exec_finish)",
        _ => "time between probes",
    }
}

/// The headline, or `None` for a recording without spawn time.
pub fn headline(folder: &StageFolder) -> Option<String> {
    // Per method (over every parent): spawns and each weight's sum.
    let mut methods: Vec<(String, u64, Vec<u64>)> = Vec::new();
    for (_, method, g) in folder.groups() {
        if method == "root command" {
            continue;
        }
        let at = match methods.iter().position(|m| m.0 == method) {
            Some(i) => i,
            None => {
                methods.push((method, 0, vec![0; WEIGHTS]));
                methods.len() - 1
            }
        };
        methods[at].1 += g.spawns;
        for (sum, v) in methods[at].2.iter_mut().zip(&g.self_ns) {
            *sum += v;
        }
    }
    let (method, spawns, weights) = methods
        .into_iter()
        .max_by_key(|m| m.2.iter().sum::<u64>())?;
    let whole: u64 = weights.iter().sum();
    let (top, &part) = weights.iter().enumerate().max_by_key(|(_, v)| **v)?;
    if whole == 0 || spawns == 0 {
        return None;
    }
    let what = flame_stages().get(top).map_or("", |f| f.name);
    Some(format!(
        "{method} spawns ({spawns}): {} took {} of the {} a spawn took on average ({:.0}%)",
        in_words(what),
        format_ns(part / spawns),
        format_ns(whole / spawns),
        100.0 * part as f64 / whole as f64
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SpawnRecord, Timestamps};

    #[test]
    fn the_headline_names_the_stage_that_dominates_in_words() {
        let mut f = StageFolder::new();
        for i in 0..50u64 {
            let t = i * 100_000_000;
            let mut r = SpawnRecord {
                parent_comm: Some("bigheap".into()),
                method: Some("fork".into()),
                syscall: Some("clone".into()),
                ts: Timestamps {
                    clone_enter: Some(t),
                    mm_lock_wait: Some(t + 30_000),
                    mm_copy_start: Some(t + 31_000),
                    mm_copy_end: Some(t + 8_930_000),
                    newtask: Some(t + 8_950_000),
                    wakeup_new: Some(t + 8_960_000),
                    first_run: Some(t + 8_970_000),
                    exec_first_enter: Some(t + 8_980_000),
                    exec_enter: Some(t + 8_980_000),
                    exec_return: Some(t + 9_000_000),
                    ..Default::default()
                },
                ..Default::default()
            };
            r.derive_durations();
            f.add(&r);
        }
        let line = headline(&f).unwrap();
        assert_eq!(
            line,
            "fork (clone) spawns (50): copying the parent's page tables (dup_mmap) took 8.9 ms \
             of the 9 ms a spawn took on average (99%)"
        );
        assert_eq!(headline(&StageFolder::new()), None);
    }
}
