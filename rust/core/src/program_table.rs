//! The process table: one entry per program, with what PLAS, ATLAS and anti-starvation need.

use std::collections::VecDeque;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::{CallId, ProgramId};

#[derive(Debug, Clone, Default)]
pub struct Program {
    /// Engine time of the program's finished calls (PLAS priority).
    pub attained_service: f64,
    /// Longest priority + service over its finished calls (ATLAS priority, Algorithm 1).
    pub critical_path: f64,
    /// Time its calls spent waiting, counted when a waiting spell ends.
    pub waiting_time: f64,
    /// W_p of the anti-starvation rule: its calls' waiting since one of them was last promoted.
    pub starvation_wait: f64,
    /// Live calls (waiting or running). A set: a program can have thousands of live calls.
    pub live_calls: FxHashSet<CallId>,
    pub last_arrival: f64,
    pub last_completion: f64,
    /// Programs are numbered as they arrive; PLAS and ATLAS serve older programs first within a
    /// queue, so a program's context stays cached between its calls.
    pub arrival_order: u64,
    /// When the program last had no live call; the stale timer runs from here.
    idle_since: f64,
    /// ATLAS only: priority + service of each finished call, for children naming their parents.
    pub finished_paths: FxHashMap<CallId, f64>,
}

impl Program {
    pub fn active_calls(&self) -> usize {
        self.live_calls.len()
    }
}

/// Programs by id, plus a FIFO of moments programs went idle so stale ones are found without a
/// scan: `now` never goes backwards, so the FIFO is ordered by time.
#[derive(Debug, Default)]
pub struct ProgramTable {
    programs: FxHashMap<ProgramId, Program>,
    went_idle: VecDeque<(f64, ProgramId)>,
    arrivals: u64,
}

impl ProgramTable {
    pub fn get(&self, id: ProgramId) -> Option<&Program> {
        self.programs.get(&id)
    }

    pub fn get_mut(&mut self, id: ProgramId) -> Option<&mut Program> {
        self.programs.get_mut(&id)
    }

    pub fn len(&self) -> usize {
        self.programs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.programs.is_empty()
    }

    /// Starts a program if it is new; an idle new program can go stale like any other.
    pub fn ensure(&mut self, id: ProgramId, now: f64) -> &mut Program {
        let went_idle = &mut self.went_idle;
        let arrivals = &mut self.arrivals;
        self.programs.entry(id).or_insert_with(|| {
            went_idle.push_back((now, id));
            *arrivals += 1;
            Program { idle_since: now, last_arrival: now, arrival_order: *arrivals, ..Program::default() }
        })
    }

    pub fn add_live_call(&mut self, id: ProgramId, call: CallId, now: f64) -> &mut Program {
        let program = self.ensure(id, now);
        program.live_calls.insert(call);
        program.last_arrival = now;
        program
    }

    /// Credits a finished call to its program (if the program is still in the table) and forgets
    /// it, in one lookup. `keep_path` (ATLAS) records the call's path for children naming it.
    pub fn finish_call(&mut self, id: ProgramId, call: CallId, service: f64, path: f64, keep_path: bool, now: f64) {
        let Some(program) = self.programs.get_mut(&id) else { return };
        program.attained_service += service;
        program.critical_path = program.critical_path.max(path);
        program.last_completion = now;
        if keep_path {
            program.finished_paths.insert(call, path);
        }
        program.live_calls.remove(&call);
        if program.live_calls.is_empty() {
            program.idle_since = now;
            self.went_idle.push_back((now, id));
        }
    }

    /// Forgets a live call of the program and starts its stale timer if it became idle.
    pub fn remove_live_call(&mut self, id: ProgramId, call: CallId, now: f64) {
        let Some(program) = self.programs.get_mut(&id) else { return };
        program.live_calls.remove(&call);
        if program.live_calls.is_empty() {
            program.idle_since = now;
            self.went_idle.push_back((now, id));
        }
    }

    pub fn remove(&mut self, id: ProgramId) -> Option<Program> {
        self.programs.remove(&id)
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
            let still_idle = self.programs.get(&id).is_some_and(|p| p.live_calls.is_empty() && p.idle_since == since);
            if still_idle {
                self.programs.remove(&id);
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
    fn idle_programs_go_stale_busy_ones_do_not() {
        let mut table = ProgramTable::default();
        table.add_live_call(1, 10, 0.0);
        table.add_live_call(2, 20, 0.0);
        table.remove_live_call(1, 10, 1.0);
        assert_eq!(table.drop_stale(5.0, 5.0), 0);
        assert_eq!(table.drop_stale(6.0, 5.0), 1);
        assert!(table.get(1).is_none());
        assert!(table.get(2).is_some(), "a program with a live call never goes stale");
    }

    #[test]
    fn activity_restarts_the_stale_timer() {
        let mut table = ProgramTable::default();
        table.add_live_call(1, 10, 0.0);
        table.remove_live_call(1, 10, 1.0);
        table.add_live_call(1, 11, 4.0);
        table.remove_live_call(1, 11, 5.0);
        assert_eq!(table.drop_stale(7.0, 5.0), 0, "went idle again at 5.0, not 1.0");
        assert_eq!(table.drop_stale(10.0, 5.0), 1);
    }
}
