//! Processes the probes trace on their own (`serve --all`, `serve
//! --cgroup`): the first probe that runs in a process of the scope adds it
//! to `TRACED`, with its spawns recorded. Outside these modes the scope is
//! a loader constant of none, and the verifier drops all of this.
use aya_ebpf::helpers::{
    bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_pid_tgid,
};
use spawnprof_common::{TracedProc, scope, traced};

use crate::maps::{CONFIG, config, traced_table};

#[inline(always)]
pub fn adopt(tgid: u32) -> Option<*mut TracedProc> {
    let kind = config(&CONFIG.scope.kind);
    if kind == scope::NONE || (bpf_get_current_pid_tgid() >> 32) as u32 != tgid {
        return None;
    }
    if kind == scope::CGROUP && !in_cgroup() {
        return None;
    }
    let table = traced_table();
    if !table.put(tgid, &crate::mem::traced_entry(traced::SPAWNS)) {
        return None;
    }
    table.get(tgid)
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
