//! Live calls in reusable slots, with an index from call id to slot. Queue entries, deadlines and
//! the running batch hold slots, so the hot paths reach a call by indexing instead of hashing its
//! id; only operations naming calls by id pay for one hash lookup each.

use std::ops::{Index, IndexMut};

use rustc_hash::FxHashMap;

use crate::scheduler::Call;
use crate::CallId;

/// Where a live call is stored. A freed slot is reused by a later call; entries that still name
/// it are told apart by their ticket (see `queues`).
pub type Slot = usize;

#[derive(Debug, Default)]
pub struct CallTable {
    slots: Vec<Option<Call>>,
    /// The id of the call in each slot (meaningless for a free slot).
    ids: Vec<CallId>,
    index: FxHashMap<CallId, Slot>,
    free: Vec<Slot>,
}

impl CallTable {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains(&self, id: CallId) -> bool {
        self.index.contains_key(&id)
    }

    pub fn slot_of(&self, id: CallId) -> Option<Slot> {
        self.index.get(&id).copied()
    }

    pub fn get(&self, id: CallId) -> Option<&Call> {
        self.at(self.slot_of(id)?)
    }

    /// The call in `slot`, if the slot is in use.
    pub fn at(&self, slot: Slot) -> Option<&Call> {
        self.slots.get(slot)?.as_ref()
    }

    pub fn id(&self, slot: Slot) -> CallId {
        self.ids[slot]
    }

    /// Every live call with its id, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, CallId, &Call)> + '_ {
        self.slots.iter().enumerate().filter_map(|(slot, call)| Some((slot, self.ids[slot], call.as_ref()?)))
    }

    /// Stores a call whose id is not live.
    pub fn insert(&mut self, id: CallId, call: Call) -> Slot {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(call);
                self.ids[slot] = id;
                slot
            }
            None => {
                self.slots.push(Some(call));
                self.ids.push(id);
                self.slots.len() - 1
            }
        };
        self.index.insert(id, slot);
        slot
    }

    /// Frees a used slot and returns its call.
    pub fn remove(&mut self, slot: Slot) -> Call {
        let call = self.slots[slot].take().expect("slot in use");
        self.index.remove(&self.ids[slot]);
        self.free.push(slot);
        call
    }
}

/// Indexing a free slot is a bug in the scheduler (every slot it holds is validated live).
impl Index<Slot> for CallTable {
    type Output = Call;

    fn index(&self, slot: Slot) -> &Call {
        self.slots[slot].as_ref().expect("slot in use")
    }
}

impl IndexMut<Slot> for CallTable {
    fn index_mut(&mut self, slot: Slot) -> &mut Call {
        self.slots[slot].as_mut().expect("slot in use")
    }
}
