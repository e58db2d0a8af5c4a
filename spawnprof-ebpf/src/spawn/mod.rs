//! The spawn record, kept in the spawn table (`maps::spawn_table`: the
//! child's slot of `SPAWN_SLOTS`, or the `SPAWNS` hash when another spawn
//! holds it) under the child's tid from the fork until the spawn ends,
//! then sent whole. Every probe that sees a stage of
//! a spawn calls one function here; the probes themselves only read their
//! context.
//!
//! ```text
//!  parent thread P                   child C                    kept in
//!  clone entry, copy_process,        .                          clone slot of P
//!  mm lock, dup_mmap, newtask        .
//!  fork done ──────────────────────▶ record created             spawns[C]
//!  wakeup_new                        first run                  spawns[C]
//!  clone return (PARENT_RETURNED)    exec attempts (by tgid)    spawns[C], EXECS[tid]
//!                                    exit (EXITED)              spawns[C]
//!  wait returns C (REAPED) ─────────▶ sent, removed
//! ```
//!
//! A process is sent once reaped, its parent returned from the clone and,
//! for a fork, its parent's copy-on-write window closed (the parent's next
//! fork, exec or exit); a thread once it exited and its parent returned;
//! the root command once it exited. A spawn whose reaper no probe saw is
//! caught when its task is released. Whatever is left when the recording
//! ends is collected by userspace from the table.
use spawnprof_common::{
    CloneState, FAULTS_UNKNOWN, ReapKey, SPAWN_PATH_OFFSET, Slot, SpawnEvent, TracedProc, UNKNOWN,
    UNKNOWN_U32, await_child, clone_flags as cf, lost, parked, rec, spawn, traced as tflags, ts,
};

pub mod clones;
pub mod exec;

pub use exec::{exec_done, exec_entered, exec_prepared, exec_returned};

use crate::{
    emit::{count_lost, current, send_spawn},
    maps::{
        AWAITED, AWAITED_SLOTS, BPF_NOEXIST, CONFIG, Gate, NS_REAP, SCRATCH, SPAWNS, arm, armed,
        awaited_stages, config, disarm, quiet_reached, spawn_table, stopped, traced_table,
    },
    slots::seal,
};

/// The kernel-internal errno of an interrupted fork (include/linux/errno.h).
const ERESTARTNOINTR: i64 = 513;

/// Sets a boundary once: the first time it is crossed counts.
#[inline(always)]
pub fn stamp(s: *mut SpawnEvent, slot: usize, t: u64) {
    unsafe {
        if let Some(v) = (*s).ts.get_mut(slot)
            && *v == 0
        {
            *v = t;
        }
    }
}

/// Whether all of `bits` ([`spawn`]) have happened. Each is a byte of its
/// own (see [`spawn`]); `bits` is a constant at every call, so the loop
/// folds away.
#[inline(always)]
pub fn has(s: *const SpawnEvent, bits: u32) -> bool {
    let mut i = 0;
    while i < spawn::COUNT {
        if bits & (1 << i) != 0 && unsafe { (*s).progress[i] } == 0 {
            return false;
        }
        i += 1;
    }
    true
}

#[inline(always)]
fn put(s: *mut SpawnEvent, bits: u32, v: u8) {
    let mut i = 0;
    while i < spawn::COUNT {
        if bits & (1 << i) != 0 {
            unsafe { (*s).progress[i] = v };
        }
        i += 1;
    }
}

#[inline(always)]
fn set(s: *mut SpawnEvent, bits: u32) {
    put(s, bits, 1);
}

#[inline(always)]
fn clear(s: *mut SpawnEvent, bits: u32) {
    put(s, bits, 0);
}

/// Sends the spawn if nothing more can happen to it, and forgets it. When
/// the ring buffer is full it stays, marked, for userspace to collect.
#[inline(always)]
pub fn finish_if_done(key: u32, s: *mut SpawnEvent) {
    let done = if has(s, spawn::THREAD) {
        has(s, spawn::EXITED | spawn::PARENT_RETURNED)
    } else if has(s, spawn::ROOT) {
        has(s, spawn::EXITED)
    } else {
        has(s, spawn::REAPED | spawn::PARENT_RETURNED) && !has(s, spawn::COW_PENDING)
    };
    if !done || has(s, spawn::EMIT_PENDING) {
        return;
    }
    // Once stopped, the ring is drained for the last time: the record
    // waits in the map for the final sweep.
    if stopped() {
        set(s, spawn::EMIT_PENDING);
    } else if send_spawn(s) {
        spawn_table().remove(key);
    } else {
        set(s, spawn::EMIT_PENDING);
        count_lost(lost::SPAWN_DEFERRED);
    }
}

/// A new record being built: in the child's slot, published by [`keep`],
/// or in per-CPU scratch space when another spawn holds that slot.
struct Building {
    s: *mut SpawnEvent,
    slot: Option<*mut Slot<SpawnEvent>>,
}

/// Starts `child`'s record, blank. A finished record still waiting in the
/// slot under the same tid for room in the ring buffer (pid reuse) moves to
/// the spill hash, where userspace collects it. (Not sent from here: a
/// second send in the fork program, with `serve`'s histogram folding
/// inlined, took its verification past the kernel's limit.)
#[inline(always)]
fn open(spawn_id: u64, child: u32, child_tgid: u32) -> Option<Building> {
    let slot = spawn_table().claim(child);
    let s = match slot {
        Some(slot) => unsafe {
            let old = &raw mut (*slot).value;
            if (*slot).key == child {
                (*slot).key = 0;
                if has(old, spawn::EMIT_PENDING) && SPAWNS.insert(child, &*old, 0).is_err() {
                    count_lost(lost::SPAWN_OVERWRITTEN);
                }
            }
            old
        },
        None => SCRATCH.get_ptr_mut(0)?,
    };
    blank(s, spawn_id, child, child_tgid);
    Some(Building { s, slot })
}

/// Zeroes `s` up to its path's first word and sets every "unknown" value.
/// The rest of the path buffer (248 bytes, four cache lines a fork would
/// have to own) is never read: the record goes out only up to its path's
/// NUL ([`SpawnEvent::wire_len`]), written whenever its length is.
#[inline(always)]
fn blank(s: *mut SpawnEvent, spawn_id: u64, child: u32, child_tgid: u32) {
    crate::mem::zero_first(s, SPAWN_PATH_OFFSET + 8);
    unsafe {
        (*s).kind = rec::SPAWN;
        (*s).spawn_id = spawn_id;
        (*s).child_tid = child;
        (*s).child_tgid = child_tgid;
        (*s).parent_cpu = u16::MAX;
        (*s).first_cpu = u16::MAX;
        (*s).argc = UNKNOWN_U32;
        (*s).envc = UNKNOWN_U32;
        (*s).env_bytes = UNKNOWN;
        (*s).faults_pre_exec = FAULTS_UNKNOWN;
        (*s).cow_pre_exec = FAULTS_UNKNOWN;
        (*s).faults_total = FAULTS_UNKNOWN;
        (*s).cow_total = FAULTS_UNKNOWN;
    }
}

/// Publishes a record [`open`] started: its slot gets its key, or the
/// record goes into the spill hash, replacing one left there under the
/// same tid (sent first if it was finished).
#[inline(always)]
fn keep(child: u32, b: Building) -> bool {
    if let Some(slot) = b.slot {
        seal(slot, child);
        return true;
    }
    let s = b.s;
    // Nearly always a new key: one hash operation instead of two.
    if SPAWNS.insert(child, unsafe { &*s }, BPF_NOEXIST).is_ok() {
        return true;
    }
    // With metrics on a record is never left pending; the constant lets
    // the verifier skip the histogram folding here.
    if config(&CONFIG.metrics) == 0
        && let Some(old) = SPAWNS.get_ptr_mut(child)
        && has(old, spawn::EMIT_PENDING)
        && !send_spawn(old)
    {
        count_lost(lost::SPAWN_OVERWRITTEN);
    }
    if SPAWNS.insert(child, unsafe { &*s }, 0).is_err() {
        count_lost(lost::SPAWN_NO_ROOM);
        return false;
    }
    true
}

/// The root command's record, started when it is first traced.
#[inline(always)]
pub fn start_root(tgid: u32) {
    if let Some(b) = open(crate::emit::now(), tgid, tgid) {
        set(b.s, spawn::ROOT | spawn::PARENT_RETURNED);
        keep(tgid, b);
    }
}

/// The parent's fork of `child` completed (`sched_process_fork`, in the
/// parent): the record is created from the parent's clone state.
#[inline(always)]
pub fn forked(t: u64, child: u32, cpu: u32, parent: *mut TracedProc) {
    if stopped() {
        return;
    }
    let (tid, tgid) = current();
    // Unknown flags (the clone's entry was not seen) count as neither.
    let flags = clones::get(tid).map(|c| unsafe { (*c).clone_flags });
    let is_thread = flags.is_some_and(|f| f & cf::CLONE_THREAD != 0);
    let copies_mm = flags.is_some_and(|f| f & cf::CLONE_VM == 0);
    let child_tgid = if is_thread { tgid } else { child };
    if !is_thread {
        trace_child(child, copies_mm);
    }
    if copies_mm {
        // The previous fork's window closes; this one's opens.
        resolve_parent_cow(tgid, parent);
        open_cow_window(parent);
        unsafe {
            (*parent).cow_child = child;
            (*parent).cow_at_fork = (*parent).cow_faults;
        }
    }
    // Looked up again after the copy-on-write count, which may end a
    // record: with `serve`'s histogram folding inlined there, each map
    // pointer still held (slot or hash) is one more walk of it for the
    // verifier, past its limit with --cgroup-label.
    let clone = clones::get(tid);
    let Some(b) = open(t, child, child_tgid) else {
        return;
    };
    let s = b.s;
    unsafe {
        (*s).parent_tgid = tgid;
        (*s).parent_tid = tid;
        (*s).parent_cpu = cpu as u16;
        (*s).cgroup_slot = crate::metrics::cgroup_slot();
        (*s).ts[ts::FORK_DONE] = t;
        match clone {
            Some(c) => {
                from_clone(s, &*c);
                (*c).child = child;
            }
            // No clone return will be seen for it.
            None => set(s, spawn::PARENT_RETURNED),
        }
    }
    let awaited = awaited_stages() & await_child::FIRST_RUN != 0;
    let slotted = awaited && claim_slot(child);
    let unwatched = clone.map_or(0, |c| unsafe { (*c).unwatched } as u32);
    set(
        s,
        fork_flags(is_thread, copies_mm, awaited, slotted, unwatched),
    );
    if !keep(child, b) {
        if slotted {
            free_slot(child);
        }
        return;
    }
    arm(Gate::SpawnsSeen);
    if quiet_reached() {
        crate::emit::send_fork_wake(tgid);
    }
    if awaited {
        arm(Gate::AwaitingFirstRun);
        if !slotted {
            arm(Gate::AwaitingUnslotted);
        }
    }
}

/// The new record's flags: what the fork learnt about its child, and
/// which of the fork-only probes were parked when its clone began.
#[inline(always)]
fn fork_flags(
    is_thread: bool,
    copies_mm: bool,
    awaited: bool,
    slotted: bool,
    unwatched: u32,
) -> u32 {
    let bit = |on: bool, flag: u32| if on { flag } else { 0 };
    bit(is_thread, spawn::THREAD)
        | bit(copies_mm, spawn::COW_PENDING)
        | bit(awaited, spawn::AWAITING_FIRST_RUN)
        | bit(slotted, spawn::FIRST_RUN_SLOT)
        | bit(unwatched & parked::MM_LOCK != 0, spawn::FORK_UNWATCHED)
        | bit(unwatched & parked::FAULTS != 0, spawn::FAULTS_UNWATCHED)
}

/// Puts `tid` in its first-run slot if the slot is free. Two CPUs racing
/// for one slot can both succeed (no compare-and-swap before 5.12): the
/// loser's first run is then missed, and its record says so.
#[inline(always)]
fn claim_slot(tid: u32) -> bool {
    match AWAITED.get_ptr_mut(tid % AWAITED_SLOTS) {
        Some(slot) if unsafe { *slot } == 0 => {
            unsafe { *slot = tid };
            true
        }
        _ => false,
    }
}

#[inline(always)]
fn free_slot(tid: u32) {
    if let Some(slot) = AWAITED.get_ptr_mut(tid % AWAITED_SLOTS)
        && unsafe { *slot } == tid
    {
        unsafe { *slot = 0 };
    }
}

/// Whether the task switched to may be awaiting its first run: called on
/// every context switch of the machine while any task is awaited.
#[inline(always)]
pub fn may_await(tid: u32) -> bool {
    armed(Gate::AwaitingUnslotted)
        || AWAITED
            .get(tid % AWAITED_SLOTS)
            .is_some_and(|slot| *slot == tid)
}

/// `s` stops awaiting its first run: its slot, or its count outside the
/// slots, goes.
#[inline(always)]
fn end_await(tid: u32, s: *mut SpawnEvent) {
    clear(s, spawn::AWAITING_FIRST_RUN);
    disarm(Gate::AwaitingFirstRun);
    if has(s, spawn::FIRST_RUN_SLOT) {
        clear(s, spawn::FIRST_RUN_SLOT);
        free_slot(tid);
    } else {
        disarm(Gate::AwaitingUnslotted);
    }
}

/// Copies the parent side of the clone into the record.
#[inline(always)]
fn from_clone(s: *mut SpawnEvent, c: &CloneState) {
    unsafe {
        (*s).clone_flags = c.clone_flags;
        (*s).syscall = c.syscall;
        (*s).exit_signal = c.exit_signal.into();
        (*s).parent_comm = c.comm;
        (*s).cpr_ns = c.cpr_total_ns;
        (*s).avf_ns = c.avf_total_ns;
        (*s).cpr_calls = c.cpr_calls;
        (*s).avf_calls = c.avf_calls;
        let mut i = 0;
        while i <= ts::NEWTASK {
            (*s).ts[i] = c.ts[i];
            i += 1;
        }
    }
}

/// Adds a forked child process to the traced set.
#[inline(always)]
fn trace_child(child: u32, copies_mm: bool) {
    let mut flags = if config(&CONFIG.follow) != 0 {
        tflags::SPAWNS
    } else {
        tflags::LIFE_ONLY
    };
    if copies_mm {
        flags |= tflags::COW_WINDOW;
    }
    if traced_table().put(child, &crate::mem::traced_entry(flags)) && copies_mm {
        arm(Gate::CowWindows);
    }
}

/// Opens the copy-on-write window of a traced process (it forked): from now
/// on its CoW faults are counted.
#[inline(always)]
fn open_cow_window(p: *mut TracedProc) {
    unsafe {
        if (*p).flags & tflags::COW_WINDOW == 0 {
            (*p).flags |= tflags::COW_WINDOW;
            arm(Gate::CowWindows);
        }
    }
}

/// Closes it: the process exec'd (a fresh mm shares nothing) or exited.
#[inline(always)]
pub fn close_cow_window(p: *mut TracedProc) {
    unsafe {
        if (*p).flags & tflags::COW_WINDOW != 0 {
            (*p).flags &= !tflags::COW_WINDOW;
            disarm(Gate::CowWindows);
        }
    }
}

/// The parent's copy-on-write faults since its latest fork go into that
/// fork's record: its next fork, exec or exit ends the count.
#[inline(always)]
pub fn resolve_parent_cow(tgid: u32, p: *mut TracedProc) {
    let child = unsafe { (*p).cow_child };
    if child == 0 {
        return;
    }
    unsafe { (*p).cow_child = 0 };
    let Some(s) = spawn_table().get(child) else {
        return;
    };
    unsafe {
        if (*s).parent_tgid != tgid || !has(s, spawn::COW_PENDING) {
            return;
        }
        (*s).parent_cow = ((*p).cow_faults - (*p).cow_at_fork) as u32;
        set(s, spawn::PARENT_COW_KNOWN);
        clear(s, spawn::COW_PENDING);
    }
    finish_if_done(child, s);
}

/// The parent thread `tid` returned `ret` from its clone.
#[inline(always)]
pub fn clone_returned(t: u64, tid: u32, ret: i64) {
    let Some(c) = clones::get(tid) else {
        return;
    };
    let (flags, child) = unsafe { ((*c).clone_flags, (*c).child) };
    // A fork interrupted by a signal returns ERESTARTNOINTR, which the
    // kernel always turns into a fresh attempt: not a failure anyone sees.
    if ret < 0 && ret != -ERESTARTNOINTR {
        failed_clone(t, c, ret);
    }
    // Every entry was inserted at clone entry, which armed the gate for it
    // exactly when the clone copies the mm.
    if clones::end(tid) && flags & cf::CLONE_VM == 0 {
        disarm(Gate::ForksInFlight);
    }
    if child == 0 {
        return;
    }
    let Some(s) = spawn_table().get(child) else {
        return;
    };
    if unsafe { (*s).parent_tid } != tid {
        return;
    }
    stamp(s, ts::CLONE_EXIT, t);
    unsafe { (*s).clone_ret = ret };
    set(s, spawn::PARENT_RETURNED);
    finish_if_done(child, s);
}

/// A clone that failed: the parent's side alone, sent at once.
#[inline(always)]
fn failed_clone(t: u64, c: *const CloneState, ret: i64) {
    if stopped() {
        return;
    }
    let (tid, tgid) = current();
    let Some(s) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    blank(s, t, 0, 0);
    unsafe {
        from_clone(s, &*c);
        (*s).parent_tgid = tgid;
        (*s).parent_tid = tid;
        (*s).clone_ret = ret;
        (*s).ts[ts::CLONE_EXIT] = t;
    }
    set(s, spawn::CLONE_FAILED | spawn::PARENT_RETURNED);
    if !send_spawn(s) {
        count_lost(lost::SPAWN_RING);
    }
}

/// The spawned task `tid` ran for the first time, on `cpu`.
#[inline(always)]
pub fn first_run(t: u64, tid: u32, cpu: u32) {
    let Some(s) = spawn_table().get(tid) else {
        return;
    };
    if !has(s, spawn::AWAITING_FIRST_RUN) {
        return;
    }
    end_await(tid, s);
    // A switch-in after the child's own return or exec is not its first:
    // that one was missed (rare, under load), and is not made up.
    let ran = unsafe { (*s).ts[ts::CHILD_RETURN] | (*s).ts[ts::EXEC_FIRST_ENTER] };
    if ran != 0 {
        set(s, spawn::FIRST_RUN_MISSED);
        return;
    }
    stamp(s, ts::FIRST_RUN, t);
    unsafe { (*s).first_cpu = cpu as u16 };
}

/// The new task `tid` returned from its clone: its first act in user space.
#[inline(always)]
pub fn child_returned(t: u64, tid: u32) {
    let Some(s) = spawn_table().get(tid) else {
        return;
    };
    if has(s, spawn::CLONE_FAILED) {
        return;
    }
    stamp(s, ts::CHILD_RETURN, t);
    if has(s, spawn::AWAITING_FIRST_RUN) {
        first_run_from_run_delay(t, tid, s);
    }
}

/// The child runs, but its switch-in never reached the context-switch
/// probes: on some hosts the switches away from certain tasks (a sandbox's
/// init) fire no sched_switch at all. If it has run exactly once, the
/// scheduler's own wait count, added to its wake-up, is its first run.
/// On another CPU than its waker's, that count misses the time the CPU
/// took to leave idle (the scheduler skips the clock update of a switch
/// that preempts the idle task), so it reads about 0 where the wait was
/// tens of µs: the child's own return, `t`, a few µs after its first
/// run, is then the nearer figure.
#[inline(always)]
fn first_run_from_run_delay(t: u64, tid: u32, s: *mut SpawnEvent) {
    end_await(tid, s);
    let woken = unsafe { (*s).ts[ts::WAKEUP_NEW] };
    let cpu = crate::emit::cpu() as u16;
    match crate::task::first_wait() {
        Some(wait) if woken != 0 => {
            let ran = if cpu == unsafe { (*s).parent_cpu } {
                (woken + wait).min(t)
            } else {
                t
            };
            stamp(s, ts::FIRST_RUN, ran);
            unsafe { (*s).first_cpu = cpu };
            set(s, spawn::FIRST_RUN_FROM_RUN_DELAY);
        }
        _ => set(s, spawn::FIRST_RUN_MISSED),
    }
}

/// A task that ends without having been seen to run stops being awaited,
/// and its record says its first run was missed.
#[inline(always)]
fn stop_awaiting(tid: u32, s: *mut SpawnEvent) {
    if has(s, spawn::AWAITING_FIRST_RUN) {
        end_await(tid, s);
        set(s, spawn::FIRST_RUN_MISSED);
    }
}

/// A spawned thread `tid` exited, or took over its process by an exec.
#[inline(always)]
pub fn thread_ended(t: u64, tid: u32, by_exec: bool) {
    let Some(s) = spawn_table().get(tid) else {
        return;
    };
    if !has(s, spawn::THREAD) {
        return;
    }
    stamp(s, ts::EXIT, t);
    set(
        s,
        spawn::EXITED | if by_exec { spawn::EXEC_TOOK_OVER } else { 0 },
    );
    stop_awaiting(tid, s);
    finish_if_done(tid, s);
}

/// The spawned process `tgid` exited (its last thread). `faults`: its
/// fault counts then; `code`: its exit code.
#[inline(always)]
pub fn process_exited(t: u64, tgid: u32, faults: (u32, u32), code: u64) {
    let Some(s) = spawn_table().get(tgid) else {
        return;
    };
    if has(s, spawn::THREAD) {
        return;
    }
    stamp(s, ts::EXIT, t);
    unsafe {
        (*s).faults_total = faults.0;
        (*s).cow_total = faults.1;
        if code == crate::task::NO_EXIT_CODE {
            set(s, spawn::EXIT_CODE_UNKNOWN);
        } else {
            (*s).exit_code = code as u32;
        }
        if (*s).comm_before[0] == 0 {
            (*s).comm_before = crate::emit::comm();
        }
    }
    set(s, spawn::EXITED);
    stop_awaiting(tgid, s);
    if has(s, spawn::ROOT) {
        finish_if_done(tgid, s);
        return;
    }
    arm(Gate::Zombies);
    if let Some((pid, reaper)) = crate::task::pid_for_reaper()
        && pid != tgid
    {
        unsafe {
            (*s).reap_ns_pid = pid;
            (*s).reaper_tgid = reaper;
        }
        let key = ReapKey {
            reaper_tgid: reaper,
            pid,
        };
        if NS_REAP.insert(key, tgid, 0).is_ok() {
            arm(Gate::NsReapKeys);
        }
    }
}

/// The current process's wait returned `seen`: the pid of a child it
/// reaped, as its PID namespace numbers it.
#[inline(always)]
pub fn reaped(t: u64, seen: u32) {
    let (_, tgid) = current();
    let key = ReapKey {
        reaper_tgid: tgid,
        pid: seen,
    };
    let translated = if armed(Gate::NsReapKeys) {
        unsafe { NS_REAP.get(key) }.copied()
    } else {
        None
    };
    let child = translated.unwrap_or(seen);
    let Some(s) = spawn_table().get(child) else {
        return;
    };
    // A stop or continue report (WUNTRACED, WCONTINUED) is not a reap; nor
    // is a host pid that only looks like the namespace pid of another.
    if has(s, spawn::THREAD)
        || !has(s, spawn::EXITED)
        || has(s, spawn::REAPED)
        || (translated.is_none() && unsafe { (*s).reap_ns_pid } != 0)
    {
        return;
    }
    stamp(s, ts::REAP, t);
    unsafe { (*s).reaper_tgid = tgid };
    mark_reaped(child, s, 0);
}

/// The task `pid` was released: a zombie reaped by a wait no probe saw
/// (an untraced reaper), or a task that needed no reap.
#[inline(always)]
pub fn released(pid: u32) {
    let Some(s) = spawn_table().get(pid) else {
        return;
    };
    if has(s, spawn::THREAD) || !has(s, spawn::EXITED) || has(s, spawn::REAPED) {
        return;
    }
    mark_reaped(pid, s, spawn::REAP_UNSEEN);
}

#[inline(always)]
fn mark_reaped(child: u32, s: *mut SpawnEvent, extra: u32) {
    let ns_pid = unsafe { (*s).reap_ns_pid };
    if ns_pid != 0 {
        let key = ReapKey {
            reaper_tgid: unsafe { (*s).reaper_tgid },
            pid: ns_pid,
        };
        if NS_REAP.remove(key).is_ok() {
            disarm(Gate::NsReapKeys);
        }
    }
    set(s, spawn::REAPED | extra);
    disarm(Gate::Zombies);
    finish_if_done(child, s);
}
