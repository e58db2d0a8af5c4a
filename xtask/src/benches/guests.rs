//! The kernel-function tiers (fentry, kprobes) timed where they attach:
//! inside `vm-test`'s QEMU guests (Debian's 5.10, 6.1, 6.12 and 6.1 on
//! arm64), each otherwise idle, as the ratio of the spawner's median spawn
//! call without probes to the same under `spawnprof record`, in
//! interleaved rounds. The guests run under TCG, far slower than this
//! host: the ratios are the figure, not the times, and even they
//! overstate what traps cost (a kprobe's breakpoint and single step are
//! emulated): read the fentry guests (6.1, 6.12) first.
use std::{collections::BTreeMap, process::Stdio};

use anyhow::{Context as _, Result, bail};

use super::spread;
use crate::cmd;

/// Spawns per run in a guest (TCG makes each take a millisecond or more).
const GUEST_COUNT: u32 = 300;

/// The guests' script: `rounds` rounds of one run without probes and one
/// under `spawnprof record`, each printing `ROUND <r> <setup> "p50":<ns>`.
fn script(rounds: usize) -> String {
    let spawner = format!(
        "/spawnprof-spawner --method posix-spawn --count {GUEST_COUNT} --mode serial --program /bin/true"
    );
    format!(
        "for r in $(seq {rounds}); do \
         {spawner} > /tmp/o 2>/dev/null; echo \"ROUND $r none $(grep -o '\"p50\":[0-9]*' /tmp/o | head -1)\"; \
         /spawnprof record --force --no-live -o /tmp/x -- {spawner} > /tmp/o 2>/dev/null; \
         echo \"ROUND $r record $(grep -o '\"p50\":[0-9]*' /tmp/o | head -1)\"; done"
    )
}

/// Boots every guest, runs the rounds, and prints one row per guest.
pub fn guest_ratios(rounds: usize) -> Result<()> {
    // One guest at a time: two TCG guests on two vCPUs time each other.
    let output = cmd::cargo([
        "xtask",
        "vm-test",
        "--release",
        "--jobs",
        "1",
        "--shell",
        &script(rounds),
    ])
    .stderr(Stdio::inherit())
    .output()
    .context("running cargo xtask vm-test")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let ratios = parse(&text);
    if ratios.is_empty() {
        bail!("no guest printed its rounds ({})", output.status);
    }
    println!(
        "\n| guest (QEMU TCG, fentry/kprobe tiers) | spawn call p50 under record vs no probes \
         (median of {rounds} [range]) |\n|---|---:|"
    );
    for (guest, r) in ratios {
        println!("| {guest} | {} |", spread(&r, 3));
    }
    Ok(())
}

/// Per guest, per round, no probes' p50 over record's, from vm-test's
/// lines `vm-test: [<guest>] … ROUND <r> <setup> "p50":<ns>`.
fn parse(text: &str) -> BTreeMap<String, Vec<f64>> {
    let mut p50s: BTreeMap<(String, String), [f64; 2]> = BTreeMap::new();
    for line in text.lines() {
        let Some((guest, rest)) = line.split_once('[').and_then(|(_, r)| r.split_once(']')) else {
            continue;
        };
        let mut words = rest
            .split_whitespace()
            .skip_while(|w| *w != "ROUND")
            .skip(1);
        let (Some(round), Some(setup), Some(p50)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let Some(ns) = p50
            .strip_prefix("\"p50\":")
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        let slot = usize::from(setup == "record");
        p50s.entry((guest.to_string(), round.to_string()))
            .or_insert([0.0; 2])[slot] = ns;
    }
    let mut ratios: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for ((guest, _), [none, record]) in p50s {
        if none > 0.0 && record > 0.0 {
            ratios.entry(guest).or_default().push(none / record);
        }
    }
    ratios
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_pair_up_per_guest() {
        let text = "vm-test: [6.1]       ROUND 1 none \"p50\":1500\n\
                    vm-test: [6.1]       ROUND 1 record \"p50\":2000\n\
                    vm-test: [5.10]      ROUND 1 none \"p50\":1000\n\
                    vm-test: [5.10]      ROUND 1 record \"p50\":\n\
                    vm-test: [6.1] booting\n";
        let r = parse(text);
        assert_eq!(r.get("6.1"), Some(&vec![0.75]));
        assert!(
            !r.contains_key("5.10"),
            "a round without both figures is left out"
        );
    }
}
