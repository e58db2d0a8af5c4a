//! The records sent to userspace, and the small helpers every probe uses
//! (clock, CPU, current task).
use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
    bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes,
};
use spawnprof_common::{
    COMM_LEN, ExecEvent, Notice, PATH_TRUNCATED, PATH_UNREADABLE, SpawnEvent, TEXT_LEN,
    TEXT_TRUNCATED, TextEvent, lost, rec,
};

use crate::maps::{CONFIG, LOST, RECORDS, config, stopped};

#[inline(always)]
pub fn now() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

/// The CPU the program runs on.
#[inline(always)]
pub fn cpu() -> u32 {
    unsafe { bpf_get_smp_processor_id() }
}

/// The calling thread: (tid, tgid).
#[inline(always)]
pub fn current() -> (u32, u32) {
    let id = bpf_get_current_pid_tgid();
    (id as u32, (id >> 32) as u32)
}

#[inline(always)]
pub fn comm() -> [u8; COMM_LEN] {
    bpf_get_current_comm().unwrap_or([0; COMM_LEN])
}

/// `bpf_ringbuf_submit` flags and `bpf_ringbuf_query` selectors.
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_RING_SIZE: u64 = 1;

/// Never wake the reader for a single record: a wake-up per record made the
/// reader's context switches cost more than the spawns being measured.
/// Userspace drains on a timer instead, and is woken only when the buffer
/// is half full so a burst cannot overflow it.
#[inline(always)]
fn wakeup_flags() -> u64 {
    let pending = RECORDS.query(BPF_RB_AVAIL_DATA);
    // The size is a loader constant; querying it would be one more helper
    // call per record.
    let size = match config(&CONFIG.ring_buffer_bytes) {
        0 => RECORDS.query(BPF_RB_RING_SIZE),
        n => n as u64,
    };
    if pending > size / 2 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
pub fn count_lost(reason: u32) {
    if let Some(slot) = LOST.get_ptr_mut(reason) {
        unsafe { *slot += 1 };
    }
}

/// Sends a finished spawn; false when the ring buffer is full. With
/// metrics on (`serve`, `top`) it is folded into them instead.
#[inline(always)]
pub fn send_spawn(s: *const SpawnEvent) -> bool {
    if config(&CONFIG.metrics) != 0 {
        crate::metrics::spawn_ended(s);
        return true;
    }
    // SAFETY: a pointer into a map value of a whole SpawnEvent, valid for
    // this program run.
    let bytes = unsafe { (*s).wire() };
    RECORDS.output::<[u8]>(bytes, wakeup_flags()).is_ok()
}

/// An exec attempt to send, without its path.
pub struct Attempt {
    pub spawn_id: u64,
    pub child_tgid: u32,
    pub tid: u32,
    pub enter: u64,
    pub exit: u64,
    pub ret: i64,
    pub syscall: u16,
}

/// Where an attempt's path is read from.
pub enum Path {
    /// The user's string, read at the attempt's return: the kernel has
    /// copied it by then, so its page is resident even in a fork child
    /// that never touched it.
    User(u64),
    /// The kernel's copy (`linux_binprm.filename`).
    Kernel(u64),
}

/// Sends one exec attempt that is not its spawn's first success.
#[inline(always)]
pub fn send_exec(a: &Attempt, path: Path) {
    if stopped() {
        return;
    }
    if config(&CONFIG.metrics) != 0 {
        crate::metrics::exec_failed(a.ret);
        return;
    }
    let Some(mut entry) = RECORDS.reserve::<ExecEvent>(0) else {
        count_lost(lost::EXEC_RING);
        return;
    };
    let slot = entry.as_mut_ptr();
    unsafe {
        (*slot).kind = rec::EXEC;
        (*slot).syscall = a.syscall;
        (*slot).spawn_id = a.spawn_id;
        (*slot).child_tgid = a.child_tgid;
        (*slot).tid = a.tid;
        (*slot).enter = a.enter;
        (*slot).exit = a.exit;
        (*slot).ret = a.ret;
        let buf = &mut (*slot).path;
        let read = match path {
            Path::User(p) => bpf_probe_read_user_str_bytes(p as *const u8, buf),
            Path::Kernel(p) => bpf_probe_read_kernel_str_bytes(p as *const u8, buf),
        };
        (*slot).path_len = match read {
            // A string that filled the buffer was cut short.
            Ok(s) if s.len() >= TEXT_LEN - 1 => s.len() as u16 | PATH_TRUNCATED,
            Ok(s) => s.len() as u16,
            Err(_) => PATH_UNREADABLE,
        };
    }
    entry.submit(wakeup_flags());
}

/// Sends `n` bytes of user memory at `p` (argument or environment strings).
#[inline(always)]
pub fn send_text(kind: u16, spawn_id: u64, child_tgid: u32, p: *const u8, n: u64) {
    if stopped() {
        return;
    }
    let Some(mut entry) = RECORDS.reserve::<TextEvent>(0) else {
        count_lost(lost::TEXT_RING);
        return;
    };
    let slot = entry.as_mut_ptr();
    unsafe {
        (*slot).kind = kind;
        (*slot).spawn_id = spawn_id;
        (*slot).child_tgid = child_tgid;
        let want = n.min(TEXT_LEN as u64) as usize;
        let ok = want > 0
            && (*slot)
                .text
                .get_mut(..want)
                .is_some_and(|dst| bpf_probe_read_user_buf(p, dst).is_ok());
        (*slot).len = match (ok, n > TEXT_LEN as u64) {
            (false, _) => 0,
            (true, true) => want as u32 | TEXT_TRUNCATED,
            (true, false) => want as u32,
        };
    }
    entry.submit(wakeup_flags());
}

/// Wakes userspace at once to park or bring back the fork-only probes: a
/// fork began while they were parked, or a threshold of spawns without one
/// went by.
#[inline(always)]
pub fn send_fork_wake(tgid: u32) {
    let notice = Notice {
        kind: rec::NOTICE_FORK,
        _pad: 0,
        tgid,
    };
    let _ = RECORDS.output::<Notice>(&notice, BPF_RB_FORCE_WAKEUP);
}

/// Tells userspace (only while it samples stacks) that `tgid` exec'd or exited.
#[inline(always)]
pub fn send_notice(kind: u16, tgid: u32) {
    if config(&CONFIG.notices) == 0 || stopped() {
        return;
    }
    let notice = Notice {
        kind,
        _pad: 0,
        tgid,
    };
    if RECORDS.output::<Notice>(&notice, wakeup_flags()).is_err() {
        count_lost(lost::TEXT_RING);
    }
}
