//! The discretised multi-level queue of waiting calls and the anti-starvation deadlines.
//!
//! Both are binary heaps with lazy deletion: every time a call starts waiting it gets a fresh
//! ticket, and heap entries whose ticket is no longer the call's are skipped when they surface.
//! That keeps every operation O(log n) without allocating in the steady state.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::CallId;

/// Identifies one waiting spell of one call.
pub type Ticket = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueEntry {
    pub queue: usize,
    /// FCFS position inside the queue; smaller runs first.
    pub order: u64,
    pub ticket: Ticket,
    pub call: CallId,
}

/// Waiting calls, most urgent first: lowest queue, then earliest order.
#[derive(Debug, Default)]
pub struct WaitingQueue {
    heap: BinaryHeap<Reverse<QueueEntry>>,
}

impl WaitingQueue {
    pub fn push(&mut self, entry: QueueEntry) {
        self.heap.push(Reverse(entry));
    }

    /// The most urgent entry for which `is_current` holds, dropping stale ones on the way.
    pub fn peek(&mut self, is_current: impl Fn(&QueueEntry) -> bool) -> Option<QueueEntry> {
        while let Some(Reverse(top)) = self.heap.peek() {
            if is_current(top) {
                return Some(*top);
            }
            self.heap.pop();
        }
        None
    }

    pub fn pop(&mut self, is_current: impl Fn(&QueueEntry) -> bool) -> Option<QueueEntry> {
        let top = self.peek(is_current)?;
        self.heap.pop();
        Some(top)
    }

    /// Removes stale entries once they outnumber live ones, so memory tracks the live count.
    pub fn compact(&mut self, live: usize, is_current: impl Fn(&QueueEntry) -> bool) {
        if self.heap.len() > 2 * live + 1024 {
            self.heap.retain(|Reverse(entry)| is_current(entry));
        }
    }

    pub fn entries(&self) -> usize {
        self.heap.len()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: f64,
    pub ticket: Ticket,
    pub call: CallId,
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
    heap: BinaryHeap<Reverse<Deadline>>,
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

    fn entry(queue: usize, order: u64, ticket: Ticket) -> QueueEntry {
        QueueEntry { queue, order, ticket, call: ticket }
    }

    #[test]
    fn lower_queue_first_then_fcfs() {
        let mut queue = WaitingQueue::default();
        queue.push(entry(1, 0, 1));
        queue.push(entry(0, 5, 2));
        queue.push(entry(0, 3, 3));
        let order: Vec<_> = std::iter::from_fn(|| queue.pop(|_| true)).map(|e| e.ticket).collect();
        assert_eq!(order, vec![3, 2, 1]);
    }

    #[test]
    fn stale_entries_are_skipped() {
        let mut queue = WaitingQueue::default();
        queue.push(entry(0, 0, 1));
        queue.push(entry(0, 1, 2));
        assert_eq!(queue.pop(|e| e.ticket != 1).map(|e| e.ticket), Some(2));
        assert_eq!(queue.pop(|_| true), None);
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
