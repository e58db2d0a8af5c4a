//! The parent side of each traced clone in flight, from the clone's entry
//! to its return, kept per calling thread in a slot table
//! ([`crate::slots`]): array reads the verifier inlines, where a hash would
//! take an insert, lookups and a delete per spawn.
use spawnprof_common::CloneState;

use crate::{maps::clone_table, mem::zero, slots::seal};

/// Starts `tid`'s clone: its zeroed state, to fill in place, or `None`
/// when there was no room.
#[inline(always)]
pub fn start(tid: u32) -> Option<*mut CloneState> {
    let table = clone_table();
    if let Some(slot) = table.claim(tid) {
        let state = unsafe { &raw mut (*slot).value };
        zero(state);
        seal(slot, tid);
        return Some(state);
    }
    // Rare (a tid equal modulo the slot count is mid-clone): the hash.
    // SAFETY: CloneState is integers and arrays of them only.
    let state: CloneState = unsafe { crate::mem::zeroed() };
    table.spill.insert(tid, &state, 0).ok()?;
    table.spill.get_ptr_mut(tid)
}

/// `tid`'s clone in flight, if it has one.
#[inline(always)]
pub fn get(tid: u32) -> Option<*mut CloneState> {
    clone_table().get(tid)
}

/// Ends `tid`'s clone; true if it had one.
#[inline(always)]
pub fn end(tid: u32) -> bool {
    clone_table().remove(tid)
}
