//! The traced-process filter every probe starts with ([`traced`]): the
//! processes userspace named or the fork probes added, a process named by
//! its pid in spawnprof's PID namespace, and the processes the probes take
//! in on their own (`serve --all`, `serve --cgroup`: the first probe that
//! runs in a process of the scope adds it, with its spawns recorded).
//! Outside these modes the namespace and scope are loader constants of
//! none, and the verifier drops their code.
use aya_ebpf::{
    bindings::bpf_pidns_info,
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_ns_current_pid_tgid,
    },
};
use spawnprof_common::{NS_ROOT, TracedProc, scope, traced};

use crate::{
    emit::current,
    maps::{CONFIG, NS_PENDING, NS_REGISTRATIONS, config, traced_table},
    spawn,
};

/// The traced-process entry of `tgid`, the current task's process, if it
/// is traced.
#[inline(always)]
pub fn traced(tgid: u32) -> Option<*mut TracedProc> {
    traced_table()
        .get(tgid)
        .or_else(|| registered_from_namespace(tgid))
        .or_else(|| adopt(tgid))
}

/// When spawnprof runs in a PID namespace, a process it was asked to trace
/// is known by its pid there: the first probe that runs in it adds it to
/// `TRACED` by its host tgid (see [`spawnprof_common::NsRegistration`]), and
/// starts the root command's record. Outside a namespace the configuration
/// is zero and the verifier drops all of this (and the helper, which older
/// kernels lack).
#[inline(always)]
fn registered_from_namespace(tgid: u32) -> Option<*mut TracedProc> {
    let (dev, ino) = (config(&CONFIG.pid_ns.dev), config(&CONFIG.pid_ns.ino));
    if ino == 0 || NS_PENDING.get(0).copied().unwrap_or(0) == 0 || current().1 != tgid {
        return None;
    }
    let mut ids = bpf_pidns_info { pid: 0, tgid: 0 };
    let size = core::mem::size_of::<bpf_pidns_info>() as u32;
    // SAFETY: `ids` is a valid, writable bpf_pidns_info of `size` bytes.
    if unsafe { bpf_get_ns_current_pid_tgid(dev, ino, &mut ids, size) } != 0 {
        return None;
    }
    let registration = NS_REGISTRATIONS.get_ptr_mut(ids.tgid)?;
    // SAFETY: a pointer into the map's value, valid for this program run.
    let flags = unsafe { (*registration).flags };
    let entry = add(tgid, flags & !NS_ROOT)?;
    if flags & NS_ROOT != 0 {
        spawn::start_root(tgid);
    }
    // Two threads may both get here; they write the same value.
    unsafe { (*registration).host_tgid = tgid };
    Some(entry)
}

/// Adds `tgid` to the traced set with `flags` ([`traced`]); its entry.
/// (The fork path adds children with `put` alone: it needs no pointer.)
#[inline(always)]
fn add(tgid: u32, flags: u32) -> Option<*mut TracedProc> {
    let table = traced_table();
    if !table.put(tgid, &crate::mem::traced_entry(flags)) {
        return None;
    }
    table.get(tgid)
}

/// Whether `tgid` is traced with its own spawns recorded.
#[inline(always)]
pub fn traces_spawns(tgid: u32) -> bool {
    match traced(tgid) {
        Some(p) => unsafe { (*p).flags & traced::SPAWNS != 0 },
        None => false,
    }
}

#[inline(always)]
fn adopt(tgid: u32) -> Option<*mut TracedProc> {
    let kind = config(&CONFIG.scope.kind);
    if kind == scope::NONE || current().1 != tgid {
        return None;
    }
    if kind == scope::CGROUP && !in_cgroup() {
        return None;
    }
    add(tgid, traced::SPAWNS)
}

/// Whether the current task is in the configured cgroup or below it.
#[inline(always)]
fn in_cgroup() -> bool {
    let id = config(&CONFIG.scope.cgroup_id);
    let level = config(&CONFIG.scope.cgroup_level);
    // SAFETY: plain helper calls.
    unsafe {
        if level == 0 {
            return bpf_get_current_cgroup_id() == id;
        }
        bpf_get_current_ancestor_cgroup_id(level as i32) == id
    }
}
