//! The kernel features the attach plan looks at, as `spawnprof probes`
//! prints them: what a report of "stage X unavailable" needs to say, found
//! on this kernel the same way the plan finds it (BTF, tracefs, the kprobe
//! PMU), never from its version number.
use std::fmt::Write as _;

use super::{
    Host,
    attach::{PROGRAM_BTF_FIELDS, RAW_PROTOTYPES},
    plan::{Attach, PLAN},
};

/// One line per feature: its name and what this kernel has of it.
pub fn looked_at(host: &Host) -> Vec<(&'static str, String)> {
    let btf = match &host.btf {
        Some(btf) => format!("/sys/kernel/btf/vmlinux, {} types", btf.type_count()),
        None => format!(
            "none ({})",
            host.btf_error.as_deref().unwrap_or("unknown reason")
        ),
    };
    let kprobes = match (host.kprobe_pmu, host.kprobe_target_count()) {
        (false, _) => "no kprobe PMU (CONFIG_KPROBES off)".to_string(),
        (true, Some(n)) => format!("kprobe PMU; {n} functions in available_filter_functions"),
        (true, None) => "kprobe PMU; available_filter_functions unreadable".to_string(),
    };
    vec![
        ("architecture", std::env::consts::ARCH.to_string()),
        ("BTF", btf),
        ("kprobes", kprobes),
        ("functions", functions(host)),
        ("tracepoints", tracepoints(host)),
        ("raw prototypes", raw_prototypes(host)),
        ("struct fields", struct_fields(host)),
    ]
}

/// `(name, value)` lines, aligned, for the terminal.
pub fn render(features: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (name, value) in features {
        let _ = writeln!(out, "  {name:<16} {value}");
    }
    out
}

/// Every attach of the plan, in the plan's order.
fn attaches() -> impl Iterator<Item = &'static Attach> {
    PLAN.iter()
        .flat_map(|s| s.candidates)
        .flat_map(|c| c.attaches)
}

/// `items` once each, in order.
fn distinct<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// The kernel functions of the fentry/kprobe tiers that this kernel lacks
/// in BTF (fentry) or cannot kprobe (inlined, renamed or notrace).
fn functions(host: &Host) -> String {
    let names = distinct(attaches().filter_map(|a| match *a {
        Attach::Fentry { function, .. }
        | Attach::Fexit { function, .. }
        | Attach::Kprobe { function, .. }
        | Attach::Kretprobe { function, .. } => Some(function),
        _ => None,
    }));
    let missing = |known: bool, has: &dyn Fn(&str) -> bool, why: &str| {
        if !known {
            return format!("(not known: see {why})");
        }
        let names: Vec<&str> = names.iter().copied().filter(|f| !has(f)).collect();
        list(&names)
    };
    let no_btf = missing(
        host.btf.is_some(),
        &|f| host.btf.as_ref().is_some_and(|b| b.has_function(f)),
        "BTF",
    );
    let no_kprobe = missing(
        host.kprobe_pmu && host.kprobe_target_count().is_some(),
        &|f| host.kprobe_target_exists(f),
        "kprobes",
    );
    format!(
        "{} looked for; not in BTF: {no_btf}; not kprobe-able: {no_kprobe}",
        names.len()
    )
}

/// The classic tracepoints of the plan that tracefs does not have.
fn tracepoints(host: &Host) -> String {
    let events = distinct(attaches().filter_map(|a| match *a {
        Attach::Tracepoint { category, name, .. } => Some((category, name)),
        _ => None,
    }));
    let missing: Vec<String> = events
        .iter()
        .filter(|(category, name)| !host.tracefs.has_event(category, name))
        .map(|(category, name)| format!("{category}:{name}"))
        .collect();
    let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
    format!("{} looked for; missing: {}", events.len(), list(&missing))
}

/// Where the raw tracepoints whose arguments moved pass their first bool.
fn raw_prototypes(host: &Host) -> String {
    let Some(btf) = &host.btf else {
        return "unknown without BTF".to_string();
    };
    let lines = distinct(RAW_PROTOTYPES.iter().map(|(_, tracepoint, _)| {
        match btf.raw_tracepoint_bool_arg(tracepoint) {
            Some(at) => format!("{tracepoint}: first bool is argument {at}"),
            None => format!("{tracepoint}: no prototype"),
        }
    }));
    lines.join(", ")
}

/// The struct members the probes read that this kernel's BTF lacks.
fn struct_fields(host: &Host) -> String {
    let Some(btf) = &host.btf else {
        return "unknown without BTF".to_string();
    };
    let missing = distinct(
        PROGRAM_BTF_FIELDS
            .iter()
            .flat_map(|(_, fields)| *fields)
            .filter(|(s, m)| btf.member_offset(s, m).is_none())
            .map(|(s, m)| format!("{s}.{m}")),
    );
    let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
    format!("missing: {}", list(&missing))
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}
