//! The engine side of the vLLM plug-in: vLLM's request ids and session ids mapped onto the
//! scheduler's call and program ids, the lineage children name their parents by, and what
//! happened since the last step. The plug-in crosses into Rust once per arrival and a few times
//! per step (the step's departures in one go); every map between the three id spaces lives here.
//!
//! The adapter does not own the scheduler: each operation is given it, so the Python side can
//! keep one `Scheduler` object for snapshots and tests.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::error::{CoreError, CoreResult};
use crate::scheduler::{CallState, Decision, NewCall, Scheduler};
use crate::{CallId, ProgramId};

/// Where the adapter numbers programs: client ids lie below `session_programs`, programs named
/// by a vLLM session id from `session_programs` up, and calls that name neither are programs of
/// their own from `solo_programs` up. The plug-in passes the contract's ranges.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
    pub session_programs: ProgramId,
    pub solo_programs: ProgramId,
    /// Sessions remembered (most recently used); an older one gets a new program if it returns.
    pub session_memory: usize,
    /// Request ids nameable as parents (most recent arrivals), live or finished.
    pub parent_memory: usize,
    /// Prompt tokens whose prefill counts as one decode step (`autellix.work_units`).
    pub prefill_tokens_per_unit: f64,
}

impl AdapterConfig {
    /// The work of an engine step that ran `calls` calls on `tokens` tokens: one decode token a
    /// call, the rest prefill (`autellix.work_units.step_units`). The engine's clock.
    pub fn step_units(&self, tokens: u64, calls: u64) -> f64 {
        1.0 + tokens.saturating_sub(calls) as f64 / self.prefill_tokens_per_unit
    }

    /// The mean of the step's calls' own work (`autellix.work_units.mean_call_units`): how far
    /// the scheduler's clock moves in the step under own-work crediting.
    pub fn mean_call_units(&self, tokens: u64, calls: u64) -> f64 {
        1.0 + tokens.saturating_sub(calls) as f64 / (self.prefill_tokens_per_unit * calls as f64)
    }

    fn validate(&self) -> CoreResult<()> {
        if self.session_programs == 0 || self.solo_programs <= self.session_programs {
            return Err(CoreError::InvalidConfig(format!(
                "program id ranges must be client < session < solo, got session from {} and solo from {}",
                self.session_programs, self.solo_programs
            )));
        }
        if self.session_memory == 0 || self.parent_memory == 0 {
            return Err(CoreError::InvalidConfig("session and parent memories must be >= 1".into()));
        }
        if !(self.prefill_tokens_per_unit.is_finite() && self.prefill_tokens_per_unit > 0.0) {
            return Err(CoreError::InvalidConfig(format!(
                "prefill tokens per unit must be finite and > 0, got {}",
                self.prefill_tokens_per_unit
            )));
        }
        Ok(())
    }
}

/// A new request, as the adapter numbered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub call: CallId,
    pub program: ProgramId,
    /// The request named a session the adapter had not seen (or had forgotten).
    pub new_session: bool,
}

/// The engine's last step, to credit at the next one.
#[derive(Debug, Clone, Default)]
enum Ran {
    #[default]
    Nothing,
    /// Every call the scheduler counts as running got this much.
    All(f64),
    /// These calls got this much each.
    Calls(Vec<CallId>, f64),
    /// Each call got its own amount.
    Each(Vec<CallId>, Vec<f64>),
    /// Every running call got this much, except these, which got their own amounts.
    AllExcept(f64, Vec<CallId>, Vec<f64>),
}

/// What `decide` tells the engine, in vLLM's request ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineDecision {
    /// Waiting requests to start now, most urgent first.
    pub admit: Vec<String>,
    /// Running requests to stop now, least urgent first.
    pub preempt: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdapterStats {
    /// Steps whose arrivals the scheduler rejected as a batch, then took one by one.
    pub rejected_batches: u64,
}

/// Keys by recency: `touch` makes a key the newest; past `capacity` the oldest go. Lazy: the
/// order queue may hold out-of-date entries, skipped by their stamp and compacted when they pile up.
///
/// A key is kept as its 64-bit SipHash under a random per-process key, not as a string: a touch
/// allocates nothing and an entry is a third the size, which matters at tens of thousands of
/// remembered ids touched on every arrival. Two keys are confused only if their hashes collide
/// (about 1 in 10^10 for 65,536 remembered keys), which a client cannot aim for without the key.
#[derive(Debug)]
struct Recent<V> {
    capacity: usize,
    hasher: RandomState,
    entries: FxHashMap<u64, (V, u64)>,
    order: VecDeque<(u64, u64)>,
    stamp: u64,
}

impl<V: Copy> Recent<V> {
    fn new(capacity: usize) -> Self {
        Recent { capacity, hasher: RandomState::new(), entries: FxHashMap::default(), order: VecDeque::new(), stamp: 0 }
    }

    fn get(&self, key: &str) -> Option<V> {
        self.entries.get(&self.hasher.hash_one(key)).map(|&(value, _)| value)
    }

    fn touch(&mut self, key: &str, value: V) {
        let key = self.hasher.hash_one(key);
        self.stamp += 1;
        self.entries.insert(key, (value, self.stamp));
        self.order.push_back((key, self.stamp));
        while self.entries.len() > self.capacity {
            let (oldest, stamp) = self.order.pop_front().expect("every entry is in the order queue");
            if self.entries.get(&oldest).is_some_and(|&(_, s)| s == stamp) {
                self.entries.remove(&oldest);
            }
        }
        if self.order.len() > 2 * self.capacity + 1024 {
            let entries = &self.entries;
            self.order.retain(|(key, stamp)| entries.get(key).is_some_and(|&(_, s)| s == *stamp));
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// `H`: what the engine names a live call by besides its request id (the Python module keeps the
/// request object), stored with it so an arrival and a free each touch one map entry the fewer.
#[derive(Debug)]
pub struct EngineAdapter<H = ()> {
    config: AdapterConfig,
    next_call: CallId,
    next_session_program: ProgramId,
    next_solo_program: ProgramId,
    program_of_session: Recent<ProgramId>,
    /// Request id (vLLM's, and the one its client gave) -> (call, program), also after the call
    /// finished: parents are usually finished by the time their children arrive.
    lineage: Recent<(CallId, ProgramId)>,
    /// A live request's id both ways, in one allocation, with the engine's handle on it.
    call_of: FxHashMap<Arc<str>, CallId>,
    request_of: FxHashMap<CallId, (Arc<str>, H)>,
    /// Live requests of programs ended in the scheduler: never reported to it again.
    forgotten: FxHashSet<CallId>,
    // Since the last step:
    arrivals: Vec<(CallId, ProgramId, Vec<CallId>)>,
    /// What clients said of their programs' calls left, with the arrivals (`tell_calls_left`).
    calls_left: Vec<(ProgramId, u32)>,
    finished: Vec<CallId>,
    ran: Ran,
    stats: AdapterStats,
}

impl EngineAdapter {
    pub fn new(config: AdapterConfig) -> CoreResult<Self> {
        Self::with_handles(config)
    }

    /// `add_request_with` for an adapter without handles.
    pub fn add_request(
        &mut self,
        request_id: &str,
        program: Option<ProgramId>,
        session: Option<&str>,
        parents: &[&str],
    ) -> CoreResult<Arrival> {
        self.add_request_with(request_id, program, session, parents, ())
    }
}

impl<H> EngineAdapter<H> {
    /// An adapter that keeps a handle with each live call (`add_request_with`, `handle`).
    pub fn with_handles(config: AdapterConfig) -> CoreResult<Self> {
        config.validate()?;
        Ok(EngineAdapter {
            next_call: 0,
            next_session_program: config.session_programs,
            next_solo_program: config.solo_programs,
            program_of_session: Recent::new(config.session_memory),
            lineage: Recent::new(config.parent_memory),
            call_of: FxHashMap::default(),
            request_of: FxHashMap::default(),
            forgotten: FxHashSet::default(),
            arrivals: Vec::new(),
            calls_left: Vec::new(),
            finished: Vec::new(),
            ran: Ran::Nothing,
            stats: AdapterStats::default(),
            config,
        })
    }

    pub fn stats(&self) -> &AdapterStats {
        &self.stats
    }

    pub fn config(&self) -> &AdapterConfig {
        &self.config
    }

    /// Live requests (arrived, not yet freed).
    pub fn num_requests(&self) -> usize {
        self.call_of.len()
    }

    pub fn num_sessions(&self) -> usize {
        self.program_of_session.len()
    }

    /// The scheduler's call id for a request id (vLLM's or its client's), while remembered.
    pub fn call_id(&self, request_id: &str) -> Option<CallId> {
        self.lineage.get(request_id).map(|(call, _)| call)
    }

    /// Whether a request of this id arrived and was not freed since.
    pub fn is_live(&self, request_id: &str) -> bool {
        self.call_of.contains_key(request_id)
    }

    /// The request id of a live call.
    pub fn request_id(&self, call: CallId) -> Option<&str> {
        self.request_of.get(&call).map(|(id, _)| &**id)
    }

    /// The handle a live call was added with.
    pub fn handle(&self, call: CallId) -> Option<&H> {
        self.request_of.get(&call).map(|(_, handle)| handle)
    }

    /// Calls finished since the last step (what the preemption guard counts).
    pub fn num_finished_pending(&self) -> usize {
        self.finished.len()
    }

    /// A new request. `program`: a client's program id, used if in the client range; else
    /// `session` names the program; else the call is a program of its own. `parents`: request
    /// ids of earlier calls of the same program (others are ignored), as vLLM was given them or as
    /// the client gave them (see `external_request_id`). `handle` is kept until the request is freed.
    pub fn add_request_with(
        &mut self,
        request_id: &str,
        program: Option<ProgramId>,
        session: Option<&str>,
        parents: &[&str],
        handle: H,
    ) -> CoreResult<Arrival> {
        if self.call_of.contains_key(request_id) {
            return Err(CoreError::InvalidArgument(format!("request {request_id:?} is already live")));
        }
        let (program, new_session) = match (program, session) {
            (Some(program), _) if program < self.config.session_programs => (program, false),
            (_, Some(session)) if !session.is_empty() => self.session_program(session),
            _ => (take(&mut self.next_solo_program), false),
        };
        self.next_call += 1;
        let call = self.next_call;
        let parents: Vec<CallId> = parents
            .iter()
            .filter_map(|parent| self.lineage.get(parent))
            .filter(|&(_, of)| of == program)
            .map(|(parent, _)| parent)
            .collect();
        self.lineage.touch(request_id, (call, program));
        let external_id = external_request_id(request_id);
        if external_id != request_id {
            self.lineage.touch(external_id, (call, program));
        }
        let request_id: Arc<str> = request_id.into();
        self.call_of.insert(request_id.clone(), call);
        self.request_of.insert(call, (request_id, handle));
        self.arrivals.push((call, program, parents));
        Ok(Arrival { call, program, new_session })
    }

    /// What the client of a request just added says of its program's calls left, counting that
    /// request (`Scheduler::set_calls_left`), told the scheduler with the arrivals. Of several
    /// arrivals of one program in a step the first one's count is told: it counts the others.
    pub fn tell_calls_left(&mut self, program: ProgramId, calls_left: u32) {
        if !self.calls_left.iter().any(|&(told, _)| told == program) {
            self.calls_left.push((program, calls_left));
        }
    }

    fn session_program(&mut self, session: &str) -> (ProgramId, bool) {
        let known = self.program_of_session.get(session);
        let program = known.unwrap_or_else(|| take(&mut self.next_session_program));
        self.program_of_session.touch(session, program);
        (program, known.is_none())
    }

    /// The engine freed a request (finished or aborted): its call, or None if it was not one of
    /// ours (or was freed already).
    pub fn free_request(&mut self, request_id: &str) -> Option<CallId> {
        let call = self.call_of.remove(request_id)?;
        self.request_of.remove(&call);
        if let Some(i) = self.arrivals.iter().position(|&(c, _, _)| c == call) {
            self.arrivals.remove(i); // gone before the scheduler ever saw it
        } else if !self.forgotten.remove(&call) {
            self.finished.push(call);
        }
        Some(call)
    }

    /// Every running call got `work` units in the engine's last step.
    pub fn ran_all(&mut self, work: f64) {
        self.ran = Ran::All(work);
    }

    /// These requests got `work` units each in the last step (unknown ones are ignored).
    pub fn ran_requests(&mut self, request_ids: &[&str], work: f64) {
        self.ran = Ran::Calls(request_ids.iter().filter_map(|r| self.call_of.get(*r).copied()).collect(), work);
    }

    /// These requests ran the given numbers of tokens in the last step: each is credited its own
    /// work, one unit for its decode token and the rest as prefill (`autellix.work_units.call_units`).
    pub fn ran_tokens(&mut self, scheduled: impl IntoIterator<Item = (impl AsRef<str>, u64)>) {
        let (calls, amounts) = self.own_work(scheduled);
        self.ran = Ran::Each(calls, amounts);
    }

    /// Every running call ran in the last step, one token each (its decode token) except
    /// `prefilled`, the requests that ran more tokens: credited as in `ran_tokens`, without naming
    /// the whole batch.
    pub fn ran_all_tokens(&mut self, prefilled: impl IntoIterator<Item = (impl AsRef<str>, u64)>) {
        let (calls, amounts) = self.own_work(prefilled);
        self.ran = Ran::AllExcept(1.0, calls, amounts);
    }

    /// Known requests' calls and their own work for the tokens they ran.
    fn own_work(&self, scheduled: impl IntoIterator<Item = (impl AsRef<str>, u64)>) -> (Vec<CallId>, Vec<f64>) {
        let per_unit = self.config.prefill_tokens_per_unit;
        scheduled
            .into_iter()
            .filter_map(|(request, tokens)| {
                let call = *self.call_of.get(request.as_ref())?;
                Some((call, 1.0 + tokens.saturating_sub(1) as f64 / per_unit))
            })
            .unzip()
    }

    /// Tells the scheduler what happened since the last step: service, then finishes, then what
    /// clients said of their programs' calls left, then arrivals. Returns what it refused (logged
    /// by the caller; the engine goes on stepping): a batch of arrivals it rejects is retried one
    /// by one, a call whose parents it rejects arrives without them.
    pub fn apply(&mut self, scheduler: &mut Scheduler, now: f64) -> Vec<String> {
        let mut refused = Vec::new();
        // With async scheduling a call can have been preempted or requeued since it ran; only
        // calls the scheduler still counts as running can be credited.
        match std::mem::take(&mut self.ran) {
            Ran::Nothing => {}
            Ran::All(work) => note(&mut refused, scheduler.record_service_running(work, now)),
            Ran::Calls(calls, work) => {
                let ran: Vec<CallId> = calls.into_iter().filter(|&c| is_running(scheduler, c)).collect();
                note(&mut refused, scheduler.record_service(&ran, work, now));
            }
            Ran::Each(calls, amounts) => {
                let (ran, amounts) = running_only(scheduler, calls, amounts);
                note(&mut refused, scheduler.record_service_each(&ran, &amounts, now));
            }
            Ran::AllExcept(work, calls, amounts) => {
                let (ran, amounts) = running_only(scheduler, calls, amounts);
                note(&mut refused, scheduler.record_service_running_except(work, &ran, &amounts, now));
            }
        }
        let finished = std::mem::take(&mut self.finished);
        if let Err(error) = scheduler.finish_calls(&finished, now) {
            refused.push(error.to_string());
            for call in finished {
                note(&mut refused, scheduler.finish_calls(&[call], now));
            }
        }
        for (program, calls_left) in self.calls_left.drain(..) {
            note(&mut refused, scheduler.set_calls_left(program, calls_left, now));
        }
        let arrivals = std::mem::take(&mut self.arrivals);
        let batch: Vec<NewCall> = arrivals
            .iter()
            .map(|(call, program, parents)| NewCall { call: *call, program: *program, parents })
            .collect();
        if let Err(error) = scheduler.add_calls(&batch, now) {
            refused.push(error.to_string());
            self.stats.rejected_batches += 1;
            for new in &batch {
                if let Err(error) = scheduler.add_calls(std::slice::from_ref(new), now) {
                    refused.push(error.to_string());
                    let orphan = NewCall { parents: &[], ..*new };
                    note(&mut refused, scheduler.add_calls(&[orphan], now));
                }
            }
        }
        refused
    }

    /// `apply`, then `decide` with nothing protected: the usual step, in one call. Returns the
    /// decision and what `apply` refused.
    pub fn step(
        &mut self,
        scheduler: &mut Scheduler,
        now: f64,
        capacity: usize,
    ) -> CoreResult<(EngineDecision, Vec<String>)> {
        let (decision, refused) = self.step_calls(scheduler, now, capacity)?;
        Ok((self.in_request_ids(decision), refused))
    }

    /// `step`, with the decision in call ids (the scheduler's own).
    pub fn step_calls<'s>(
        &mut self,
        scheduler: &'s mut Scheduler,
        now: f64,
        capacity: usize,
    ) -> CoreResult<(&'s Decision, Vec<String>)> {
        let refused = self.apply(scheduler, now);
        Ok((self.decide_calls(scheduler, now, capacity, &[])?, refused))
    }

    /// The scheduler's decision, in request ids. `protected`: running requests not to preempt
    /// for priority (others are ignored). Call after `apply`.
    pub fn decide(
        &mut self,
        scheduler: &mut Scheduler,
        now: f64,
        capacity: usize,
        protected: &[&str],
    ) -> CoreResult<EngineDecision> {
        let decision = self.decide_calls(scheduler, now, capacity, protected)?;
        Ok(self.in_request_ids(decision))
    }

    /// `decide`, with the decision in call ids (the scheduler's own).
    pub fn decide_calls<'s>(
        &self,
        scheduler: &'s mut Scheduler,
        now: f64,
        capacity: usize,
        protected: &[&str],
    ) -> CoreResult<&'s Decision> {
        let protected: Vec<CallId> = protected
            .iter()
            .filter_map(|r| self.call_of.get(*r).copied())
            .filter(|&c| is_running(scheduler, c))
            .collect();
        scheduler.schedule_protecting(now, capacity, &protected)
    }

    fn in_request_ids(&self, decision: &Decision) -> EngineDecision {
        let requests =
            |calls: &[CallId]| calls.iter().filter_map(|c| Some(self.request_of.get(c)?.0.to_string())).collect();
        EngineDecision { admit: requests(&decision.admit), preempt: requests(&decision.preempt) }
    }

    /// Calls the scheduler counts as running, less those freed since the last `apply`.
    pub fn num_running(&self, scheduler: &Scheduler) -> usize {
        let finishing = self.finished.iter().filter(|&&c| is_running(scheduler, c)).count();
        scheduler.num_running() - finishing
    }

    /// Whether `engine_running` requests running in the engine are exactly the calls the
    /// scheduler counts as running, judged by count alone: true when the engine runs only calls
    /// the scheduler admitted (no KV connector admitting on its own) and no request of an ended
    /// program still runs. Then there is nothing to requeue and every running call is in a step.
    pub fn counts_match(&self, scheduler: &Scheduler, engine_running: usize) -> bool {
        self.forgotten.is_empty() && engine_running == self.num_running(scheduler)
    }

    /// Hands back to the waiting queues every call the scheduler counts as running whose request
    /// is live but not among `running_requests` (what the engine runs now), keeping its place.
    /// Returns how many went back.
    pub fn requeue_all_but(
        &mut self,
        scheduler: &mut Scheduler,
        running_requests: &[&str],
        now: f64,
    ) -> CoreResult<usize> {
        let runs: FxHashSet<CallId> = running_requests.iter().filter_map(|r| self.call_of.get(*r).copied()).collect();
        // A call whose request is gone has finished: the scheduler hears so at the next step.
        let mut back: Vec<CallId> = scheduler
            .running()
            .iter()
            .copied()
            .filter(|c| !runs.contains(c) && self.request_of.contains_key(c))
            .collect();
        back.sort_unstable();
        scheduler.requeue(&back, now)?;
        Ok(back.len())
    }

    /// Ends a program in the scheduler; false if the scheduler does not know it. Its calls are
    /// never reported to the scheduler again.
    pub fn end_program(&mut self, scheduler: &mut Scheduler, program: ProgramId) -> bool {
        let Ok(dropped) = scheduler.end_program(program) else { return false };
        let dropped: FxHashSet<CallId> = dropped.into_iter().collect();
        self.finished.retain(|c| !dropped.contains(c));
        self.forgotten.extend(dropped.into_iter().filter(|c| self.request_of.contains_key(c)));
        true
    }
}

/// The id a client gave a request: vLLM appends "-" and 8 random hex digits to every request id
/// it is given (`InputProcessor.assign_request_id`), and clients only know the id they gave.
pub fn external_request_id(request_id: &str) -> &str {
    let bytes = request_id.as_bytes();
    let Some(split) = bytes.len().checked_sub(9) else { return request_id };
    let suffix = &bytes[split + 1..];
    if bytes[split] == b'-' && suffix.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
        &request_id[..split]
    } else {
        request_id
    }
}

fn take(next: &mut ProgramId) -> ProgramId {
    let id = *next;
    *next += 1;
    id
}

/// The calls (and their amounts) the scheduler still counts as running.
fn running_only(scheduler: &Scheduler, calls: Vec<CallId>, amounts: Vec<f64>) -> (Vec<CallId>, Vec<f64>) {
    calls.into_iter().zip(amounts).filter(|&(c, _)| is_running(scheduler, c)).unzip()
}

fn is_running(scheduler: &Scheduler, call: CallId) -> bool {
    scheduler.call_state(call) == Some(CallState::Running)
}

fn note(refused: &mut Vec<String>, result: CoreResult<()>) {
    if let Err(error) = result {
        refused.push(error.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_external_id_drops_only_vllms_random_suffix() {
        assert_eq!(external_request_id("chat-1-0123abcd"), "chat-1");
        assert_eq!(external_request_id("-0123abcd"), "");
        for kept in ["chat-1", "chat-0123ABCD", "chat_0123abcd", "0123abcd", "x-0123abcg", "é-0123abcd9"] {
            assert_eq!(external_request_id(kept), kept);
        }
    }

    #[test]
    fn recent_forgets_the_least_recently_touched() {
        let mut recent = Recent::new(2);
        recent.touch("a", 1);
        recent.touch("b", 2);
        recent.touch("a", 1);
        recent.touch("c", 3);
        assert_eq!((recent.get("a"), recent.get("b"), recent.get("c")), (Some(1), None, Some(3)));
        for i in 0..5000 {
            recent.touch("a", i);
        }
        assert!(recent.order.len() <= 2 * 2 + 1024 + 1, "stale order entries are compacted");
    }
}
