//! The discretised multi-level queue of waiting calls and the anti-starvation deadlines.
//!
//! Both use lazy deletion: every time a call starts waiting it gets a fresh ticket, and entries
//! whose ticket is no longer the call's are skipped when they surface. No allocation happens in
//! the steady state.

use std::cmp::{Ordering, Reverse};
use std::collections::VecDeque;

// Four children a node: half the levels of a binary heap, and a node's children share cache lines,
// so a pop from a large queue touches fewer cold lines.
use dary_heap::QuaternaryHeap as Heap;

/// The scheduler's handle on a call (its slot in the call table): entries name calls by it.
pub type CallHandle = u64;

/// Identifies one waiting spell of one call.
pub type Ticket = u64;

/// Place inside a queue, smaller first: the program's arrival order (0 for every call under the
/// program-blind policies), then the call's own FCFS order.
pub type Position = (u64, u64);

/// An entry of one lane (`WaitingQueue::HEAD_OF_LINE` for promoted calls, else 1 + the call's
/// queue); the lane is where it is kept, not part of it, so two entries share a cache line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueEntry {
    pub order: Position,
    pub ticket: Ticket,
    pub call: CallHandle,
}

/// One queue. Most calls enter it with a position after everything in it (arrivals, demotions,
/// promotions of the newest program) and go to the FIFO in O(1); a call placed earlier (preempted
/// or requeued, or of an older program) goes to a heap, so it still runs in its place.
#[derive(Debug, Default)]
struct Level {
    fifo: VecDeque<QueueEntry>,
    returned: Heap<Reverse<QueueEntry>>,
}

impl Level {
    fn push(&mut self, entry: QueueEntry) {
        if self.fifo.back().is_none_or(|last| last.order < entry.order) {
            self.fifo.push_back(entry);
        } else {
            self.returned.push(Reverse(entry));
        }
    }

    /// The earliest current entry, after dropping stale ones from both fronts.
    fn peek(&mut self, is_current: &impl Fn(&QueueEntry) -> bool) -> Option<QueueEntry> {
        while self.fifo.front().is_some_and(|e| !is_current(e)) {
            self.fifo.pop_front();
        }
        while self.returned.peek().is_some_and(|Reverse(e)| !is_current(e)) {
            self.returned.pop();
        }
        match (self.fifo.front(), self.returned.peek()) {
            (Some(first), Some(Reverse(back))) => Some(*first.min(back)),
            (Some(first), None) => Some(*first),
            (None, Some(Reverse(back))) => Some(*back),
            (None, None) => None,
        }
    }

    fn remove_front(&mut self, entry: &QueueEntry) {
        if self.fifo.front() == Some(entry) {
            self.fifo.pop_front();
        } else {
            self.returned.pop();
        }
    }

    fn len(&self) -> usize {
        self.fifo.len() + self.returned.len()
    }

    fn retain(&mut self, is_current: &impl Fn(&QueueEntry) -> bool) {
        self.fifo.retain(is_current);
        self.returned.retain(|Reverse(e)| is_current(e));
    }
}

/// Waiting calls, most urgent first: the head-of-line lane of starved calls, then the queues from
/// the top one down, each by position.
#[derive(Debug)]
pub struct WaitingQueue {
    levels: Vec<Level>,
}

impl WaitingQueue {
    pub const HEAD_OF_LINE: usize = 0;

    pub fn new(num_queues: usize) -> Self {
        WaitingQueue { levels: (0..=num_queues).map(|_| Level::default()).collect() }
    }

    pub fn lane(queue: usize, promoted: bool) -> usize {
        if promoted {
            Self::HEAD_OF_LINE
        } else {
            queue + 1
        }
    }

    pub fn push(&mut self, lane: usize, entry: QueueEntry) {
        self.levels[lane].push(entry);
    }

    /// The most urgent entry in `first_lane` or after it for which `is_current` holds, dropping
    /// stale ones on the way.
    pub fn peek_from(&mut self, first_lane: usize, is_current: impl Fn(&QueueEntry) -> bool) -> Option<QueueEntry> {
        self.front_from(first_lane, is_current).map(|(_, entry)| entry)
    }

    pub fn pop_from(&mut self, first_lane: usize, is_current: impl Fn(&QueueEntry) -> bool) -> Option<QueueEntry> {
        let (lane, top) = self.front_from(first_lane, is_current)?;
        self.levels[lane].remove_front(&top);
        Some(top)
    }

    /// `peek_from`, with the lane the entry is in.
    fn front_from(
        &mut self,
        first_lane: usize,
        is_current: impl Fn(&QueueEntry) -> bool,
    ) -> Option<(usize, QueueEntry)> {
        let mut lanes = self.levels[first_lane..].iter_mut().enumerate();
        lanes.find_map(|(i, level)| Some((first_lane + i, level.peek(&is_current)?)))
    }

    /// Removes stale entries once they outnumber live ones, so memory tracks the live count.
    pub fn compact(&mut self, live: usize, is_current: impl Fn(&QueueEntry) -> bool) {
        if self.entries() > 2 * live + 1024 {
            self.levels.iter_mut().for_each(|level| level.retain(&is_current));
        }
    }

    pub fn entries(&self) -> usize {
        self.levels.iter().map(Level::len).sum()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: f64,
    pub ticket: Ticket,
    pub call: CallHandle,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Deadline {}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.total_cmp(&other.at).then(self.ticket.cmp(&other.ticket))
    }
}

/// The moments waiting calls become starved, earliest first.
#[derive(Debug, Default)]
pub struct StarvationDeadlines {
    heap: Heap<Reverse<Deadline>>,
}

impl StarvationDeadlines {
    pub fn push(&mut self, deadline: Deadline) {
        self.heap.push(Reverse(deadline));
    }

    /// Pops the next deadline that has passed by `now`, stale or not (the caller checks).
    pub fn pop_due(&mut self, now: f64) -> Option<Deadline> {
        match self.heap.peek() {
            Some(Reverse(next)) if next.at <= now => self.heap.pop().map(|Reverse(d)| d),
            _ => None,
        }
    }

    pub fn compact(&mut self, live: usize, is_current: impl Fn(&Deadline) -> bool) {
        if self.heap.len() > 2 * live + 1024 {
            self.heap.retain(|Reverse(deadline)| is_current(deadline));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(order: u64, ticket: Ticket) -> QueueEntry {
        QueueEntry { order: (0, order), ticket, call: ticket }
    }

    #[test]
    fn lower_queue_first_then_fcfs() {
        let mut queue = WaitingQueue::new(2);
        queue.push(2, entry(0, 1));
        queue.push(1, entry(5, 2));
        queue.push(1, entry(3, 3));
        let order: Vec<_> = std::iter::from_fn(|| queue.pop_from(0, |_| true)).map(|e| e.ticket).collect();
        assert_eq!(order, vec![3, 2, 1]);
    }

    #[test]
    fn head_of_line_first_and_skippable() {
        let mut queue = WaitingQueue::new(2);
        queue.push(WaitingQueue::lane(0, false), entry(1, 1));
        queue.push(WaitingQueue::lane(1, true), entry(9, 2));
        assert_eq!(queue.peek_from(0, |_| true).map(|e| e.ticket), Some(2));
        assert_eq!(queue.pop_from(1, |_| true).map(|e| e.ticket), Some(1));
        assert_eq!(queue.pop_from(0, |_| true).map(|e| e.ticket), Some(2));
    }

    #[test]
    fn returned_calls_keep_their_place() {
        let mut queue = WaitingQueue::new(1);
        queue.push(0, entry(5, 1));
        queue.push(0, entry(7, 2));
        queue.push(0, entry(2, 3)); // preempted: it arrived before both
        queue.push(0, entry(6, 4)); // preempted, between the two
        let order: Vec<_> = std::iter::from_fn(|| queue.pop_from(0, |_| true)).map(|e| e.order.1).collect();
        assert_eq!(order, vec![2, 5, 6, 7]);
    }

    #[test]
    fn older_programs_go_first_then_fcfs() {
        let mut queue = WaitingQueue::new(1);
        let mut push = |program: u64, order: u64| {
            queue.push(0, QueueEntry { order: (program, order), ticket: order, call: order })
        };
        push(2, 1);
        push(2, 3);
        push(1, 4); // a later call of an older program
        push(3, 2);
        let order: Vec<_> = std::iter::from_fn(|| queue.pop_from(0, |_| true)).map(|e| e.call).collect();
        assert_eq!(order, vec![4, 1, 3, 2]);
    }

    #[test]
    fn a_program_that_left_a_queue_comes_back_in_its_place() {
        let mut queue = WaitingQueue::new(1);
        let push = |queue: &mut WaitingQueue, program: u64, order: u64| {
            queue.push(0, QueueEntry { order: (program, order), ticket: order, call: order })
        };
        push(&mut queue, 2, 1);
        push(&mut queue, 1, 2);
        assert_eq!(queue.pop_from(0, |_| true).map(|e| e.call), Some(2)); // program 1 has no call left here
        push(&mut queue, 3, 3);
        push(&mut queue, 1, 4);
        let order: Vec<_> = std::iter::from_fn(|| queue.pop_from(0, |_| true)).map(|e| e.call).collect();
        assert_eq!(order, vec![4, 1, 3]);
        assert_eq!(queue.entries(), 0);
    }

    #[test]
    fn compaction_drops_stale_entries_and_keeps_the_order() {
        let mut queue = WaitingQueue::new(1);
        for order in 0..2000u64 {
            queue.push(1, QueueEntry { order: (order % 3, order), ticket: order, call: order });
        }
        let live = |e: &QueueEntry| e.ticket % 10 == 0;
        queue.compact(200, live);
        assert_eq!(queue.entries(), 200);
        let order: Vec<_> = std::iter::from_fn(|| queue.pop_from(0, live)).map(|e| e.order).collect();
        let mut expected: Vec<_> = (0..2000u64).filter(|o| o % 10 == 0).map(|o| (o % 3, o)).collect();
        expected.sort_unstable();
        assert_eq!(order, expected);
    }

    #[test]
    fn stale_entries_are_skipped() {
        let mut queue = WaitingQueue::new(1);
        queue.push(0, entry(0, 1));
        queue.push(0, entry(1, 2));
        assert_eq!(queue.pop_from(0, |e| e.ticket != 1).map(|e| e.ticket), Some(2));
        assert_eq!(queue.pop_from(0, |_| true), None);
    }

    #[test]
    fn deadlines_pop_only_when_due() {
        let mut deadlines = StarvationDeadlines::default();
        deadlines.push(Deadline { at: 2.0, ticket: 1, call: 1 });
        deadlines.push(Deadline { at: 1.0, ticket: 2, call: 2 });
        assert!(deadlines.pop_due(0.5).is_none());
        assert_eq!(deadlines.pop_due(1.5).map(|d| d.call), Some(2));
        assert!(deadlines.pop_due(1.5).is_none());
        assert_eq!(deadlines.pop_due(2.0).map(|d| d.call), Some(1));
    }
}
