//! The parent side of each traced clone in flight, from the clone's entry
//! to its return, kept per calling thread.
//!
//! Most clones live in a slot of `CLONE_SLOTS` chosen by the tid: array
//! reads the verifier inlines, where a hash would take an insert, lookups
//! and a delete per spawn. A thread whose slot another in-flight clone
//! holds (tids equal modulo the slot count) goes to the `CLONES` hash.
//!
//! ```text
//!  entry:  slot free or its own ──▶ CLONE_SLOTS[tid % N] = (tid, state)
//!          slot held by another ──▶ CLONES[tid] = state
//!  fork, mm lock, kernel fns, return: slot if it names tid, else CLONES
//!  return: slot freed (tid 0), or CLONES[tid] removed
//! ```
use spawnprof_common::CloneState;

use crate::{
    maps::{CLONE_SLOT_COUNT, CLONE_SLOTS, CLONES, CloneSlot},
    mem::zero,
};

#[inline(always)]
fn slot_of(tid: u32) -> Option<*mut CloneSlot> {
    CLONE_SLOTS.get_ptr_mut(tid % CLONE_SLOT_COUNT)
}

/// Starts `tid`'s clone: its zeroed state, to fill in place, or `None`
/// when there was no room. Two CPUs claiming one free slot at once can
/// both write it (no compare-and-swap before 5.12): the later one wins and
/// the other clone is then not followed, which needs two tids equal modulo
/// the slot count entering clone in the same instant.
#[inline(always)]
pub fn start(tid: u32) -> Option<*mut CloneState> {
    if let Some(slot) = slot_of(tid) {
        let owner = unsafe { (*slot).tid };
        if owner == 0 || owner == tid {
            let state = unsafe { &raw mut (*slot).state };
            zero(state);
            unsafe { (*slot).tid = tid };
            return Some(state);
        }
    }
    CLONES.insert(tid, CloneState::default(), 0).ok()?;
    CLONES.get_ptr_mut(tid)
}

/// `tid`'s clone in flight, if it has one.
#[inline(always)]
pub fn get(tid: u32) -> Option<*mut CloneState> {
    if let Some(slot) = slot_of(tid)
        && unsafe { (*slot).tid } == tid
    {
        return Some(unsafe { &raw mut (*slot).state });
    }
    CLONES.get_ptr_mut(tid)
}

/// Ends `tid`'s clone; true if it had one.
#[inline(always)]
pub fn end(tid: u32) -> bool {
    if let Some(slot) = slot_of(tid)
        && unsafe { (*slot).tid } == tid
    {
        unsafe { (*slot).tid = 0 };
        return true;
    }
    CLONES.remove(tid).is_ok()
}
