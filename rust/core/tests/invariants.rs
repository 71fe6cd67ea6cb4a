//! Property tests: long random operation sequences keep the scheduler's books straight.

use std::collections::{BTreeMap, BTreeSet};

use autellix_sched::{CallId, CallState, Policy, ProgramId, Scheduler, SchedulerConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Add { program: ProgramId, parent_picks: Vec<usize> },
    Schedule { capacity: usize },
    Serve { seconds: f64, mask: u32 },
    Finish { pick: usize },
    Requeue { pick: usize },
    EndProgram { program: ProgramId },
    Advance { seconds: f64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..6u64, prop::collection::vec(any::<usize>(), 0..3))
            .prop_map(|(program, parent_picks)| Op::Add { program, parent_picks }),
        4 => (0..6usize).prop_map(|capacity| Op::Schedule { capacity }),
        4 => (0.0..3.0f64, any::<u32>()).prop_map(|(seconds, mask)| Op::Serve { seconds, mask }),
        2 => any::<usize>().prop_map(|pick| Op::Finish { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Requeue { pick }),
        1 => (0..6u64).prop_map(|program| Op::EndProgram { program }),
        2 => (0.0..4.0f64).prop_map(|seconds| Op::Advance { seconds }),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![Just(Policy::Fcfs), Just(Policy::Mlfq), Just(Policy::Plas), Just(Policy::Atlas)]
}

/// What the test knows independently of the scheduler: which calls are live, and of which program.
#[derive(Default)]
struct Model {
    live: BTreeMap<CallId, ProgramId>,
    next_call: CallId,
}

fn pick<T: Copy>(items: &[T], index: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[index % items.len()])
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
        assert!(s.program(program).is_some_and(|p| p.live_calls.contains(&id)));
    }
    assert_eq!(waiting, s.num_waiting());
    assert_eq!(s.queue_lengths().iter().sum::<usize>(), waiting);
    assert_eq!(s.num_running() + s.num_waiting(), s.len());
}

/// After a decision: the batch is full or nothing waits, and no waiting call sits in a strictly
/// more urgent queue than a running one (less attained service never waits behind more), except
/// calls promoted by anti-starvation, which wait for a free slot rather than preempt.
fn check_decision(s: &Scheduler, model: &Model, capacity: usize, admit: &[CallId], preempt: &[CallId]) {
    assert!(s.num_running() <= capacity);
    assert!(s.num_running() == capacity || s.num_waiting() == 0, "a call waits while there is room");
    let worst_running = s.running().iter().map(|id| s.call(*id).unwrap().queue).max();
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
                        p.live_calls.iter().chain(p.finished_paths.keys()).copied().collect()
                    });
                    let parents: Vec<CallId> = parent_picks.iter().filter_map(|&i| pick(&known, i)).collect();
                    let service = s.program(program).map_or(0.0, |p| p.attained_service);
                    s.add_call(id, program, now, &parents).unwrap();
                    model.live.insert(id, program);
                    if policy == Policy::Plas {
                        prop_assert_eq!(s.call(id).unwrap().queue, config.queue_for(service));
                    }
                }
                Op::Schedule { capacity } => {
                    let decision = s.schedule(now, capacity).unwrap().clone();
                    check_decision(&s, &model, capacity, &decision.admit, &decision.preempt);
                }
                Op::Serve { seconds, mask } => {
                    let served: Vec<CallId> = s.running().iter().enumerate()
                        .filter(|(i, _)| mask & (1 << (i % 32)) != 0).map(|(_, id)| *id).collect();
                    s.record_service(&served, seconds, now).unwrap();
                }
                Op::Finish { pick: index } => {
                    let live: Vec<CallId> = model.live.keys().copied().collect();
                    if let Some(id) = pick(&live, index) {
                        s.finish_calls(&[id], now).unwrap();
                        model.live.remove(&id);
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
                        model.live.remove(&id);
                    }
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
