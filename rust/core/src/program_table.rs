//! The process table: one entry per program, with what PLAS, ATLAS and anti-starvation need.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::{CallId, ProgramId};

/// Laid out in two cache lines: the first holds all that arrivals, admissions and finishes read
/// and write, so the program of a call costs one line (the rest only when it goes idle, or ATLAS).
#[derive(Debug, Clone, Default)]
#[repr(C, align(64))]
pub struct Program {
    /// Engine time of the program's finished calls (PLAS priority).
    pub attained_service: f64,
    /// Longest priority + service over its finished calls (ATLAS priority, Algorithm 1).
    pub critical_path: f64,
    /// Time its calls spent waiting, counted when a waiting spell ends.
    pub waiting_time: f64,
    /// W_p of the anti-starvation rule: its calls' waiting since one of them was last promoted.
    pub starvation_wait: f64,
    /// How many of its calls are live (waiting or running). The calls themselves are found in
    /// the call table: keeping them here too cost each arrival and finish a cache miss.
    pub live_calls: u32,
    /// How many of its calls finished (their mean service sizes what a hint says is left).
    pub finished_calls: u32,
    pub last_arrival: f64,
    pub last_completion: f64,
    /// Programs are numbered as they arrive; PLAS and ATLAS serve older programs first within a
    /// queue, so a program's context stays cached between its calls.
    pub arrival_order: u64,
    // ----- second line
    /// When the program last had no live call; the stale timer runs from here.
    idle_since: f64,
    /// Its own id, for the idle FIFO when a call reaches it by slot.
    id: ProgramId,
    /// ATLAS only: priority + service of each finished call, for children naming their parents.
    pub finished_paths: FxHashMap<CallId, f64>,
    /// What the client last said of the calls the program will still make.
    hint: Option<CallsLeftHint>,
}

/// "`calls` calls to come", said when `arrivals` of the program's calls had arrived.
#[derive(Debug, Clone, Copy)]
struct CallsLeftHint {
    calls: u32,
    arrivals: u32,
}

impl Program {
    pub fn active_calls(&self) -> usize {
        self.live_calls as usize
    }

    /// Calls that have arrived so far (a call leaves the table only by finishing, or with its
    /// program).
    fn arrivals(&self) -> u32 {
        self.finished_calls.saturating_add(self.live_calls)
    }

    /// The calls still to come by the client's last count: what it said, less the calls that
    /// arrived since (none once more arrived than it said).
    pub fn calls_to_come(&self) -> Option<u32> {
        let hint = self.hint?;
        Some(hint.calls.saturating_sub(self.arrivals().saturating_sub(hint.arrivals)))
    }

    pub fn set_calls_to_come(&mut self, calls: u32) {
        self.hint = Some(CallsLeftHint { calls, arrivals: self.arrivals() });
    }
}

/// Where a program is stored. A live call's program stays in the table (programs with live calls
/// are never dropped, and ending one drops its calls), so calls keep their program's slot and
/// reach it without hashing its id.
pub type ProgramSlot = usize;

/// Programs in reusable slots with an index by id, plus a FIFO of moments programs went idle so
/// stale ones are found without a scan: `now` never goes backwards, so the FIFO is ordered by time.
#[derive(Debug, Default)]
pub struct ProgramTable {
    slots: Vec<Option<Program>>,
    index: FxHashMap<ProgramId, ProgramSlot>,
    free: Vec<ProgramSlot>,
    went_idle: VecDeque<(f64, ProgramId)>,
    arrivals: u64,
}

impl ProgramTable {
    pub fn get(&self, id: ProgramId) -> Option<&Program> {
        self.at(*self.index.get(&id)?)
    }

    pub fn get_mut(&mut self, id: ProgramId) -> Option<&mut Program> {
        let slot = *self.index.get(&id)?;
        self.at_mut(slot)
    }

    /// The program in `slot`, if the slot is in use.
    pub fn at(&self, slot: ProgramSlot) -> Option<&Program> {
        self.slots.get(slot)?.as_ref()
    }

    pub fn at_mut(&mut self, slot: ProgramSlot) -> Option<&mut Program> {
        self.slots.get_mut(slot)?.as_mut()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Starts a program if it is new; an idle new program can go stale like any other.
    pub fn ensure(&mut self, id: ProgramId, now: f64) -> (ProgramSlot, &mut Program) {
        let slot = match self.index.get(&id) {
            Some(&slot) => slot,
            None => {
                self.went_idle.push_back((now, id));
                self.arrivals += 1;
                let program = Program {
                    idle_since: now,
                    last_arrival: now,
                    arrival_order: self.arrivals,
                    id,
                    ..Program::default()
                };
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.slots[slot] = Some(program);
                        slot
                    }
                    None => {
                        self.slots.push(Some(program));
                        self.slots.len() - 1
                    }
                };
                self.index.insert(id, slot);
                slot
            }
        };
        (slot, self.slots[slot].as_mut().expect("indexed slot is in use"))
    }

    pub fn add_live_call(&mut self, id: ProgramId, now: f64) -> (ProgramSlot, &mut Program) {
        let (slot, program) = self.ensure(id, now);
        program.live_calls += 1;
        program.last_arrival = now;
        (slot, program)
    }

    /// Credits a finished call to its program (if the program is still in the table) and forgets
    /// it, in one lookup. `keep_path` (ATLAS) records the call's path for children naming it.
    pub fn finish_call(&mut self, slot: ProgramSlot, call: CallId, service: f64, path: f64, keep_path: bool, now: f64) {
        let Some(program) = self.slots.get_mut(slot).and_then(Option::as_mut) else { return };
        program.attained_service += service;
        program.finished_calls = program.finished_calls.saturating_add(1);
        program.critical_path = program.critical_path.max(path);
        program.last_completion = now;
        if keep_path {
            program.finished_paths.insert(call, path);
        }
        program.live_calls -= 1;
        if program.live_calls == 0 {
            program.idle_since = now;
            self.went_idle.push_back((now, program.id));
        }
    }

    /// Forgets a live call of the program and starts its stale timer if it became idle.
    pub fn remove_live_call(&mut self, id: ProgramId, now: f64) {
        let Some(program) = self.get_mut(id) else { return };
        program.live_calls -= 1;
        if program.live_calls == 0 {
            program.idle_since = now;
            self.went_idle.push_back((now, id));
        }
    }

    pub fn remove(&mut self, id: ProgramId) -> Option<Program> {
        let slot = self.index.remove(&id)?;
        self.free.push(slot);
        self.slots[slot].take()
    }

    /// Drops programs idle for at least `stale_after` seconds; returns how many were dropped.
    pub fn drop_stale(&mut self, now: f64, stale_after: f64) -> usize {
        let mut dropped = 0;
        while let Some(&(since, id)) = self.went_idle.front() {
            if since + stale_after > now {
                break;
            }
            self.went_idle.pop_front();
            // Entries of programs that became busy again, or idle later, are out of date.
            let still_idle = self.get(id).is_some_and(|p| p.live_calls == 0 && p.idle_since == since);
            if still_idle {
                self.remove(id);
                dropped += 1;
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_every_call_touches_fits_the_first_cache_line() {
        assert_eq!(std::mem::align_of::<Program>(), 64);
        assert_eq!(std::mem::offset_of!(Program, idle_since), 64, "the first line is full");
    }

    #[test]
    fn idle_programs_go_stale_busy_ones_do_not() {
        let mut table = ProgramTable::default();
        table.add_live_call(1, 0.0);
        table.add_live_call(2, 0.0);
        table.remove_live_call(1, 1.0);
        assert_eq!(table.drop_stale(5.0, 5.0), 0);
        assert_eq!(table.drop_stale(6.0, 5.0), 1);
        assert!(table.get(1).is_none());
        assert!(table.get(2).is_some(), "a program with a live call never goes stale");
    }

    #[test]
    fn activity_restarts_the_stale_timer() {
        let mut table = ProgramTable::default();
        table.add_live_call(1, 0.0);
        table.remove_live_call(1, 1.0);
        table.add_live_call(1, 4.0);
        table.remove_live_call(1, 5.0);
        assert_eq!(table.drop_stale(7.0, 5.0), 0, "went idle again at 5.0, not 1.0");
        assert_eq!(table.drop_stale(10.0, 5.0), 1);
    }
}
