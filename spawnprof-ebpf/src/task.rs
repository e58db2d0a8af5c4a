//! Reads of kernel structures through the offsets the loader found in this
//! kernel's BTF (aya 0.14 has no CO-RE relocations). Each returns `None`
//! (or the unknown value) where this kernel's offsets are missing.
use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use spawnprof_common::{COMM_LEN, NO_FIELD, UNKNOWN, UNKNOWN_U32};

use crate::{
    emit::comm,
    maps::{CONFIG, config},
};

#[inline(always)]
fn read<T>(base: *const u8, off: u32) -> Option<T> {
    if off == 0 || off == NO_FIELD || base.is_null() {
        return None;
    }
    unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const T) }.ok()
}

/// Two u64 fields of `base`: one copy where they sit side by side (as the
/// fault counters and the mm's range bounds do), else two.
#[inline(always)]
fn read_pair(base: *const u8, first: u32, second: u32) -> Option<(u64, u64)> {
    if first != 0 && first != NO_FIELD && second == first + 8 {
        let [a, b] = read::<[u64; 2]>(base, first)?;
        return Some((a, b));
    }
    Some((read::<u64>(base, first)?, read::<u64>(base, second)?))
}

#[inline(always)]
fn current_task() -> *const u8 {
    unsafe { bpf_get_current_task() as *const u8 }
}

/// The pid (thread id) of the task at `task`.
#[inline(always)]
pub fn pid_of(task: u64) -> Option<u32> {
    read::<i32>(task as *const u8, config(&CONFIG.kernel.task_pid)).map(|pid| pid as u32)
}

/// The current process's name: its main thread's comm, as `ps` shows it.
/// A spawning thread's own is often per thread ("Thread-3",
/// "pool-1-thread-7"), too many for `serve`'s labels. The thread's own
/// where this kernel's offsets are unknown.
#[inline(always)]
pub fn process_comm(tid: u32, tgid: u32) -> [u8; COMM_LEN] {
    if tid != tgid {
        let k = &CONFIG.kernel;
        let leader = read::<u64>(current_task(), config(&k.task_group_leader));
        if let Some(name) = leader.and_then(|l| read(l as *const u8, config(&k.task_comm))) {
            return name;
        }
    }
    comm()
}

/// The current process's user page faults from the kernel's own counters:
/// this thread's, plus those of its threads that already exited (exec and
/// the last exit find the other threads gone and folded into `signal`).
#[inline(always)]
pub fn process_faults() -> Option<u64> {
    let k = &CONFIG.kernel;
    let task = current_task();
    let sig = read::<u64>(task, config(&k.task_signal))? as *const u8;
    let (min, maj) = read_pair(task, config(&k.task_min_flt), config(&k.task_maj_flt))?;
    let (gone_min, gone_maj) =
        read_pair(sig, config(&k.signal_min_flt), config(&k.signal_maj_flt))?;
    Some(min + maj + gone_min + gone_maj)
}

/// `task_struct.exit_code` of the current task, or [`NO_EXIT_CODE`]. Not
/// an `Option`: LLVM loaded its payload before testing it, a read of
/// uninitialised stack that 5.10's verifier rejects.
#[inline(always)]
pub fn exit_code() -> u64 {
    read::<i32>(current_task(), config(&CONFIG.kernel.task_exit_code))
        .map_or(NO_EXIT_CODE, |c| u64::from(c as u32))
}

/// [`exit_code`] when the field cannot be read.
pub const NO_EXIT_CODE: u64 = u64::MAX;

/// The `[start, end)` range of the current process's memory at the
/// `mm_struct` offsets given (the environment or argument strings the
/// kernel laid out on the new image's stack).
#[inline(always)]
pub fn mm_range(start_off: u32, end_off: u32) -> Option<(u64, u64)> {
    let mm = read::<u64>(current_task(), config(&CONFIG.kernel.task_mm))? as *const u8;
    let (s, e) = read_pair(mm, start_off, end_off)?;
    (e >= s).then_some((s, e))
}

/// Bytes of the environment the new image received.
#[inline(always)]
pub fn env_bytes() -> u64 {
    let k = &CONFIG.kernel;
    mm_range(config(&k.mm_env_start), config(&k.mm_env_end)).map_or(UNKNOWN, |(s, e)| e - s)
}

/// `linux_binprm`'s argc, envc and filename pointer.
#[inline(always)]
pub fn binprm(bprm: *const u8) -> (u32, u32, u64) {
    let k = &CONFIG.kernel;
    let count = |off| read::<i32>(bprm, config(off)).map_or(UNKNOWN_U32, |v| v as u32);
    (
        count(&k.binprm_argc),
        count(&k.binprm_envc),
        read::<u64>(bprm, config(&k.binprm_filename)).unwrap_or(0),
    )
}

/// The exiting current task's pid in its reaper's PID namespace, and that
/// reaper (its real parent now): what the reaper's wait will return. `None`
/// outside PID namespaces other than the host's, and where this kernel's
/// offsets are missing.
#[inline(always)]
pub fn pid_for_reaper() -> Option<(u32, u32)> {
    let k = &CONFIG.kernel;
    let task = current_task();
    let pid = read::<u64>(task, config(&k.task_thread_pid))? as *const u8;
    let level = read::<u32>(pid, config(&k.pid_level))?;
    if level == 0 {
        return None;
    }
    let parent = read::<u64>(task, config(&k.task_real_parent))? as *const u8;
    let parent_pid = read::<u64>(parent, config(&k.task_thread_pid))? as *const u8;
    let parent_level = read::<u32>(parent_pid, config(&k.pid_level))?.min(31);
    let (numbers, upid_size) = (config(&k.pid_numbers), config(&k.upid_size));
    let upid_nr = config(&k.upid_nr);
    if numbers == NO_FIELD || upid_size == NO_FIELD || upid_nr == NO_FIELD {
        return None;
    }
    let at = numbers + parent_level * upid_size + upid_nr;
    let nr = unsafe { bpf_probe_read_kernel(pid.add(at as usize) as *const i32) }.ok()?;
    let reaper = read::<i32>(parent, config(&k.task_tgid))?;
    Some((nr as u32, reaper as u32))
}

/// How long the current task waited to run before its first switch-in,
/// from the scheduler's own statistics (`sched_info`): `None` once it has
/// been switched in more than once (the wait then covers later waits too),
/// or where this kernel has no `sched_info`.
#[inline(always)]
pub fn first_wait() -> Option<u64> {
    let k = &CONFIG.kernel;
    let task = current_task();
    let runs = read::<u64>(task, config(&k.task_sched_pcount))?;
    (runs == 1).then(|| read::<u64>(task, config(&k.task_sched_run_delay)))?
}
