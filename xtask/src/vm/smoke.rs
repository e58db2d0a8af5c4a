//! `vm-test --smoke`: checks the harness itself (the kernel, the mounts, the
//! tracing interfaces spawnprof relies on, and that the copied binaries find
//! their libraries) without needing `spawnprof record` to work. Two tracefs
//! probes show forks and a kprobe firing without spawnprof.
use anyhow::{Result, ensure};

use super::console::{Section, ok_section, section};
use super::guests::Guest;
use super::runs::{SPAWN_COUNT, VmCommand, busybox_fork_loop, sh_quote, vm_command};

pub fn smoke_commands() -> Vec<VmCommand> {
    let traced = |setup: &str, teardown: &str, pattern: &str| {
        format!(
            "cd /sys/kernel/tracing && echo > trace && {setup} && sh -c {} && {teardown} && \
             grep -c {pattern} trace",
            sh_quote(&busybox_fork_loop())
        )
    };
    vec![
        vm_command("uname", "uname -r"),
        vm_command("mounts", "cat /proc/mounts"),
        vm_command(
            "syscall-events",
            "ls /sys/kernel/tracing/events/syscalls | head",
        ),
        vm_command(
            "kprobe-pmu",
            "cat /sys/bus/event_source/devices/kprobe/type",
        ),
        vm_command(
            "filter-functions",
            "grep -c . /sys/kernel/tracing/available_filter_functions",
        ),
        vm_command("btf", "ls -l /sys/kernel/btf/vmlinux"),
        vm_command("spawnprof-runs", "/spawnprof --help"),
        vm_command(
            "fork-count",
            traced(
                "echo 1 > events/sched/sched_process_fork/enable",
                "echo 0 > events/sched/sched_process_fork/enable",
                "sched_process_fork:",
            ),
        ),
        vm_command(
            "kprobe-count",
            traced(
                "echo p:vmtest_cpr copy_page_range > kprobe_events && \
                 echo 1 > events/kprobes/vmtest_cpr/enable",
                "echo 0 > events/kprobes/vmtest_cpr/enable",
                "vmtest_cpr:",
            ),
        ),
        vm_command("dmesg", "dmesg"),
    ]
}

/// The smoke run's checks; returns a short report of what the VM offers.
pub fn check_smoke(guest: &Guest, sections: &[Section]) -> Result<Vec<String>> {
    let uname = ok_section(sections, "uname")?.body.trim().to_string();
    ensure!(
        uname.starts_with(guest.release),
        "expected a {}* kernel, got {uname:?}",
        guest.release
    );
    let events = ok_section(sections, "syscall-events")?;
    ensure!(
        !events.body.trim().is_empty(),
        "no syscall tracepoints: {}",
        events.describe()
    );
    let spawnprof = section(sections, "spawnprof-runs")?;
    // 126/127: the shell could not execute it, i.e. a missing loader or library.
    ensure!(
        !matches!(spawnprof.rc, Some(126 | 127) | None),
        "spawnprof does not run in the VM: {}",
        spawnprof.describe()
    );
    let report = report(sections, &uname, events, spawnprof)?;
    for (name, what) in [
        ("kprobe-pmu", "no kprobe PMU"),
        ("btf", "no kernel BTF"),
        ("kprobe-count", "the tracefs kprobe did not fire"),
    ] {
        let s = section(sections, name)?;
        ensure!(s.rc == Some(0), "{what}: {}", s.describe());
    }
    Ok(report)
}

fn report(
    sections: &[Section],
    uname: &str,
    events: &Section,
    spawnprof: &Section,
) -> Result<Vec<String>> {
    let kprobe_type = section(sections, "kprobe-pmu")?;
    let functions = ok_section(sections, "filter-functions")?;
    let btf = section(sections, "btf")?;
    let forks = ok_section(sections, "fork-count")?.body.trim().to_string();
    let kprobe_hits = section(sections, "kprobe-count")?;
    let present = |s: &Section| if s.rc == Some(0) { "present" } else { "absent" };
    let first_syscall = events.body.lines().find(|l| l.starts_with("sys_"));
    Ok(vec![
        format!("kernel:               {uname}"),
        format!(
            "syscall tracepoints:  present (first: {})",
            first_syscall.unwrap_or("?")
        ),
        format!(
            "kprobe PMU type:      {}",
            if kprobe_type.rc == Some(0) {
                kprobe_type.body.trim()
            } else {
                "absent"
            }
        ),
        format!("traceable functions:  {}", functions.body.trim()),
        format!("/sys/kernel/btf/vmlinux: {}", present(btf)),
        format!("spawnprof --help:     exit status {:?}", spawnprof.rc),
        format!("forks traced in a {SPAWN_COUNT}-iteration loop: {forks}"),
        format!(
            "copy_page_range kprobe hits in that loop: {}",
            kprobe_hits.body.trim()
        ),
    ])
}
