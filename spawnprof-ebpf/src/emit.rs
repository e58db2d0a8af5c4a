//! Emitting marks, and the traced-process filter every probe starts with.
use aya_ebpf::{
    bindings::bpf_pidns_info,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_ns_current_pid_tgid,
        bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_kernel_str_bytes,
        bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes,
    },
};
use spawnprof_common::{Mark, TEXT_LEN, TEXT_TRUNCATED, TextMark, TracedProc, traced};

use crate::maps::{CONFIG, LOST, MARKS, NS_PENDING, NS_REGISTRATIONS, TRACED, config};

#[inline(always)]
pub fn now() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

/// The calling thread: (tid, tgid).
#[inline(always)]
pub fn current() -> (u32, u32) {
    let id = bpf_get_current_pid_tgid();
    (id as u32, (id >> 32) as u32)
}

/// The traced-process entry of `tgid`, the current task's process, if it
/// is traced.
#[inline(always)]
pub fn traced(tgid: u32) -> Option<*mut TracedProc> {
    TRACED
        .get_ptr_mut(tgid)
        .or_else(|| registered_from_namespace(tgid))
}

/// When spawnprof runs in a PID namespace, a process it was asked to trace
/// is known by its pid there: the first probe that runs in it adds it to
/// `TRACED` by its host tgid (see [`spawnprof_common::NsRegistration`]).
/// Outside a namespace the configuration is zero and the verifier drops
/// all of this (and the helper, which older kernels lack).
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
    let entry = TracedProc {
        // SAFETY: a pointer into the map's value, valid for this program run.
        flags: unsafe { (*registration).flags },
        ..TracedProc::default()
    };
    TRACED.insert(tgid, entry, 0).ok()?;
    // Two threads may both get here; they write the same value.
    unsafe { (*registration).host_tgid = tgid };
    TRACED.get_ptr_mut(tgid)
}

/// Whether `tgid` is traced with its own spawns recorded.
#[inline(always)]
pub fn traces_spawns(tgid: u32) -> bool {
    match traced(tgid) {
        Some(p) => unsafe { (*p).flags & traced::SPAWNS != 0 },
        None => false,
    }
}

/// `bpf_ringbuf_submit` flags and `bpf_ringbuf_query` selectors.
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_RING_SIZE: u64 = 1;

/// Submit flags: never wake the reader for a single mark — a wake-up per
/// mark made the reader's context switches cost more than the spawns being
/// measured. Userspace drains on a short timer instead, and is woken only
/// when the buffer is half full so a burst cannot overflow it.
#[inline(always)]
fn wakeup_flags() -> u64 {
    let pending = MARKS.query(BPF_RB_AVAIL_DATA);
    // The size is a loader constant; querying it would be one more helper
    // call per mark.
    let size = match config(&CONFIG.ring_buffer_bytes) {
        0 => MARKS.query(BPF_RB_RING_SIZE),
        n => n as u64,
    };
    if pending > size / 2 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
fn count_lost(kind: u16) {
    if let Some(slot) = LOST.get_ptr_mut(kind as u32) {
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn header(
    ts: u64,
    kind: u16,
    tid: u32,
    tgid: u32,
    a: u64,
    b: u64,
    c: u64,
    with_comm: bool,
) -> Mark {
    Mark {
        ts_ns: ts,
        tid,
        tgid,
        kind,
        cpu: unsafe { bpf_get_smp_processor_id() } as u16,
        text_len: 0,
        a,
        b,
        c,
        comm: if with_comm {
            bpf_get_current_comm().unwrap_or([0; 16])
        } else {
            [0; 16]
        },
    }
}

/// Emits a bare mark.
#[inline(always)]
pub fn mark(ts: u64, kind: u16, tid: u32, tgid: u32, a: u64, b: u64, c: u64) {
    match MARKS.reserve::<Mark>(0) {
        Some(mut entry) => {
            // `kind` is a constant at every call site, so this folds away.
            let with_comm = spawnprof_common::kind::carries_comm(kind);
            entry.write(header(ts, kind, tid, tgid, a, b, c, with_comm));
            entry.submit(wakeup_flags());
        }
        None => count_lost(kind),
    }
}

/// Where the text of a [`TextMark`] comes from.
pub enum Text {
    User(*const u8),
    Kernel(*const u8),
    /// Raw user bytes (NULs included), up to [`TEXT_LEN`].
    UserBytes(*const u8, u64),
}

/// Emits a mark followed by a NUL-terminated string read from user or kernel memory.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn text_mark(ts: u64, kind: u16, tid: u32, tgid: u32, a: u64, b: u64, c: u64, text: Text) {
    let Some(mut entry) = MARKS.reserve::<TextMark>(0) else {
        count_lost(kind);
        return;
    };
    let slot = entry.as_mut_ptr();
    unsafe {
        (*slot).mark = header(ts, kind, tid, tgid, a, b, c, true);
        let buf = &mut (*slot).text;
        let (len, truncated) = match text {
            Text::User(p) | Text::Kernel(p) => {
                let read = match text {
                    Text::User(_) => bpf_probe_read_user_str_bytes(p, buf),
                    _ => bpf_probe_read_kernel_str_bytes(p, buf),
                };
                let len = read.map_or(0, |s| s.len());
                // A string that filled the buffer was cut short.
                (len, len >= TEXT_LEN - 1)
            }
            Text::UserBytes(p, n) => {
                let want = n.min(TEXT_LEN as u64) as usize;
                let ok = want > 0
                    && buf
                        .get_mut(..want)
                        .is_some_and(|dst| bpf_probe_read_user_buf(p, dst).is_ok());
                if ok {
                    (want, n > TEXT_LEN as u64)
                } else {
                    (0, false)
                }
            }
        };
        (*slot).mark.text_len = len as u32 | if truncated { TEXT_TRUNCATED } else { 0 };
    }
    entry.submit(wakeup_flags());
}
