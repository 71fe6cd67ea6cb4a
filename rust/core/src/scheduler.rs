//! The scheduler of one engine: calls enter a queue by their program's priority, wait inside it
//! in program order (PLAS, ATLAS) or FCFS, are admitted top-down while the engine has room, are
//! demoted when they use up a quantum, preempted for calls in strictly more urgent queues (unless
//! the caller protects them for the decision), and promoted to the head of the line when they
//! starve.

use rustc_hash::FxHashSet;

use crate::call_table::{CallTable, Slot};
use crate::config::{Policy, SchedulerConfig};
use crate::error::{CoreError, CoreResult};
use crate::program_table::{Program, ProgramSlot, ProgramTable};
use crate::queues::{Deadline, Position, QueueEntry, StarvationDeadlines, Ticket, WaitingQueue};
use crate::running_batch::RunningBatch;
use crate::{CallId, ProgramId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    Waiting,
    Running,
}

/// Laid out by hand in two cache lines: the first holds what crediting a call and checking queue
/// entries touch, so a pass over many calls reads one line per call.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub struct Call {
    pub queue: usize,
    pub state: CallState,
    /// Promoted by anti-starvation and not yet admitted: it goes first but preempts no one.
    pub promoted: bool,
    /// Its current waiting spell; queue and deadline entries with another ticket are stale.
    ticket: Ticket,
    /// All engine time the call has had. While it runs, the three amounts here lag by what the
    /// whole batch got since `credited_at` (see `Scheduler::batch_service`).
    pub service: f64,
    /// T_c of the anti-starvation rule (W_c is `starvation_wait`): reset when promoted.
    starvation_service: f64,
    /// Service in its current queue: it is demoted once this reaches the queue's quantum.
    pub quantum_used: f64,
    /// FCFS order in its queue; kept when preempted so the call keeps its place.
    order: u64,
    /// Its program's arrival order under PLAS and ATLAS (0 otherwise), which ranks before `order`.
    program_order: u64,
    // ----- second line
    pub program: ProgramId,
    /// Where its program is in the program table, which keeps it while the call is live.
    program_slot: ProgramSlot,
    /// The PLAS/ATLAS priority the call arrived with (0 under fcfs and mlfq).
    pub priority: f64,
    /// All time it has waited, counted when a waiting spell ends.
    pub waiting_time: f64,
    waiting_since: f64,
    starvation_wait: f64,
    /// Stamp of the last batch validation that saw this call, to catch ids listed twice; the
    /// decision after `check_protected` passes over the calls it stamped.
    seen_in_batch: u64,
    /// While running: `Scheduler::batch_service` when its amounts were last brought up to date.
    credited_at: f64,
}

impl Call {
    fn position(&self) -> Position {
        (self.program_order, self.order)
    }

    /// Gives a running call its share of what the whole batch got since it was last brought up
    /// to date.
    fn catch_up(&mut self, batch_service: f64) {
        let owed = batch_service - self.credited_at;
        self.service += owed;
        self.starvation_service += owed;
        self.quantum_used += owed;
        self.credited_at = batch_service;
    }

    /// The batch service at which a running call uses up `quantum`.
    fn quantum_end(&self, quantum: f64) -> f64 {
        self.credited_at + (quantum - self.quantum_used)
    }
}

/// What the engine must do now. Calls in `admit` are running and calls in `preempt` are waiting
/// again as far as the scheduler is concerned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Waiting calls to start, most urgent first.
    pub admit: Vec<CallId>,
    /// Running calls to stop, least urgent first.
    pub preempt: Vec<CallId>,
    /// Waiting calls the anti-starvation rule moved to the top queue in this decision.
    pub promoted: Vec<CallId>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub added: u64,
    pub admitted: u64,
    pub preemptions: u64,
    pub promotions: u64,
    pub demotions: u64,
    pub requeues: u64,
    pub finished: u64,
    pub dropped_programs: u64,
}

/// A call arriving in a batch.
#[derive(Debug, Clone, Copy)]
pub struct NewCall<'a> {
    pub call: CallId,
    pub program: ProgramId,
    /// ATLAS: the calls whose results this one needs; empty means "not named".
    pub parents: &'a [CallId],
}

/// Everything one engine step reports, applied in this order before scheduling.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepInput<'a> {
    /// Running calls that got `ran_seconds` of engine time in the step.
    pub ran: &'a [CallId],
    /// Every running call got `ran_seconds` (the usual engine step); `ran` must then be empty.
    pub ran_all: bool,
    pub ran_seconds: f64,
    pub finished: &'a [CallId],
    pub new_calls: &'a [NewCall<'a>],
    /// Running calls the decision must not preempt for a more urgent waiting call (see
    /// `Scheduler::schedule_protecting`); checked against the state after finishes and arrivals.
    pub protected: &'a [CallId],
}

#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    calls: CallTable,
    programs: ProgramTable,
    waiting: WaitingQueue,
    deadlines: StarvationDeadlines,
    /// The service every running call got in whole-batch credits (a step in which every running
    /// call ran), summed: such a credit only adds to it, so it costs the same for any batch, and a
    /// call takes its share when it leaves the batch, is credited alone or is read (`Call::catch_up`).
    /// Back to 0 whenever the batch empties.
    batch_service: f64,
    /// Where each running call's quantum ends on `batch_service` (`Call::quantum_end`; never in
    /// the last queue), by slot: a look for calls to demote reads these, not the calls. Slots of
    /// calls not running hold leftovers.
    quantum_ends: Vec<f64>,
    /// No running call's quantum ends before this, so a whole-batch credit that stays below it
    /// demotes no one without looking at any call.
    earliest_quantum_end: f64,
    waiting_per_queue: Vec<usize>,
    /// Running calls per queue, so a decision knows without a scan whether anything can swap.
    running_per_queue: Vec<usize>,
    running: RunningBatch,
    /// Slots of the calls the last `check_listed` validated, in the order listed.
    listed: Vec<Slot>,
    next_order: u64,
    next_ticket: Ticket,
    next_batch_stamp: u64,
    /// The stamp `check_protected` left on the calls the next decision must not swap out.
    protected_stamp: u64,
    last_now: f64,
    stats: Stats,
    decision: Decision,
    new_ids: FxHashSet<CallId>,
    /// Whether any program was ever given a count of calls left (else arrivals never look).
    hinted: bool,
    finished: FinishedCalls,
}

/// Service and count of every call finished so far: the mean call, for a hinted program with none
/// of its own finished yet.
#[derive(Debug, Default)]
struct FinishedCalls {
    service: f64,
    count: u64,
}

impl FinishedCalls {
    /// The work a hinted program has left once a call of it arrives: that call and those still
    /// to come, times its mean call (or every program's).
    fn work_left(&self, program: &Program) -> Option<f64> {
        let calls_left = program.calls_to_come()? + 1;
        let mean_call = match program.finished_calls {
            0 if self.count == 0 => return None,
            0 => self.service / self.count as f64,
            finished => program.attained_service / finished as f64,
        };
        Some(calls_left as f64 * mean_call)
    }
}

/// Capacity kept by the scratch set that catches duplicate ids in a batch of new calls.
const SCRATCH_IDS: usize = 256;

/// Batches of new calls up to this size find duplicates among themselves by a scan, no set.
const SCANNED_BATCH: usize = 16;

/// Calls listed apart from the rest of the batch up to this many are told apart by a scan.
const FEW_LISTED: usize = 8;

/// Queue entries and deadlines name calls by slot (see `queues::CallHandle`).
fn handle(slot: Slot) -> u64 {
    slot as u64
}

fn slot_of_handle(handle: u64) -> Slot {
    handle as Slot
}

fn is_current(calls: &CallTable, handle: u64, ticket: Ticket) -> bool {
    calls.at(slot_of_handle(handle)).is_some_and(|c| c.state == CallState::Waiting && c.ticket == ticket)
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Self {
        let queues = config.num_queues();
        Scheduler {
            config,
            calls: CallTable::default(),
            programs: ProgramTable::default(),
            waiting: WaitingQueue::new(queues),
            deadlines: StarvationDeadlines::default(),
            batch_service: 0.0,
            quantum_ends: Vec::new(),
            earliest_quantum_end: f64::INFINITY,
            waiting_per_queue: vec![0; queues],
            running_per_queue: vec![0; queues],
            running: RunningBatch::default(),
            listed: Vec::new(),
            next_order: 0,
            next_ticket: 0,
            next_batch_stamp: 0,
            protected_stamp: 0,
            last_now: f64::NEG_INFINITY,
            stats: Stats::default(),
            decision: Decision::default(),
            new_ids: FxHashSet::default(),
            hinted: false,
            finished: FinishedCalls::default(),
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Live calls: waiting or running.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn num_waiting(&self) -> usize {
        self.calls.len() - self.running.len()
    }

    pub fn running(&self) -> &[CallId] {
        self.running.ids()
    }

    /// Waiting calls per queue, most urgent queue first.
    pub fn queue_lengths(&self) -> &[usize] {
        &self.waiting_per_queue
    }

    /// A live call, with its amounts brought up to date if it runs.
    pub fn call(&self, call: CallId) -> Option<Call> {
        let mut call = self.calls.get(call)?.clone();
        if call.state == CallState::Running {
            call.catch_up(self.batch_service);
        }
        Some(call)
    }

    pub fn call_state(&self, call: CallId) -> Option<CallState> {
        Some(self.calls.get(call)?.state)
    }

    pub fn program(&self, program: ProgramId) -> Option<&Program> {
        self.programs.get(program)
    }

    pub fn num_programs(&self) -> usize {
        self.programs.len()
    }

    // ----- operations: each validates everything first, so a rejected batch changes nothing

    /// Starts a program before its first call (calls of unknown programs start them anyway).
    pub fn start_program(&mut self, program: ProgramId, now: f64) -> CoreResult<()> {
        self.check_now(now)?;
        self.last_now = now;
        self.programs.ensure(program, now);
        Ok(())
    }

    /// What the program's client says of the calls it will still make, counting its next one (an
    /// agent's step budget less the steps it has taken; an upper bound will do). A program-aware
    /// policy then queues each new call of it by the work left with the call: the calls left times
    /// the mean service of the program's finished calls (of every program's, before one of its
    /// own finished), rather than by the work it had, so the program with the least left goes
    /// first, as under SRPT. Arrivals count it down (to the arriving call at least); it lasts until
    /// said again or the program ends.
    pub fn set_calls_left(&mut self, program: ProgramId, calls_left: u32, now: f64) -> CoreResult<()> {
        self.check_now(now)?;
        if calls_left == 0 {
            return Err(CoreError::InvalidArgument(format!(
                "calls_left of program {program} must be at least 1: the calls it will still make, counting its next one"
            )));
        }
        self.last_now = now;
        self.programs.ensure(program, now).1.set_calls_to_come(calls_left);
        self.hinted = true;
        Ok(())
    }

    pub fn add_call(&mut self, call: CallId, program: ProgramId, now: f64, parents: &[CallId]) -> CoreResult<()> {
        self.add_calls(&[NewCall { call, program, parents }], now)
    }

    pub fn add_calls(&mut self, calls: &[NewCall], now: f64) -> CoreResult<()> {
        self.check_now(now)?;
        self.check_new_calls(calls)?;
        self.last_now = now;
        for call in calls {
            self.insert_call(call, now);
        }
        Ok(())
    }

    /// Credits `seconds` of engine time to each listed running call.
    pub fn record_service(&mut self, calls: &[CallId], seconds: f64, now: f64) -> CoreResult<()> {
        self.check_now(now)?;
        check_seconds(seconds)?;
        if self.is_whole_batch(calls) {
            self.last_now = now;
            self.credit_running(seconds);
            return Ok(());
        }
        self.check_listed(calls, Some(CallState::Running))?;
        self.last_now = now;
        self.credit_listed(seconds);
        Ok(())
    }

    /// Credits each listed running call its own amount of engine time (`amounts[i]` to `calls[i]`).
    pub fn record_service_each(&mut self, calls: &[CallId], amounts: &[f64], now: f64) -> CoreResult<()> {
        self.check_now(now)?;
        check_amounts(calls, amounts)?;
        self.check_listed(calls, Some(CallState::Running))?;
        self.last_now = now;
        self.credit_listed_each(amounts);
        Ok(())
    }

    /// Credits `seconds` of engine time to every running call (the usual engine step).
    pub fn record_service_running(&mut self, seconds: f64, now: f64) -> CoreResult<()> {
        self.check_now(now)?;
        check_seconds(seconds)?;
        self.last_now = now;
        self.credit_running(seconds);
        Ok(())
    }

    /// Credits every running call `seconds`, except the listed ones, each of which gets its own
    /// amount instead (`amounts[i]` to `calls[i]`): a step in which every call ran and a few did
    /// more than the rest (prefill beside decode tokens), named without the rest of the batch.
    pub fn record_service_running_except(
        &mut self,
        seconds: f64,
        calls: &[CallId],
        amounts: &[f64],
        now: f64,
    ) -> CoreResult<()> {
        self.check_now(now)?;
        check_seconds(seconds)?;
        check_amounts(calls, amounts)?;
        self.check_listed(calls, Some(CallState::Running))?;
        self.last_now = now;
        // The listed calls take their share of the batch so far and sit this credit out.
        let listed = std::mem::take(&mut self.listed);
        for &slot in &listed {
            self.calls[slot].catch_up(self.batch_service);
        }
        self.batch_service += seconds;
        for &slot in &listed {
            self.calls[slot].credited_at = self.batch_service;
        }
        // A step lists the few calls that prefilled: a scan of the list finds them; more, the
        // stamp check_listed left on them.
        let stamp = self.next_batch_stamp;
        let few = listed.len() <= FEW_LISTED;
        self.demote_reached(
            |calls, slot| if few { listed.contains(&slot) } else { calls[slot].seen_in_batch == stamp },
        );
        self.listed = listed;
        self.credit_listed_each(amounts);
        Ok(())
    }

    /// Running calls the engine stopped by itself (memory pressure) or could not start after all:
    /// they wait again and keep their place in their queue.
    pub fn requeue(&mut self, calls: &[CallId], now: f64) -> CoreResult<()> {
        self.check_now(now)?;
        self.check_listed(calls, Some(CallState::Running))?;
        self.last_now = now;
        let listed = std::mem::take(&mut self.listed);
        for &slot in &listed {
            self.remove_running(slot);
            self.enqueue_waiting(slot, now);
            self.stats.requeues += 1;
        }
        self.listed = listed;
        Ok(())
    }

    /// Finishes (or aborts) live calls, crediting their service to their programs.
    pub fn finish_calls(&mut self, calls: &[CallId], now: f64) -> CoreResult<()> {
        self.check_now(now)?;
        self.check_listed(calls, None)?;
        self.last_now = now;
        // Finishing frees slots but never moves a call, so the other listed slots stay valid.
        let listed = std::mem::take(&mut self.listed);
        for &slot in &listed {
            self.finish(slot, now);
        }
        self.listed = listed;
        Ok(())
    }

    /// Ends a program: drops it and its live calls, whose ids are returned (sorted) so the caller
    /// can abort them in the engine.
    pub fn end_program(&mut self, program: ProgramId) -> CoreResult<Vec<CallId>> {
        let slots = self.live_slots_of(program).ok_or(CoreError::UnknownProgram(program))?;
        self.programs.remove(program);
        let mut dropped = Vec::with_capacity(slots.len());
        for slot in slots {
            match self.calls[slot].state {
                CallState::Running => self.remove_running(slot),
                CallState::Waiting => self.waiting_per_queue[self.calls[slot].queue] -= 1,
            }
            dropped.push(self.calls.id(slot));
            self.calls.remove(slot);
        }
        dropped.sort_unstable();
        Ok(dropped)
    }

    /// A known program's live calls, sorted; None for an unknown program.
    pub fn program_calls(&self, program: ProgramId) -> Option<Vec<CallId>> {
        let mut calls: Vec<CallId> = self.live_slots_of(program)?.into_iter().map(|slot| self.calls.id(slot)).collect();
        calls.sort_unstable();
        Some(calls)
    }

    /// The slots of a known program's live calls: a scan of the call table, skipped for a program
    /// with none live (how programs usually end). Only ending or inspecting a program needs them.
    fn live_slots_of(&self, program: ProgramId) -> Option<Vec<Slot>> {
        let live = self.programs.get(program)?.live_calls;
        if live == 0 {
            return Some(Vec::new());
        }
        let slots: Vec<Slot> =
            self.calls.iter().filter(|(_, _, call)| call.program == program).map(|(slot, _, _)| slot).collect();
        debug_assert_eq!(slots.len(), live as usize, "a program's count of live calls matches the call table");
        Some(slots)
    }

    /// Decides which waiting calls start and which running calls stop, for an engine that can
    /// run `capacity` calls at once.
    pub fn schedule(&mut self, now: f64, capacity: usize) -> CoreResult<&Decision> {
        self.schedule_protecting(now, capacity, &[])
    }

    /// `schedule`, except that no `protected` call is preempted for a more urgent waiting call:
    /// the swap takes the least urgent unprotected running call instead, if its queue is still
    /// strictly less urgent than the waiting call's. The caller protects calls whose recompute
    /// would cost more than the swap gains. Capacity still binds: when it shrinks below the
    /// running calls, the least urgent ones stop, protected or not. Protected calls must be
    /// running, each listed once.
    pub fn schedule_protecting(&mut self, now: f64, capacity: usize, protected: &[CallId]) -> CoreResult<&Decision> {
        self.check_now(now)?;
        self.check_protected(protected, None, &[])?;
        self.last_now = now;
        self.decide(now, capacity);
        Ok(&self.decision)
    }

    /// One engine step in one call: service, finishes and arrivals, then a decision.
    pub fn step(&mut self, input: StepInput, now: f64, capacity: usize) -> CoreResult<&Decision> {
        self.check_now(now)?;
        check_seconds(input.ran_seconds)?;
        if input.ran_all && !input.ran.is_empty() {
            return Err(CoreError::InvalidArgument("pass either ran or ran_all, not both".into()));
        }
        let ran_all = input.ran_all || self.is_whole_batch(input.ran);
        if !ran_all {
            self.check_listed(input.ran, Some(CallState::Running))?;
        }
        self.check_listed(input.finished, None)?;
        let finished_stamp = self.next_batch_stamp; // the stamp check_listed left on finished calls
        self.check_new_calls(input.new_calls)?;
        self.check_protected(input.protected, Some(finished_stamp), input.new_calls)?;
        self.last_now = now;
        if ran_all {
            self.credit_running(input.ran_seconds);
        } else {
            for &call in input.ran {
                self.credit_one(self.validated_slot(call), input.ran_seconds);
            }
        }
        for &call in input.finished {
            self.finish(self.validated_slot(call), now);
        }
        for call in input.new_calls {
            self.insert_call(call, now);
        }
        self.decide(now, capacity);
        Ok(&self.decision)
    }

    /// Whether a decision now could swap a running call for a waiting one: some waiting call
    /// outside the head-of-line lane is in a strictly more urgent queue than the least urgent
    /// running call. Promotions and admissions in the decision only make a swap less likely, so
    /// `false` means the next decision preempts nothing for priority (capacity aside), and a
    /// caller can skip working out which calls to protect.
    pub fn may_swap(&mut self) -> bool {
        let Some(worst_queue) = self.least_urgent_running_queue() else { return false };
        self.peek_waiting(WaitingQueue::lane(0, false))
            .is_some_and(|best| self.calls[slot_of_handle(best.call)].queue < worst_queue)
    }

    // ----- validation

    /// Whether `calls` is the whole running batch in batch order (the usual step): live, running
    /// and distinct by construction, and credited in that order either way, so crediting it as
    /// the batch leaves nothing to validate.
    fn is_whole_batch(&self, calls: &[CallId]) -> bool {
        calls == self.running.ids()
    }

    fn check_now(&self, now: f64) -> CoreResult<()> {
        if !now.is_finite() {
            return Err(CoreError::InvalidArgument(format!("now must be a finite time in seconds, got {now}")));
        }
        if now < self.last_now {
            return Err(CoreError::InvalidArgument(format!(
                "time went backwards: now={now} is before the last time seen, {}; pass a monotonic clock",
                self.last_now
            )));
        }
        Ok(())
    }

    /// Every listed call is live, listed once, and in `state` when one is required. Leaves their
    /// slots in `listed`, in the order listed.
    fn check_listed(&mut self, calls: &[CallId], state: Option<CallState>) -> CoreResult<()> {
        self.next_batch_stamp += 1;
        let stamp = self.next_batch_stamp;
        self.listed.clear();
        for &id in calls {
            let slot = self.calls.slot_of(id).ok_or(CoreError::UnknownCall(id))?;
            self.listed.push(slot);
            let call = &mut self.calls[slot];
            if state.is_some_and(|expected| expected != call.state) {
                return Err(CoreError::WrongState { call: id, expected: "running" });
            }
            if call.seen_in_batch == stamp {
                return Err(CoreError::DuplicateCall(id));
            }
            call.seen_in_batch = stamp;
        }
        Ok(())
    }

    /// Every protected call will be running when the decision starts, and is listed once. In a
    /// step that is judged after the step's own changes: calls stamped `finishing` will be gone
    /// by then, and `arriving` calls will be waiting.
    fn check_protected(
        &mut self,
        protected: &[CallId],
        finishing: Option<u64>,
        arriving: &[NewCall],
    ) -> CoreResult<()> {
        self.next_batch_stamp += 1;
        let stamp = self.next_batch_stamp;
        for &id in protected {
            let Some(slot) = self.calls.slot_of(id) else {
                return Err(if arriving.iter().any(|new| new.call == id) {
                    CoreError::WrongState { call: id, expected: "running" }
                } else {
                    CoreError::UnknownCall(id)
                });
            };
            let call = &mut self.calls[slot];
            if finishing == Some(call.seen_in_batch) {
                return Err(CoreError::UnknownCall(id));
            }
            if call.state != CallState::Running {
                return Err(CoreError::WrongState { call: id, expected: "running" });
            }
            if call.seen_in_batch == stamp {
                return Err(CoreError::DuplicateCall(id));
            }
            call.seen_in_batch = stamp;
        }
        // Nothing stamps calls again before the decision that this one guards.
        self.protected_stamp = stamp;
        Ok(())
    }

    fn check_new_calls(&mut self, calls: &[NewCall]) -> CoreResult<()> {
        let scan = calls.len() <= SCANNED_BATCH;
        if !scan {
            // Clearing costs the table's capacity, so a table grown by a bulk load is shrunk back
            // rather than cleared at that size every step.
            self.new_ids.clear();
            self.new_ids.shrink_to(SCRATCH_IDS);
        }
        for (i, new) in calls.iter().enumerate() {
            let repeated = if scan {
                calls[..i].iter().any(|earlier| earlier.call == new.call)
            } else {
                !self.new_ids.insert(new.call)
            };
            if self.calls.contains(new.call) || repeated {
                return Err(CoreError::DuplicateCall(new.call));
            }
            if self.config.policy == Policy::Atlas {
                for &parent in new.parents {
                    if self.parent_path(new.program, parent).is_none() {
                        return Err(CoreError::UnknownParent { call: new.call, parent, program: new.program });
                    }
                }
            }
        }
        Ok(())
    }

    // ----- state changes (inputs already validated)

    /// ATLAS: the critical path through `parent` so far (its priority plus its service).
    fn parent_path(&self, program: ProgramId, parent: CallId) -> Option<f64> {
        match self.call(parent) {
            Some(call) if call.program == program => Some(call.priority + call.service),
            _ => self.programs.get(program)?.finished_paths.get(&parent).copied(),
        }
    }

    /// ATLAS, for a call naming its parents: the longest critical path through them.
    fn parents_priority(&self, new: &NewCall) -> f64 {
        new.parents.iter().filter_map(|&parent| self.parent_path(new.program, parent)).fold(0.0, f64::max)
    }

    /// The slot of a call the operation has validated as live.
    fn validated_slot(&self, id: CallId) -> Slot {
        self.calls.slot_of(id).expect("validated call")
    }

    fn insert_call(&mut self, new: &NewCall, now: f64) {
        let policy = self.config.policy;
        let from_parents = (policy == Policy::Atlas && !new.parents.is_empty()).then(|| self.parents_priority(new));
        // One lookup for the program's priority and order; adding the call changes neither.
        let (program_slot, program) = self.programs.add_live_call(new.program, now);
        let priority = from_parents.unwrap_or(match policy {
            Policy::Fcfs | Policy::Mlfq => 0.0,
            Policy::Plas => program.attained_service,
            Policy::Atlas => program.critical_path,
        });
        let program_order = if policy.is_program_aware() { program.arrival_order } else { 0 };
        // ATLAS keeps `priority` for the paths through the call; a hint changes only its queue.
        let hinted = self.hinted && policy.is_program_aware();
        let rank = if hinted { self.finished.work_left(program).unwrap_or(priority) } else { priority };
        let call = Call {
            program: new.program,
            program_slot,
            state: CallState::Waiting,
            queue: self.config.queue_for(rank),
            priority,
            service: 0.0,
            waiting_time: 0.0,
            order: self.take_order(),
            program_order,
            promoted: false,
            ticket: 0,
            waiting_since: now,
            quantum_used: 0.0,
            starvation_wait: 0.0,
            starvation_service: 0.0,
            seen_in_batch: 0,
            credited_at: 0.0,
        };
        let slot = self.calls.insert(new.call, call);
        self.enqueue_waiting(slot, now);
        self.stats.added += 1;
    }

    fn take_order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    /// Starts a waiting spell: a fresh ticket, a queue entry and, below the top queue, the moment
    /// the anti-starvation rule will promote the call.
    fn enqueue_waiting(&mut self, slot: Slot, now: f64) {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        let beta = self.config.starvation_ratio;
        let program_aware = self.config.policy.is_program_aware();
        let fair_wait = self.fair_wait();
        let call = &mut self.calls[slot];
        call.state = CallState::Waiting;
        call.ticket = ticket;
        call.waiting_since = now;
        let lane = WaitingQueue::lane(call.queue, call.promoted);
        self.waiting.push(lane, QueueEntry { order: call.position(), ticket, call: handle(slot) });
        self.waiting_per_queue[call.queue] += 1;
        if call.queue == 0 || beta.is_infinite() {
            return;
        }
        // (W_p + W_c + waited) / (T_p + T_c) >= beta * fair_wait  <=>  now >= at. The program's
        // terms and the fair wait are taken as the spell starts. A program whose client told its
        // calls left is ranked by the work it has left, so T_p is its told size (attained + left):
        // against what it has had alone, the rule would promote it early and undo the ranking.
        let (program_wait, program_service) = match program_aware.then(|| self.programs.at(call.program_slot)).flatten()
        {
            Some(program) => {
                let told_left = if self.hinted { self.finished.work_left(program).unwrap_or(0.0) } else { 0.0 };
                (program.starvation_wait, program.attained_service + told_left)
            }
            None => (0.0, 0.0),
        };
        let at = now + beta * fair_wait * (program_service + call.starvation_service)
            - (program_wait + call.starvation_wait);
        self.deadlines.push(Deadline { at, ticket, call: handle(slot) });
    }

    /// The wait per unit of service every call would get if the engine shared itself fairly:
    /// waiting calls per running call, at least 1. Starvation is waiting beta times longer than
    /// that, so under deep overload, where every call waits long, the rule still picks out the
    /// starved ones instead of promoting nearly all (which made PLAS FCFS by promotion order).
    fn fair_wait(&self) -> f64 {
        let running = self.running.len().max(1) as f64;
        (self.num_waiting() as f64 / running).max(1.0)
    }

    /// Ends the current waiting spell, counting it for the call and its program.
    fn end_waiting(&mut self, slot: Slot, now: f64) {
        let call = &mut self.calls[slot];
        let waited = now - call.waiting_since;
        call.waiting_time += waited;
        call.starvation_wait += waited;
        self.waiting_per_queue[call.queue] -= 1;
        if let Some(program) = self.programs.at_mut(call.program_slot) {
            program.waiting_time += waited;
            program.starvation_wait += waited;
        }
    }

    /// Starts a running spell: the batch service so far is none of the call's.
    fn add_running(&mut self, slot: Slot) {
        let call = &mut self.calls[slot];
        call.state = CallState::Running;
        call.credited_at = self.batch_service;
        self.running_per_queue[call.queue] += 1;
        self.running.push(self.calls.id(slot), slot);
        self.note_quantum_end(slot);
    }

    /// Ends a running spell, the call's amounts brought up to date.
    fn remove_running(&mut self, slot: Slot) {
        let call = &mut self.calls[slot];
        call.catch_up(self.batch_service);
        self.running_per_queue[call.queue] -= 1;
        self.running.remove(slot);
        if self.running.len() == 0 {
            // Nothing owes the counter anything: start it afresh, so it never grows past what
            // one busy spell of the engine adds.
            self.batch_service = 0.0;
            self.earliest_quantum_end = f64::INFINITY;
        }
    }

    /// Every running call got `seconds`: O(1) until some call's quantum may have run out.
    fn credit_running(&mut self, seconds: f64) {
        self.batch_service += seconds;
        self.demote_reached(|_, _| false);
    }

    /// Demotes, in batch order (the order crediting each call in turn demoted them in, which
    /// orders them in their new queue), the running calls whose quanta `batch_service` has reached,
    /// and finds the earliest quantum end again; calls that `sits_out` names are passed over (the
    /// caller credits them next).
    fn demote_reached(&mut self, sits_out: impl Fn(&CallTable, Slot) -> bool) {
        if self.batch_service < self.earliest_quantum_end {
            return;
        }
        let running = std::mem::take(&mut self.running);
        self.earliest_quantum_end = f64::INFINITY;
        for &slot in running.slots() {
            if sits_out(&self.calls, slot) {
                continue;
            }
            if self.quantum_ends[slot] <= self.batch_service {
                self.calls[slot].catch_up(self.batch_service);
                self.demote(slot);
                self.note_quantum_end(slot);
            } else {
                self.earliest_quantum_end = self.earliest_quantum_end.min(self.quantum_ends[slot]);
            }
        }
        self.running = running;
    }

    /// Credits `seconds` to each call the last `check_listed` validated.
    fn credit_listed(&mut self, seconds: f64) {
        let listed = std::mem::take(&mut self.listed);
        for &slot in &listed {
            self.credit_one(slot, seconds);
        }
        self.listed = listed;
    }

    /// Credits `amounts[i]` to the i-th call the last `check_listed` validated.
    fn credit_listed_each(&mut self, amounts: &[f64]) {
        let listed = std::mem::take(&mut self.listed);
        for (&slot, &amount) in listed.iter().zip(amounts) {
            self.credit_one(slot, amount);
        }
        self.listed = listed;
    }

    /// Credits one running call alone: its share of the batch first, then `seconds`.
    fn credit_one(&mut self, slot: Slot, seconds: f64) {
        let last_queue = self.config.num_queues() - 1;
        let call = &mut self.calls[slot];
        call.catch_up(self.batch_service);
        call.service += seconds;
        call.starvation_service += seconds;
        call.quantum_used += seconds;
        if call.queue < last_queue && call.quantum_used >= self.config.quanta[call.queue] {
            self.demote(slot);
        }
        self.note_quantum_end(slot);
    }

    /// A running call that used up its quantum goes to the tail of the next queue, with a fresh one.
    fn demote(&mut self, slot: Slot) {
        let call = &mut self.calls[slot];
        self.running_per_queue[call.queue] -= 1;
        self.running_per_queue[call.queue + 1] += 1;
        call.queue += 1;
        call.quantum_used = 0.0;
        self.next_order += 1;
        call.order = self.next_order;
        self.stats.demotions += 1;
    }

    /// Puts down where a running call's quantum ends, as its amounts stand. `earliest_quantum_end`
    /// may then be too early (an end moved later, or its call left), which costs one needless look.
    fn note_quantum_end(&mut self, slot: Slot) {
        let call = &self.calls[slot];
        let end = if call.queue + 1 < self.config.num_queues() {
            call.quantum_end(self.config.quanta[call.queue])
        } else {
            f64::INFINITY
        };
        if slot >= self.quantum_ends.len() {
            self.quantum_ends.resize(slot + 1, f64::INFINITY);
        }
        self.quantum_ends[slot] = end;
        self.earliest_quantum_end = self.earliest_quantum_end.min(end);
    }

    fn finish(&mut self, slot: Slot, now: f64) {
        match self.calls[slot].state {
            CallState::Running => self.remove_running(slot),
            CallState::Waiting => self.end_waiting(slot, now),
        }
        let id = self.calls.id(slot);
        let call = self.calls.remove(slot);
        let path = call.priority + call.service;
        let keep_path = self.config.policy == Policy::Atlas;
        self.programs.finish_call(call.program_slot, id, call.service, path, keep_path, now);
        self.finished.service += call.service;
        self.finished.count += 1;
        self.stats.finished += 1;
    }

    fn peek_waiting(&mut self, first_lane: usize) -> Option<QueueEntry> {
        let calls = &self.calls;
        self.waiting.peek_from(first_lane, |e| is_current(calls, e.call, e.ticket))
    }

    fn pop_waiting(&mut self, first_lane: usize) -> Option<QueueEntry> {
        let calls = &self.calls;
        self.waiting.pop_from(first_lane, |e| is_current(calls, e.call, e.ticket))
    }

    /// Starts a waiting call whose queue entry the caller has just popped.
    fn admit(&mut self, slot: Slot, now: f64) {
        self.end_waiting(slot, now);
        self.calls[slot].promoted = false;
        self.add_running(slot);
        self.decision.admit.push(self.calls.id(slot));
        self.stats.admitted += 1;
    }

    fn preempt(&mut self, slot: Slot, now: f64) {
        self.remove_running(slot);
        self.enqueue_waiting(slot, now);
        self.decision.preempt.push(self.calls.id(slot));
        self.stats.preemptions += 1;
    }

    /// The running call that yields first: least urgent queue, latest in it.
    fn least_urgent_running(&self) -> Option<Slot> {
        self.running.slots().iter().copied().max_by_key(|&slot| self.urgency(slot))
    }

    /// `least_urgent_running` among the calls this decision may swap out.
    fn least_urgent_unprotected_running(&self) -> Option<Slot> {
        let protected = self.protected_stamp;
        self.running
            .slots()
            .iter()
            .copied()
            .filter(|&slot| self.calls[slot].seen_in_batch != protected)
            .max_by_key(|&slot| self.urgency(slot))
    }

    /// Smaller is more urgent: the queue, then the place in it.
    fn urgency(&self, slot: Slot) -> (usize, Position) {
        let call = &self.calls[slot];
        (call.queue, call.position())
    }

    fn least_urgent_running_queue(&self) -> Option<usize> {
        self.running_per_queue.iter().rposition(|&n| n > 0)
    }

    fn promote_starved(&mut self, now: f64) {
        while let Some(deadline) = self.deadlines.pop_due(now) {
            let slot = slot_of_handle(deadline.call);
            let starved = self
                .calls
                .at(slot)
                .is_some_and(|c| c.state == CallState::Waiting && c.ticket == deadline.ticket && c.queue > 0);
            if !starved {
                continue;
            }
            self.end_waiting(slot, now);
            self.next_order += 1;
            let call = &mut self.calls[slot];
            call.queue = 0;
            call.order = self.next_order;
            call.promoted = true;
            call.quantum_used = 0.0;
            call.starvation_wait = 0.0;
            call.starvation_service = 0.0;
            // The program's waiting resets too. Left to grow, once a heavy program starved every
            // later call of it would be due at once, and its promoted calls, demoted and preempted,
            // promoted again: under deep overload that put starved programs ahead of every new one
            // (2,000 promotions for 160 programs; bench/results/engine/defaults-mixed-deep-before-fix.*).
            let program = call.program_slot;
            if let Some(program) = self.programs.at_mut(program) {
                program.starvation_wait = 0.0;
            }
            self.enqueue_waiting(slot, now);
            self.decision.promoted.push(self.calls.id(slot));
            self.stats.promotions += 1;
        }
    }

    /// Decides with the calls the last `check_protected` stamped protected.
    fn decide(&mut self, now: f64, capacity: usize) {
        self.decision.admit.clear();
        self.decision.preempt.clear();
        self.decision.promoted.clear();
        self.promote_starved(now);
        self.stats.dropped_programs += self.programs.drop_stale(now, self.config.stale_after) as u64;

        while self.running.len() > capacity {
            let worst = self.least_urgent_running().expect("more running than capacity");
            self.preempt(worst, now);
        }
        while self.running.len() < capacity {
            let Some(best) = self.pop_waiting(WaitingQueue::HEAD_OF_LINE) else { break };
            self.admit(slot_of_handle(best.call), now);
        }
        // Full batch: swap the least urgent running call for a waiting one in a strictly more
        // urgent queue. Equal queues never swap, so calls do not ping-pong. Promoted calls wait
        // for the next free slot instead: were one to preempt, its victim would starve and be
        // promoted in turn, a preemption chain that on a real engine recomputes without end.
        // Protected calls are passed over; the per-queue counts rule out most swaps without a scan.
        let top_queue = WaitingQueue::lane(0, false);
        while let (Some(best), Some(worst_queue)) = (self.peek_waiting(top_queue), self.least_urgent_running_queue()) {
            let best_slot = slot_of_handle(best.call);
            let best_queue = self.calls[best_slot].queue;
            if best_queue >= worst_queue {
                break;
            }
            let Some(victim) = self.least_urgent_unprotected_running() else { break };
            if best_queue >= self.calls[victim].queue {
                break;
            }
            self.preempt(victim, now);
            // Still first: the preempted call went to a less urgent queue.
            self.pop_waiting(top_queue);
            self.admit(best_slot, now);
        }

        let live_waiting = self.num_waiting();
        let calls = &self.calls;
        self.waiting.compact(live_waiting, |e| is_current(calls, e.call, e.ticket));
        self.deadlines.compact(live_waiting, |d| is_current(calls, d.call, d.ticket));
    }
}

/// Per-call amounts: one for each call, each finite and >= 0.
fn check_amounts(calls: &[CallId], amounts: &[f64]) -> CoreResult<()> {
    if calls.len() != amounts.len() {
        return Err(CoreError::InvalidArgument(format!(
            "call ids and amounts must be parallel lists: got {} call ids, {} amounts",
            calls.len(),
            amounts.len()
        )));
    }
    amounts.iter().try_for_each(|&amount| check_seconds(amount))
}

fn check_seconds(seconds: f64) -> CoreResult<()> {
    if seconds.is_finite() && seconds >= 0.0 {
        Ok(())
    } else {
        Err(CoreError::InvalidArgument(format!("service seconds must be finite and >= 0, got {seconds}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crediting_a_call_and_checking_its_entries_read_only_its_first_cache_line() {
        assert_eq!(std::mem::align_of::<Call>(), 64);
        assert_eq!(std::mem::offset_of!(Call, program), 64, "the first line is full");
        assert_eq!(std::mem::size_of::<Option<Call>>(), 128, "a slot is two lines");
    }
}
