//! Userspace's side of the kernel's slot tables (see the kernel side's
//! `slots` module): a value lives in the array slot at `key % N` unless
//! another key holds it, and then in the spill hash.
use anyhow::{Context as _, Result};
use aya::{
    Pod,
    maps::{Array, HashMap, Map, MapData},
};
use spawnprof_common::Slot;

pub struct SlotTable<V: Pod>
where
    Slot<V>: Pod,
{
    slots: Array<MapData, Slot<V>>,
    spill: HashMap<MapData, u32, V>,
}

impl<V: Pod> SlotTable<V>
where
    Slot<V>: Pod,
{
    pub fn new(slots: Map, spill: Map) -> Result<Self> {
        Ok(Self {
            slots: Array::try_from(slots)?,
            spill: HashMap::try_from(spill)?,
        })
    }

    fn index(&self, key: u32) -> u32 {
        key % self.slots.len()
    }

    pub fn get(&self, key: u32) -> Option<V> {
        match self.slots.get(&self.index(key), 0) {
            Ok(slot) if slot.key == key => Some(slot.value),
            _ => self.spill.get(&key, 0).ok(),
        }
    }

    /// Stores `value` under `key`, in its slot if that is free or its own.
    pub fn insert(&mut self, key: u32, value: V) -> Result<()> {
        let index = self.index(key);
        let owner = self.slots.get(&index, 0).map_or(0, |slot| slot.key);
        if owner == 0 || owner == key {
            let slot = Slot {
                key,
                _pad: 0,
                value,
            };
            return self.slots.set(index, slot, 0).context("writing a slot");
        }
        self.spill
            .insert(key, value, 0)
            .context("writing the spill hash")
    }

    /// Removes the values `pick` chooses and returns them.
    pub fn take(&mut self, pick: impl Fn(&V) -> bool) -> Vec<V> {
        let mut out = Vec::new();
        for index in 0..self.slots.len() {
            let Ok(slot) = self.slots.get(&index, 0) else {
                continue;
            };
            if slot.key == 0 || !pick(&slot.value) {
                continue;
            }
            let free = Slot { key: 0, ..slot };
            if self.slots.set(index, free, 0).is_ok() {
                out.push(slot.value);
            }
        }
        let chosen: Vec<(u32, V)> = self
            .spill
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| pick(v))
            .collect();
        for (key, value) in chosen {
            if self.spill.remove(&key).is_ok() {
                out.push(value);
            }
        }
        out
    }
}
