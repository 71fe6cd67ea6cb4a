//! Property tests: long random operation sequences keep the scheduler's books straight.

use std::collections::{BTreeMap, BTreeSet};

use autellix_sched::{CallId, CallState, NewCall, Policy, ProgramId, Scheduler, SchedulerConfig, StepInput};
use proptest::prelude::*;

/// `protect_mask` picks, bit by bit, the running calls a decision may not swap out. `Step`: every
/// running call ran `seconds`, one live call may finish, one call arrives, then a decision.
/// `BadProtect` protects a call that will not be running (waiting, finishing in the step, unknown).
#[derive(Debug, Clone)]
enum Op {
    Add {
        program: ProgramId,
        parent_picks: Vec<usize>,
    },
    Schedule {
        capacity: usize,
        protect_mask: u32,
    },
    Step {
        capacity: usize,
        seconds: f64,
        protect_mask: u32,
        finish_pick: Option<usize>,
        program: ProgramId,
    },
    BadProtect {
        pick: usize,
        via_step: bool,
    },
    Serve {
        seconds: f64,
        mask: u32,
    },
    /// Every running call ran `seconds`, but the masked ones `seconds + extra` each.
    ServeAllExcept {
        seconds: f64,
        mask: u32,
        extra: f64,
    },
    Finish {
        pick: usize,
    },
    Requeue {
        pick: usize,
    },
    EndProgram {
        program: ProgramId,
    },
    /// The program's client says it will make `calls_left` more calls.
    Hint {
        program: ProgramId,
        calls_left: u32,
    },
    Advance {
        seconds: f64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..6u64, prop::collection::vec(any::<usize>(), 0..3))
            .prop_map(|(program, parent_picks)| Op::Add { program, parent_picks }),
        4 => (0..6usize, any::<u32>()).prop_map(|(capacity, protect_mask)| Op::Schedule { capacity, protect_mask }),
        3 => (0..6usize, 0.0..2.0f64, any::<u32>(), prop::option::of(any::<usize>()), 0..6u64).prop_map(
            |(capacity, seconds, protect_mask, finish_pick, program)| Op::Step {
                capacity, seconds, protect_mask, finish_pick, program,
            }
        ),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, via_step)| Op::BadProtect { pick, via_step }),
        4 => (0.0..3.0f64, any::<u32>()).prop_map(|(seconds, mask)| Op::Serve { seconds, mask }),
        2 => (0.0..3.0f64, any::<u32>(), 0.0..3.0f64)
            .prop_map(|(seconds, mask, extra)| Op::ServeAllExcept { seconds, mask, extra }),
        2 => any::<usize>().prop_map(|pick| Op::Finish { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Requeue { pick }),
        1 => (0..6u64).prop_map(|program| Op::EndProgram { program }),
        1 => (0..6u64, 1..5u32).prop_map(|(program, calls_left)| Op::Hint { program, calls_left }),
        2 => (0.0..4.0f64).prop_map(|seconds| Op::Advance { seconds }),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![Just(Policy::Fcfs), Just(Policy::Mlfq), Just(Policy::Plas), Just(Policy::Atlas)]
}

/// What the test knows independently of the scheduler: which calls are live, of which program,
/// how much service each was credited and, by the quanta, which queue that puts it in (credited
/// call by call, as the scheduler must appear to however it books the batch).
#[derive(Default)]
struct Model {
    live: BTreeMap<CallId, ProgramId>,
    service: BTreeMap<CallId, f64>,
    /// (queue, service in it) of each live call.
    quantum: BTreeMap<CallId, (usize, f64)>,
    next_call: CallId,
    /// Calls still to come by each hinted program's client.
    hints: BTreeMap<ProgramId, u32>,
}

impl Model {
    fn arrive(&mut self, call: CallId, program: ProgramId, queue: usize) {
        self.live.insert(call, program);
        self.quantum.insert(call, (queue, 0.0));
    }

    fn credit(&mut self, config: &SchedulerConfig, calls: &[CallId], seconds: f64) {
        for call in calls {
            *self.service.entry(*call).or_default() += seconds;
            let (queue, used) = self.quantum.get_mut(call).expect("credited calls are live");
            *used += seconds;
            if *queue + 1 < config.num_queues() && *used >= config.quanta[*queue] {
                *queue += 1;
                *used = 0.0;
            }
        }
    }

    fn promote(&mut self, calls: &[CallId]) {
        for call in calls {
            self.quantum.insert(*call, (0, 0.0));
        }
    }

    /// A call of `program` arrives: the count its client gave before it (it counts this call),
    /// then one fewer. A program the scheduler no longer has (ended, gone stale) lost its count.
    fn arriving(&mut self, s: &Scheduler, program: ProgramId) -> Option<u32> {
        if s.program(program).is_none() {
            self.hints.remove(&program);
        }
        let to_come = self.hints.get_mut(&program)?;
        let before = *to_come;
        *to_come = before.saturating_sub(1);
        Some(before)
    }

    fn forget(&mut self, call: CallId) {
        self.live.remove(&call);
        self.service.remove(&call);
        self.quantum.remove(&call);
    }
}

fn pick<T: Copy>(items: &[T], index: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[index % items.len()])
}

/// The calls whose bit is set in `mask`, cycling through its 32 bits.
fn masked(calls: &[CallId], mask: u32) -> Vec<CallId> {
    calls.iter().enumerate().filter(|(i, _)| mask & (1 << (i % 32)) != 0).map(|(_, id)| *id).collect()
}

/// What each live call's entry says, to show that a rejected operation changed nothing.
fn call_books(s: &Scheduler, model: &Model) -> Vec<(CallState, usize, u64, u64)> {
    model
        .live
        .keys()
        .map(|id| s.call(*id).unwrap())
        .map(|c| (c.state, c.queue, c.service.to_bits(), c.waiting_time.to_bits()))
        .collect()
}

fn check_books(s: &Scheduler, model: &Model) {
    assert_eq!(s.len(), model.live.len(), "a call was lost or duplicated");
    let running: BTreeSet<CallId> = s.running().iter().copied().collect();
    assert_eq!(running.len(), s.running().len(), "a call runs twice");
    let mut waiting = 0;
    for (&id, &program) in &model.live {
        let call = s.call(id).expect("live call known to the scheduler");
        assert_eq!(call.program, program);
        assert_eq!(call.state == CallState::Running, running.contains(&id));
        waiting += usize::from(call.state == CallState::Waiting);
        let last_queue = s.config().num_queues() - 1;
        assert!(
            call.queue == last_queue || call.quantum_used < s.config().quanta[call.queue],
            "call {id} used up its quantum undemoted"
        );
        let credited = model.service.get(&id).copied().unwrap_or(0.0);
        assert_eq!(call.queue, model.quantum[&id].0, "call {id} is in the wrong queue for its service");
        assert!(
            (call.service - credited).abs() <= 1e-9 * credited.max(1.0),
            "call {id}: service {} credited {credited}",
            call.service
        );
    }
    // Each program's live calls, and their count, are exactly the model's.
    let mut live_by_program: BTreeMap<ProgramId, Vec<CallId>> = BTreeMap::new();
    for (&id, &program) in &model.live {
        live_by_program.entry(program).or_default().push(id);
    }
    for (program, calls) in &live_by_program {
        assert_eq!(s.program_calls(*program).as_ref(), Some(calls), "program {program}'s live calls");
        assert_eq!(s.program(*program).map(|p| p.active_calls()), Some(calls.len()));
    }
    assert_eq!(waiting, s.num_waiting());
    assert_eq!(s.queue_lengths().iter().sum::<usize>(), waiting);
    assert_eq!(s.num_running() + s.num_waiting(), s.len());
}

/// What a decision was asked and answered.
struct Decided<'a> {
    capacity: usize,
    /// Running calls when the decision started (after a step's own changes).
    running_before: usize,
    protected: &'a [CallId],
    admit: &'a [CallId],
    preempt: &'a [CallId],
}

/// After a decision: the batch is full or nothing waits, and no waiting call sits in a strictly
/// more urgent queue than an unprotected running one (less attained service never waits behind
/// more), except calls promoted by anti-starvation, which wait for a free slot rather than preempt.
/// Protected calls are preempted only to bring the batch down to capacity, which comes first.
fn check_decision(s: &Scheduler, model: &Model, d: &Decided) {
    let (capacity, admit, preempt) = (d.capacity, d.admit, d.preempt);
    assert!(s.num_running() <= capacity);
    assert!(s.num_running() == capacity || s.num_waiting() == 0, "a call waits while there is room");
    let over_capacity = d.running_before.saturating_sub(capacity);
    let swapped_out = &preempt[over_capacity.min(preempt.len())..];
    assert!(swapped_out.iter().all(|id| !d.protected.contains(id)), "a protected call was swapped out");
    let worst_running =
        s.running().iter().filter(|id| !d.protected.contains(id)).map(|id| s.call(*id).unwrap().queue).max();
    let best_waiting = model
        .live
        .keys()
        .map(|id| s.call(*id).unwrap())
        .filter(|c| c.state == CallState::Waiting && !c.promoted)
        .map(|c| c.queue)
        .min();
    if let (Some(worst), Some(best)) = (worst_running, best_waiting) {
        assert!(best >= worst, "a call of queue {best} waits behind a running call of queue {worst}");
    }
    assert!(admit.iter().all(|id| s.call(*id).unwrap().state == CallState::Running));
    assert!(preempt.iter().all(|id| s.call(*id).unwrap().state == CallState::Waiting));
    assert!(admit.iter().all(|id| !preempt.contains(id)), "a call both admitted and preempted");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_operations_keep_the_books(
        policy in policy(),
        beta in prop_oneof![Just(1.0), Just(3.0), Just(f64::INFINITY)],
        ops in prop::collection::vec(op(), 1..300),
    ) {
        let config = SchedulerConfig::new(policy, None, None, Some(beta), Some(20.0)).unwrap();
        let mut s = Scheduler::new(config.clone());
        let mut model = Model::default();
        let mut now = 0.0;
        for op in ops {
            match op {
                Op::Add { program, parent_picks } => {
                    model.next_call += 1;
                    let id = model.next_call;
                    // Parents: earlier calls of the same program, live or finished.
                    let known: Vec<CallId> = s.program(program).map_or_else(Vec::new, |p| {
                        let live = s.program_calls(program).unwrap_or_default();
                        live.into_iter().chain(p.finished_paths.keys().copied()).collect()
                    });
                    let parents: Vec<CallId> = parent_picks.iter().filter_map(|&i| pick(&known, i)).collect();
                    let service = s.program(program).map_or(0.0, |p| p.attained_service);
                    let mean_call = s
                        .program(program)
                        .filter(|p| p.finished_calls > 0)
                        .map(|p| p.attained_service / f64::from(p.finished_calls));
                    let hint = model.arriving(&s, program);
                    s.add_call(id, program, now, &parents).unwrap();
                    model.arrive(id, program, s.call(id).unwrap().queue);
                    prop_assert_eq!(s.program(program).unwrap().calls_to_come(), model.hints.get(&program).copied());
                    // Hinted: the calls left (this one at least) times the program's mean call; the
                    // mean of every program's calls, used before one of its own finished, is not
                    // the model's to check.
                    let rank = match (hint, mean_call) {
                        (None, _) => Some(service),
                        (Some(to_come), Some(mean)) => Some(f64::from(to_come.max(1)) * mean),
                        (Some(_), None) => None,
                    };
                    if let (Policy::Plas, Some(rank)) = (policy, rank) {
                        prop_assert_eq!(s.call(id).unwrap().queue, config.queue_for(rank));
                    }
                }
                Op::Schedule { capacity, protect_mask } => {
                    let protected = masked(s.running(), protect_mask);
                    let running_before = s.num_running();
                    let may_swap = s.may_swap();
                    let decision = s.schedule_protecting(now, capacity, &protected).unwrap().clone();
                    model.promote(&decision.promoted);
                    // may_swap is conservative: false means no preemption beyond what capacity forces.
                    if !may_swap {
                        assert!(
                            decision.preempt.len() <= running_before.saturating_sub(capacity),
                            "may_swap said no swap, yet {} preempted ({} running, capacity {})",
                            decision.preempt.len(), running_before, capacity
                        );
                    }
                    let d = Decided {
                        capacity, running_before, protected: &protected, admit: &decision.admit, preempt: &decision.preempt,
                    };
                    check_decision(&s, &model, &d);
                }
                Op::Step { capacity, seconds, protect_mask, finish_pick, program } => {
                    let live: Vec<CallId> = model.live.keys().copied().collect();
                    let finished: Vec<CallId> = finish_pick.and_then(|i| pick(&live, i)).into_iter().collect();
                    let still_running: Vec<CallId> =
                        s.running().iter().copied().filter(|id| !finished.contains(id)).collect();
                    let protected = masked(&still_running, protect_mask);
                    model.next_call += 1;
                    model.arriving(&s, program);
                    let new_calls = [NewCall { call: model.next_call, program, parents: &[] }];
                    let input = StepInput {
                        ran_all: true, ran_seconds: seconds, finished: &finished, new_calls: &new_calls,
                        protected: &protected, ..StepInput::default()
                    };
                    let ran = s.running().to_vec();
                    let decision = s.step(input, now, capacity).unwrap().clone();
                    model.credit(&config, &ran, seconds);
                    for id in &finished {
                        model.forget(*id);
                    }
                    model.arrive(model.next_call, program, s.call(model.next_call).unwrap().queue);
                    model.promote(&decision.promoted);
                    let d = Decided {
                        capacity, running_before: still_running.len(), protected: &protected,
                        admit: &decision.admit, preempt: &decision.preempt,
                    };
                    check_decision(&s, &model, &d);
                }
                Op::BadProtect { pick: index, via_step } => {
                    let live: Vec<CallId> = model.live.keys().copied().collect();
                    let waiting: Vec<CallId> =
                        live.into_iter().filter(|id| s.call(*id).unwrap().state == CallState::Waiting).collect();
                    // A running call finishing in the step is as gone as an unknown one.
                    let (bad, finished) = match (pick(&waiting, index), pick(s.running(), index)) {
                        (Some(id), _) => (id, None),
                        (None, Some(id)) if via_step => (id, Some(id)),
                        _ => (CallId::MAX, None),
                    };
                    let before = (s.stats().clone(), s.running().to_vec(), call_books(&s, &model));
                    let result = if via_step {
                        let finished: Vec<CallId> = finished.into_iter().collect();
                        let input = StepInput {
                            ran_all: true, ran_seconds: 1.0, finished: &finished, protected: &[bad], ..StepInput::default()
                        };
                        s.step(input, now + 1.0, 6).map(|_| ())
                    } else {
                        s.schedule_protecting(now + 1.0, 6, &[bad]).map(|_| ())
                    };
                    prop_assert!(result.is_err());
                    let after = (s.stats().clone(), s.running().to_vec(), call_books(&s, &model));
                    prop_assert_eq!(before, after, "a rejected protected list changed something");
                }
                Op::Serve { seconds, mask } => {
                    let served = masked(s.running(), mask);
                    s.record_service(&served, seconds, now).unwrap();
                    model.credit(&config, &served, seconds);
                }
                Op::ServeAllExcept { seconds, mask, extra } => {
                    let listed = masked(s.running(), mask);
                    let rest: Vec<CallId> = s.running().iter().copied().filter(|id| !listed.contains(id)).collect();
                    let amounts = vec![seconds + extra; listed.len()];
                    s.record_service_running_except(seconds, &listed, &amounts, now).unwrap();
                    model.credit(&config, &rest, seconds);
                    model.credit(&config, &listed, seconds + extra);
                }
                Op::Finish { pick: index } => {
                    let live: Vec<CallId> = model.live.keys().copied().collect();
                    if let Some(id) = pick(&live, index) {
                        s.finish_calls(&[id], now).unwrap();
                        model.forget(id);
                    }
                }
                Op::Requeue { pick: index } => {
                    if let Some(id) = pick(s.running(), index) {
                        s.requeue(&[id], now).unwrap();
                    }
                }
                Op::EndProgram { program } => {
                    let expected: Vec<CallId> =
                        model.live.iter().filter(|(_, p)| **p == program).map(|(id, _)| *id).collect();
                    match s.end_program(program) {
                        Ok(dropped) => prop_assert_eq!(dropped, expected.clone()),
                        Err(_) => prop_assert!(expected.is_empty(), "a program with live calls went missing"),
                    }
                    for id in expected {
                        model.forget(id);
                    }
                    model.hints.remove(&program);
                }
                Op::Hint { program, calls_left } => {
                    s.set_calls_left(program, calls_left, now).unwrap();
                    model.hints.insert(program, calls_left);
                    prop_assert_eq!(s.program(program).unwrap().calls_to_come(), Some(calls_left));
                }
                Op::Advance { seconds } => now += seconds,
            }
            check_books(&s, &model);
        }
    }

    /// Under a steady stream of light programs that keeps queue 0 busy, a heavy program's call
    /// still runs soon after the anti-starvation rule says it must: once it has waited beta times
    /// its program's service.
    #[test]
    fn every_call_eventually_runs_under_anti_starvation(
        beta in 0.5..8.0f64,
        heavy_service in 1.0..40.0f64,
        light_steps in 1..4u32,
        capacity in 1..3usize,
    ) {
        let config = SchedulerConfig::new(Policy::Plas, None, None, Some(beta), None).unwrap();
        let mut s = Scheduler::new(config);
        let dt = 0.1;
        s.add_call(1, 1, 0.0, &[]).unwrap();
        s.schedule(0.0, capacity).unwrap();
        s.record_service(&[1], heavy_service, heavy_service).unwrap();
        s.finish_calls(&[1], heavy_service).unwrap();
        let arrival = heavy_service;
        s.add_call(2, 1, arrival, &[]).unwrap();
        let mut now = arrival;
        let mut steps_left: BTreeMap<CallId, u32> = BTreeMap::new();
        let mut admitted_at = None;
        let deadline = arrival + beta * heavy_service;
        let mut next_id = 10;
        while now < deadline + 10.0 && admitted_at.is_none() {
            let running = s.running().to_vec();
            s.record_service(&running, dt, now).unwrap();
            let mut done = Vec::new();
            for id in running.into_iter().filter(|&id| id != 2) {
                let left = steps_left.get_mut(&id).unwrap();
                *left -= 1;
                if *left == 0 { done.push(id); }
            }
            s.finish_calls(&done, now).unwrap();
            // Light programs arrive about as fast as the engine can serve them.
            if next_id % u64::from(light_steps) == 0 || capacity > 1 {
                s.add_call(next_id, next_id, now, &[]).unwrap();
                steps_left.insert(next_id, light_steps);
            }
            next_id += 1;
            if s.schedule(now, capacity).unwrap().admit.contains(&2) {
                admitted_at = Some(now);
            }
            now += dt;
        }
        let ran_at = admitted_at.expect("the heavy call never ran");
        prop_assert!(ran_at <= deadline + 10.0);
    }
}
