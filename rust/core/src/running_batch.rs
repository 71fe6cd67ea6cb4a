//! The running calls in admission order (which `ran_all` credits in, so demotions get FCFS
//! positions in that order), by id and by slot. Calls leave from anywhere, most often near the
//! front (the oldest finish first), so a removal shifts whichever side of the call is shorter:
//! the front side shifts into a gap kept before the first call.

use crate::call_table::Slot;
use crate::CallId;

/// Gap the front may grow to before it is closed, as a multiple of the calls held.
const GAP_PER_CALL: usize = 1;
/// Gaps this small are never worth closing.
const SMALL_GAP: usize = 64;

#[derive(Debug, Default)]
pub struct RunningBatch {
    ids: Vec<CallId>,
    slots: Vec<Slot>,
    /// Where the batch starts in `ids` and `slots`; what is before it is free.
    start: usize,
}

impl RunningBatch {
    pub fn ids(&self) -> &[CallId] {
        &self.ids[self.start..]
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots[self.start..]
    }

    pub fn len(&self) -> usize {
        self.ids.len() - self.start
    }

    pub fn push(&mut self, id: CallId, slot: Slot) {
        if self.start > SMALL_GAP && self.start > GAP_PER_CALL * self.len() {
            self.ids.drain(..self.start);
            self.slots.drain(..self.start);
            self.start = 0;
        }
        self.ids.push(id);
        self.slots.push(slot);
    }

    /// Removes a call that is in the batch, keeping the others in order.
    pub fn remove(&mut self, slot: Slot) {
        let offset = self.slots().iter().position(|&s| s == slot).expect("running call is in the batch");
        let at = self.start + offset;
        if offset < self.len() / 2 {
            self.ids.copy_within(self.start..at, self.start + 1);
            self.slots.copy_within(self.start..at, self.start + 1);
            self.start += 1;
        } else {
            self.ids.remove(at);
            self.slots.remove(at);
        }
        if self.start == self.ids.len() {
            self.ids.clear();
            self.slots.clear();
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_from_either_side_keep_the_order() {
        let mut batch = RunningBatch::default();
        (0..10).for_each(|i| batch.push(100 + i as u64, i));
        batch.remove(1); // front half: shifts into the gap
        batch.remove(8); // back half
        batch.remove(0);
        assert_eq!(batch.ids(), &[102, 103, 104, 105, 106, 107, 109]);
        assert_eq!(batch.slots(), &[2, 3, 4, 5, 6, 7, 9]);
        batch.push(110, 10);
        assert_eq!(batch.ids().last(), Some(&110));
    }

    #[test]
    fn the_front_gap_is_reclaimed() {
        let mut batch = RunningBatch::default();
        for i in 0..10_000 {
            batch.push(i as u64, i);
            if i >= 8 {
                batch.remove(i - 8);
            }
        }
        assert_eq!(batch.len(), 8);
        assert!(batch.ids.len() <= 2 * SMALL_GAP + 8, "the gap stays bounded");
        assert_eq!(batch.slots(), &(9_992..10_000).collect::<Vec<_>>()[..]);
    }
}
