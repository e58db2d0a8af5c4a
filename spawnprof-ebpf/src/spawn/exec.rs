//! Exec attempts of spawned processes. From entry to return, the leader's
//! attempt is kept in its record and another thread's in `EXECS` under its
//! tid. The record is found by the process's tgid, which stays the same
//! when an exec from another thread makes that thread the leader
//! (de_thread turns its tid into the tgid).
//! The record gets the first successful attempt; every other attempt (the
//! failures of a PATH search, a later exec) is sent on its own.
use spawnprof_common::{ExecState, SpawnEvent, metrics, spawn, ts};

use super::{clear, has, set, stamp, thread_ended};
use crate::{
    emit::{Attempt, Path, comm, current, send_exec},
    maps::{CONFIG, EXECS, config, spawn_table},
};

/// The current thread enters execve/execveat with the user path at `path`.
#[inline(always)]
pub fn exec_entered(t: u64, path: u64, syscall: u16) {
    let (tid, tgid) = current();
    let Some(s) = spawn_table().get(tgid) else {
        return;
    };
    stamp(s, ts::EXEC_FIRST_ENTER, t);
    unsafe {
        if (*s).comm_before[0] == 0 {
            (*s).comm_before = comm();
        }
    }
    set(s, spawn::EXEC_IN_FLIGHT);
    let state = ExecState {
        enter: t,
        path,
        syscall,
        _pad: 0,
        tgid,
    };
    if tid == tgid {
        unsafe { (*s).attempt = state };
    } else {
        let _ = EXECS.insert(tid, state, 0);
    }
}

/// Takes the attempt in flight of thread `tid` of the process whose record
/// is `s` (zeroed when none was seen: see [`exec_done`]).
#[inline(always)]
fn take_attempt(s: *mut SpawnEvent, tid: u32, tgid: u32) -> ExecState {
    if tid == tgid {
        let a = unsafe { (*s).attempt };
        unsafe { (*s).attempt.enter = 0 };
        return a;
    }
    let a = unsafe { EXECS.get(tid) }.copied().unwrap_or_default();
    if a.enter != 0 {
        let _ = EXECS.remove(tid);
    }
    a
}

/// The current process's exec passed its point of no return.
#[inline(always)]
pub fn exec_prepared(t: u64) {
    let (_, tgid) = current();
    if let Some(s) = spawn_table().get(tgid)
        && !has(s, spawn::EXECED)
    {
        stamp(s, ts::EXEC_PREPARE, t);
    }
}

/// What the kernel says of a new image.
pub struct Image {
    /// The thread that made the exec (before de_thread).
    pub old_tid: u32,
    pub argc: u32,
    pub envc: u32,
    pub env_bytes: u64,
    /// `linux_binprm.filename` (a kernel string), 0 when unknown.
    pub filename: u64,
    /// The process's faults and copy-on-write faults before the exec.
    pub faults: (u32, u32),
    /// Whether the fields above were read, and so go into the record.
    pub read: bool,
}

impl Image {
    /// An image nothing was read of: with metrics on (`serve`, `top`) the
    /// record keeps the exec's times alone.
    #[inline(always)]
    pub fn bare(old_tid: u32) -> Self {
        Self {
            old_tid,
            argc: 0,
            envc: 0,
            env_bytes: 0,
            filename: 0,
            faults: (0, 0),
            read: false,
        }
    }
}

/// The current process's new image is in place. Returns its record's
/// spawn id, for the captures that follow.
#[inline(always)]
pub fn exec_done(t: u64, img: &Image) -> Option<u64> {
    let (_, tgid) = current();
    if img.old_tid != tgid {
        thread_ended(t, img.old_tid, true);
    }
    let s = spawn_table().get(tgid)?;
    // Zeroed when the entry was not seen, not an Option: 5.10's verifier
    // refuses the uninitialised stack an Option's None leaves, which the
    // compiler reads on both branches.
    let a = take_attempt(s, img.old_tid, tgid);
    unsafe { (*s).exec_attempts += 1 };
    if has(s, spawn::EXECED) {
        // A later exec: a record of its own.
        if a.enter != 0 {
            send_exec(
                &attempt_of(s, img.old_tid, &a, t, 0),
                Path::Kernel(img.filename),
            );
        }
        return None;
    }
    set(s, spawn::EXECED);
    stamp(s, ts::EXEC_DONE, t);
    if a.enter != 0 {
        stamp(s, ts::EXEC_ENTER, a.enter);
        unsafe { (*s).exec_syscall = a.syscall };
    }
    if img.read {
        fill_image(s, img);
    } else if config(&CONFIG.metrics) & metrics::mode::BY_EXEC != 0 {
        // serve --label-by exec: the program's name is the spawn's label.
        unsafe { (*s).comm_after = comm() };
    }
    Some(unsafe { (*s).spawn_id })
}

#[inline(always)]
fn fill_image(s: *mut SpawnEvent, img: &Image) {
    unsafe {
        (*s).argc = img.argc;
        (*s).envc = img.envc;
        (*s).env_bytes = img.env_bytes;
        (*s).faults_pre_exec = img.faults.0;
        (*s).cow_pre_exec = img.faults.1;
        (*s).comm_after = comm();
        let buf = &mut (*s).exec_path;
        (*s).exec_path_len = match aya_ebpf::helpers::bpf_probe_read_kernel_str_bytes(
            img.filename as *const u8,
            buf,
        ) {
            Ok(p) if p.len() >= spawnprof_common::TEXT_LEN - 1 => {
                p.len() as u16 | spawnprof_common::PATH_TRUNCATED
            }
            Ok(p) => p.len() as u16,
            Err(_) => 0,
        };
    }
}

#[inline(always)]
fn attempt_of(s: *const SpawnEvent, tid: u32, a: &ExecState, exit: u64, ret: i64) -> Attempt {
    Attempt {
        spawn_id: unsafe { (*s).spawn_id },
        child_tgid: a.tgid,
        tid,
        enter: a.enter,
        exit,
        ret,
        syscall: a.syscall,
    }
}

/// The current thread's execve/execveat returned `ret`. A failure (each
/// missing PATH directory) is sent with its path; a success finishes the
/// record's exec.
#[inline(always)]
pub fn exec_returned(t: u64, ret: i64) {
    let (tid, tgid) = current();
    let Some(s) = spawn_table().get(tgid) else {
        // A thread's attempt outlived its process's record.
        if tid != tgid {
            let _ = EXECS.remove(tid);
        }
        return;
    };
    let a = take_attempt(s, tid, tgid);
    if a.enter != 0 {
        attempt_returned(s, tid, &a, t, ret);
    } else if ret == 0 && has(s, spawn::EXECED) {
        // The new image took the attempt (exec_done): its return.
        stamp(s, ts::EXEC_RETURN, t);
        unsafe { (*s).exec_ret = 0 };
        clear(s, spawn::EXEC_IN_FLIGHT);
    }
}

#[inline(always)]
fn attempt_returned(s: *mut SpawnEvent, tid: u32, a: &ExecState, t: u64, ret: i64) {
    unsafe { (*s).exec_ret = ret };
    clear(s, spawn::EXEC_IN_FLIGHT);
    if ret == 0 && !has(s, spawn::EXECED) {
        // A success whose new image no probe saw: the record's exec all the same.
        set(s, spawn::EXECED);
        stamp(s, ts::EXEC_ENTER, a.enter);
        stamp(s, ts::EXEC_RETURN, t);
        unsafe {
            (*s).exec_attempts += 1;
            (*s).exec_syscall = a.syscall;
        }
        return;
    }
    unsafe {
        (*s).exec_attempts += 1;
        // A PATH search is the misses before the record's exec; a later
        // exec's (`env cmd`, `taskset`) belong to no stage of this spawn.
        if ret != 0 && !has(s, spawn::EXECED) {
            (*s).failed_attempts += 1;
        }
    }
    send_exec(&attempt_of(s, tid, a, t, ret), Path::User(a.path));
}
