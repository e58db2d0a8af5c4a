//! Tables keyed by a tid or tgid, kept mostly in arrays. A key lives in
//! the slot at `key % N` when that slot is free or already its own: an
//! array read the verifier inlines, where a hash costs a lookup of tens of
//! nanoseconds and an insert of hundreds. A key whose slot another key
//! holds (equal modulo N, both in the table) spills into a hash.
//!
//! ```text
//!  put/claim:  slot free or its own ──▶ slots[key % N] = (key, value)
//!              slot held by another ──▶ spill[key] = value
//!  get:        slot if it names key, else spill
//!  remove:     slot freed (key 0), or spill[key] removed
//! ```
//!
//! Two CPUs claiming one free slot at once can both write it (there is no
//! compare-and-swap before 5.12): the later write wins. That takes two
//! keys equal modulo N entering in the same instant; tids are handed out
//! in sequence, so live ones that far apart rarely start together.
use aya_ebpf::maps::{Array, HashMap, LruHashMap};
use spawnprof_common::Slot;

/// The hash a table spills into.
pub trait Spill<V> {
    fn find(&self, key: u32) -> Option<*mut V>;
    fn put(&self, key: u32, value: &V) -> bool;
    fn forget(&self, key: u32) -> bool;
}

/// The same three calls on either kind of hash.
macro_rules! spill_into {
    ($map:ident) => {
        impl<V> Spill<V> for $map<u32, V> {
            #[inline(always)]
            fn find(&self, key: u32) -> Option<*mut V> {
                self.get_ptr_mut(key)
            }
            #[inline(always)]
            fn put(&self, key: u32, value: &V) -> bool {
                self.insert(key, value, 0).is_ok()
            }
            #[inline(always)]
            fn forget(&self, key: u32) -> bool {
                self.remove(key).is_ok()
            }
        }
    };
}

spill_into!(HashMap);
spill_into!(LruHashMap);

/// A slot array of `count` entries and the hash it spills into.
pub struct Table<V: 'static, S: 'static> {
    pub slots: &'static Array<Slot<V>>,
    pub count: u32,
    pub spill: &'static S,
}

impl<V, S: Spill<V>> Table<V, S> {
    #[inline(always)]
    fn slot(&self, key: u32) -> Option<*mut Slot<V>> {
        self.slots.get_ptr_mut(key % self.count)
    }

    /// `key`'s value, if it has one.
    #[inline(always)]
    pub fn get(&self, key: u32) -> Option<*mut V> {
        if let Some(slot) = self.slot(key)
            && unsafe { (*slot).key } == key
        {
            return Some(unsafe { &raw mut (*slot).value });
        }
        self.spill.find(key)
    }

    /// `key`'s slot if it is free or already `key`'s. The caller fills the
    /// value, then [`seal`]s it: a free slot shows no reader a half-written
    /// value under `key` (one already `key`'s does unless the caller frees
    /// it first, as a new spawn record does). `None`: spill.
    #[inline(always)]
    pub fn claim(&self, key: u32) -> Option<*mut Slot<V>> {
        let slot = self.slot(key)?;
        let owner = unsafe { (*slot).key };
        (owner == 0 || owner == key).then_some(slot)
    }

    /// Stores `value` under `key`; false if there was no room.
    #[inline(always)]
    pub fn put(&self, key: u32, value: &V) -> bool
    where
        V: Copy,
    {
        match self.claim(key) {
            Some(slot) => {
                unsafe { (*slot).value = *value };
                seal(slot, key);
                true
            }
            None => self.spill.put(key, value),
        }
    }

    /// Forgets `key`; true if it had a value.
    #[inline(always)]
    pub fn remove(&self, key: u32) -> bool {
        if let Some(slot) = self.slot(key)
            && unsafe { (*slot).key } == key
        {
            unsafe { (*slot).key = 0 };
            return true;
        }
        self.spill.forget(key)
    }
}

/// Publishes a slot [`Table::claim`] gave, once its value is written.
#[inline(always)]
pub fn seal<V>(slot: *mut Slot<V>, key: u32) {
    unsafe { (*slot).key = key };
}
