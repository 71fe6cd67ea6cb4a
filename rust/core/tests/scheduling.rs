//! Behaviour of one engine's scheduler, policy by policy.

use autellix_sched::{CallState, CoreError, NewCall, Policy, Scheduler, SchedulerConfig, StepInput};

/// Queues [0,1) [1,2) [2,4) [4,inf) with the default quanta (their widths: 1, 1, 2, 2).
fn scheduler(policy: Policy) -> Scheduler {
    scheduler_with_beta(policy, f64::INFINITY)
}

fn scheduler_with_beta(policy: Policy, beta: f64) -> Scheduler {
    let boundaries = (policy != Policy::Fcfs).then(|| vec![1.0, 2.0, 4.0]);
    Scheduler::new(SchedulerConfig::new(policy, boundaries, None, Some(beta), None).unwrap())
}

/// Calls 1..=n, each of a program of its own, all admitted (in that order).
fn all_running(policy: Policy, n: u64) -> Scheduler {
    let mut s = scheduler(policy);
    for call in 1..=n {
        s.add_call(call, call, 0.0, &[]).unwrap();
    }
    assert_eq!(s.schedule(0.0, n as usize).unwrap().admit.len(), n as usize);
    s
}

/// Runs `call` alone for `seconds` and finishes it, so its program gains that much service.
fn serve_and_finish(s: &mut Scheduler, call: u64, program: u64, now: f64, seconds: f64) {
    s.add_call(call, program, now, &[]).unwrap();
    assert_eq!(s.schedule(now, 1).unwrap().admit, vec![call]);
    s.record_service(&[call], seconds, now + seconds).unwrap();
    s.finish_calls(&[call], now + seconds).unwrap();
}

#[test]
fn plas_light_program_overtakes_heavy_program() {
    let mut s = scheduler(Policy::Plas);
    serve_and_finish(&mut s, 1, 100, 0.0, 3.0); // program 100 has 3 s of service: queue 2
    s.add_call(2, 100, 3.0, &[]).unwrap();
    s.add_call(3, 200, 3.0, &[]).unwrap(); // a new program: queue 0
    assert_eq!(s.call(2).unwrap().queue, 2);
    assert_eq!(s.call(3).unwrap().queue, 0);
    assert_eq!(s.schedule(3.0, 1).unwrap().admit, vec![3], "the program with less service goes first");
    assert_eq!(s.program(100).unwrap().attained_service, 3.0);
}

#[test]
fn a_program_that_says_it_is_nearly_done_goes_before_one_with_as_much_service_and_more_to_do() {
    // Both programs had 2 s in one call. Program 200 has one call left (2 s of work: queue 2),
    // program 100 five (10 s: queue 3); plas alone would queue both at 2 and run 100's first.
    let mut s = scheduler(Policy::Plas);
    serve_and_finish(&mut s, 1, 100, 0.0, 2.0);
    serve_and_finish(&mut s, 2, 200, 2.0, 2.0);
    s.set_calls_left(100, 5, 4.0).unwrap();
    s.set_calls_left(200, 1, 4.0).unwrap();
    s.add_call(3, 100, 4.0, &[]).unwrap();
    s.add_call(4, 200, 4.0, &[]).unwrap();
    assert_eq!((s.call(3).unwrap().queue, s.call(4).unwrap().queue), (3, 2));
    assert_eq!(s.schedule(4.0, 1).unwrap().admit, vec![4]);
    assert_eq!(s.call(3).unwrap().priority, 2.0, "the plas priority is kept (ATLAS paths use it)");
}

#[test]
fn arrivals_count_a_hint_down_to_the_arriving_call() {
    let mut s = scheduler(Policy::Plas);
    serve_and_finish(&mut s, 1, 100, 0.0, 0.5);
    s.set_calls_left(100, 3, 0.5).unwrap();
    let to_come = |s: &Scheduler| s.program(100).unwrap().calls_to_come();
    assert_eq!(to_come(&s), Some(3));
    let mut queues = Vec::new();
    for call in 2..6 {
        s.add_call(call, 100, 0.5, &[]).unwrap();
        queues.push(s.call(call).unwrap().queue);
    }
    assert_eq!(to_come(&s), Some(0), "more arrived than it said");
    // Work left with each call: 3, 2, 1, then (the count ran out) the call alone, times 0.5 s.
    assert_eq!(queues, vec![1, 1, 0, 0]);
}

#[test]
fn a_hinted_program_with_no_call_finished_is_sized_by_every_program_s_mean_call() {
    let mut s = scheduler(Policy::Plas);
    s.set_calls_left(200, 2, 0.0).unwrap();
    s.add_call(1, 200, 0.0, &[]).unwrap();
    assert_eq!(s.call(1).unwrap().queue, 0, "no call has finished anywhere: plas");
    assert_eq!(s.end_program(200).unwrap(), vec![1]);
    serve_and_finish(&mut s, 2, 100, 0.0, 1.5);
    s.set_calls_left(300, 2, 1.5).unwrap();
    s.add_call(3, 300, 1.5, &[]).unwrap();
    assert_eq!(s.call(3).unwrap().queue, 2, "2 calls of the 1.5 s mean call: 3 s");
}

#[test]
fn program_blind_policies_ignore_hints_and_a_hint_of_no_calls_is_refused() {
    for policy in [Policy::Fcfs, Policy::Mlfq] {
        let mut s = scheduler(policy);
        serve_and_finish(&mut s, 1, 100, 0.0, 3.0);
        s.set_calls_left(100, 9, 3.0).unwrap();
        s.add_call(2, 100, 3.0, &[]).unwrap();
        assert_eq!(s.call(2).unwrap().queue, 0);
    }
    let mut s = scheduler(Policy::Plas);
    let err = s.set_calls_left(100, 0, 0.0).unwrap_err();
    assert!(matches!(err, CoreError::InvalidArgument(_)) && err.to_string().contains("calls_left"));
    assert!(s.program(100).is_none(), "a refused hint changes nothing");
}

#[test]
fn fcfs_runs_in_arrival_order_and_never_preempts() {
    let mut s = scheduler(Policy::Fcfs);
    serve_and_finish(&mut s, 1, 100, 0.0, 50.0);
    s.add_call(2, 100, 50.0, &[]).unwrap();
    s.add_call(3, 200, 50.0, &[]).unwrap();
    assert_eq!(s.schedule(50.0, 1).unwrap().admit, vec![2]);
    s.record_service(&[2], 100.0, 150.0).unwrap();
    let decision = s.schedule(150.0, 1).unwrap();
    assert!(decision.admit.is_empty() && decision.preempt.is_empty());
}

#[test]
fn mlfq_ignores_programs_and_demotes_by_quantum() {
    let mut s = scheduler(Policy::Mlfq);
    serve_and_finish(&mut s, 1, 100, 0.0, 30.0);
    s.add_call(2, 100, 30.0, &[]).unwrap();
    assert_eq!(s.call(2).unwrap().queue, 0, "call-level: every call starts at the top");
    s.schedule(30.0, 1).unwrap();
    s.record_service(&[2], 0.5, 30.5).unwrap();
    assert_eq!(s.call(2).unwrap().queue, 0);
    s.record_service(&[2], 0.5, 31.0).unwrap();
    assert_eq!(s.call(2).unwrap().queue, 1, "used up queue 0's 1 s quantum");
    s.record_service(&[2], 1.0, 32.0).unwrap();
    assert_eq!(s.call(2).unwrap().queue, 2);
    assert_eq!(s.stats().demotions, 3, "two for call 2, one for call 1: one queue per record at most");
}

#[test]
fn atlas_uses_the_critical_path_not_the_sum() {
    let mut s = scheduler(Policy::Atlas);
    // Two parallel calls of 1.5 s each: the sum is 3 s but the critical path is 1.5 s.
    s.add_call(1, 7, 0.0, &[]).unwrap();
    s.add_call(2, 7, 0.0, &[]).unwrap();
    s.schedule(0.0, 2).unwrap();
    s.record_service(&[1, 2], 1.5, 1.5).unwrap();
    s.finish_calls(&[1, 2], 1.5).unwrap();
    let program = s.program(7).unwrap();
    assert_eq!((program.attained_service, program.critical_path), (3.0, 1.5));
    s.add_call(3, 7, 1.5, &[]).unwrap();
    assert_eq!(s.call(3).unwrap().priority, 1.5);
    assert_eq!(s.call(3).unwrap().queue, 1);
}

#[test]
fn atlas_named_parents_take_the_longest_parent_path() {
    let mut s = scheduler(Policy::Atlas);
    s.add_call(1, 7, 0.0, &[]).unwrap();
    s.add_call(2, 7, 0.0, &[]).unwrap();
    s.schedule(0.0, 2).unwrap();
    s.record_service(&[1, 2], 0.5, 0.5).unwrap();
    s.finish_calls(&[1], 0.5).unwrap();
    s.record_service(&[2], 2.5, 3.0).unwrap();
    s.finish_calls(&[2], 3.0).unwrap();
    s.add_call(3, 7, 3.0, &[1]).unwrap();
    s.add_call(4, 7, 3.0, &[1, 2]).unwrap();
    assert_eq!(s.call(3).unwrap().priority, 0.5, "only its own parent's path counts");
    assert_eq!(s.call(4).unwrap().priority, 3.0);
    let err = s.add_call(5, 7, 3.0, &[99]).unwrap_err();
    assert!(matches!(err, CoreError::UnknownParent { parent: 99, .. }));
    let err = s.add_call(6, 8, 3.0, &[1]).unwrap_err();
    assert!(matches!(err, CoreError::UnknownParent { program: 8, .. }), "parents must be of the same program");
}

#[test]
fn full_batch_preempts_only_for_strictly_more_urgent_queues() {
    let mut s = scheduler(Policy::Plas);
    serve_and_finish(&mut s, 1, 100, 0.0, 5.0); // program 100: queue 3
    s.add_call(2, 100, 5.0, &[]).unwrap();
    s.add_call(3, 101, 5.0, &[]).unwrap();
    assert_eq!(s.schedule(5.0, 2).unwrap().admit, vec![3, 2]);
    // Same-queue newcomers never displace a running call of their own queue.
    s.add_call(4, 102, 5.0, &[]).unwrap();
    let decision = s.schedule(5.0, 2).unwrap().clone();
    assert_eq!((decision.admit, decision.preempt), (vec![4], vec![2]), "queue 0 beats queue 3");
    s.add_call(5, 103, 5.0, &[]).unwrap();
    let decision = s.schedule(5.0, 2).unwrap();
    assert!(decision.preempt.is_empty(), "queue 0 does not preempt queue 0: no ping-pong");
    assert_eq!(s.call(2).unwrap().state, CallState::Waiting);
    assert_eq!(s.stats().preemptions, 1);
}

#[test]
fn preempted_call_keeps_its_place() {
    let mut s = scheduler(Policy::Mlfq);
    s.add_call(1, 1, 0.0, &[]).unwrap();
    s.add_call(2, 2, 0.0, &[]).unwrap();
    s.schedule(0.0, 1).unwrap();
    s.requeue(&[1], 0.1).unwrap();
    s.add_call(3, 3, 0.2, &[]).unwrap();
    assert_eq!(s.schedule(0.2, 1).unwrap().admit, vec![1], "1 arrived first and is back at the head");
}

#[test]
fn shrinking_capacity_preempts_the_least_urgent() {
    let mut s = all_running(Policy::Mlfq, 3);
    assert_eq!(s.schedule(0.0, 1).unwrap().preempt, vec![3, 2]);
    assert_eq!(s.running(), &[1]);
}

#[test]
fn anti_starvation_promotes_after_beta_times_service() {
    let mut s = scheduler_with_beta(Policy::Plas, 2.0);
    serve_and_finish(&mut s, 1, 100, 0.0, 5.0); // T_p = 5 s
    s.add_call(2, 100, 5.0, &[]).unwrap(); // queue 3: promoted once W >= 2 * 5 s, at t = 15
    s.add_call(3, 200, 5.0, &[]).unwrap();
    s.schedule(5.0, 1).unwrap(); // 3 runs
    assert!(s.schedule(14.9, 1).unwrap().promoted.is_empty());
    assert_eq!(s.schedule(15.0, 1).unwrap().promoted, vec![2]);
    assert_eq!(s.call(2).unwrap().queue, 0);
    assert_eq!(s.call(2).unwrap().waiting_time, 10.0);
    s.finish_calls(&[3], 15.0).unwrap();
    assert_eq!(s.schedule(15.0, 1).unwrap().admit, vec![2]);
    assert_eq!(s.program(100).unwrap().waiting_time, 10.0);
}

#[test]
fn a_hinted_program_starves_against_the_work_it_said_it_has_left() {
    // As above, but the client says 3 calls are left: with its 5 s mean call that is 15 s, so it
    // waits against its told size (5 s had + 15 s left), promoted once W >= 2 * 20 s, at t = 45.
    let mut s = scheduler_with_beta(Policy::Plas, 2.0);
    serve_and_finish(&mut s, 1, 100, 0.0, 5.0);
    s.set_calls_left(100, 3, 5.0).unwrap();
    s.add_call(2, 100, 5.0, &[]).unwrap();
    s.add_call(3, 200, 5.0, &[]).unwrap();
    s.schedule(5.0, 1).unwrap(); // 3 runs
    assert!(s.schedule(15.0, 1).unwrap().promoted.is_empty(), "not at beta * attained alone (t = 15)");
    assert!(s.schedule(44.9, 1).unwrap().promoted.is_empty());
    assert_eq!(s.schedule(45.0, 1).unwrap().promoted, vec![2]);
}

#[test]
fn starvation_is_measured_against_the_fair_wait_of_a_crowded_queue() {
    // Three calls wait per running one, so a fair share of the engine would make each wait three
    // times its service: starved means beta times that, 2 * 3 * 5 s after the spell starts.
    let mut s = scheduler_with_beta(Policy::Plas, 2.0);
    serve_and_finish(&mut s, 1, 100, 0.0, 5.0); // T_p = 5 s
    s.add_call(2, 200, 5.0, &[]).unwrap();
    s.schedule(5.0, 1).unwrap(); // 2 runs
    s.add_call(3, 300, 5.0, &[]).unwrap();
    s.add_call(4, 400, 5.0, &[]).unwrap();
    s.add_call(5, 100, 5.0, &[]).unwrap(); // queue 3, with 3 waiting per running call
    assert!(s.schedule(34.9, 1).unwrap().promoted.is_empty(), "not at beta * service alone (t = 15)");
    assert_eq!(s.schedule(35.0, 1).unwrap().promoted, vec![5]);
}

#[test]
fn a_promotion_restarts_the_programs_waiting_count() {
    // Program 100 starves once (10 s, twice its 5 s of service). Its next call must starve again
    // on its own waiting; had the program kept its 10 s, that call would be due at once.
    let mut s = scheduler_with_beta(Policy::Plas, 2.0);
    serve_and_finish(&mut s, 1, 100, 0.0, 5.0);
    s.add_call(2, 100, 5.0, &[]).unwrap();
    s.add_call(3, 200, 5.0, &[]).unwrap();
    s.schedule(5.0, 1).unwrap(); // 3 runs
    assert_eq!(s.schedule(15.0, 1).unwrap().promoted, vec![2]);
    s.finish_calls(&[3], 15.0).unwrap();
    assert_eq!(s.schedule(15.0, 1).unwrap().admit, vec![2]);
    s.finish_calls(&[2], 15.0).unwrap(); // T_p is still 5 s: call 2 ran no time
    s.add_call(4, 200, 15.0, &[]).unwrap();
    assert_eq!(s.schedule(15.0, 1).unwrap().admit, vec![4]);
    s.add_call(5, 100, 15.0, &[]).unwrap();
    assert!(s.schedule(15.0, 1).unwrap().promoted.is_empty(), "the program's 10 s were spent on call 2");
    assert!(s.schedule(24.9, 1).unwrap().promoted.is_empty());
    assert_eq!(s.schedule(25.0, 1).unwrap().promoted, vec![5]);
    assert_eq!(s.program(100).unwrap().waiting_time, 20.0, "all waiting still shows in the program's books");
}

#[test]
fn a_promoted_call_goes_first_but_preempts_no_one() {
    let mut s = scheduler_with_beta(Policy::Plas, 2.0);
    serve_and_finish(&mut s, 1, 100, 0.0, 5.0); // T_p = 5 s: queue 3, promoted at t = 15
    s.add_call(2, 100, 5.0, &[]).unwrap();
    s.add_call(3, 200, 5.0, &[]).unwrap();
    s.schedule(5.0, 1).unwrap(); // 3 runs
    for (seconds, now) in [(1.0, 6.0), (1.0, 7.0), (2.0, 9.0)] {
        s.record_service(&[3], seconds, now).unwrap(); // one queue down each time, to queue 3
    }
    assert_eq!(s.call(3).unwrap().queue, 3);
    let decision = s.schedule(15.0, 1).unwrap().clone();
    assert_eq!(decision.promoted, vec![2]);
    assert!(decision.preempt.is_empty(), "promotion never preempts, so it cannot start a preemption chain");
    // A fresh light call still preempts; the promoted call keeps the head of the line.
    s.add_call(4, 300, 15.0, &[]).unwrap();
    let decision = s.schedule(15.0, 1).unwrap().clone();
    assert_eq!((decision.admit, decision.preempt), (vec![4], vec![3]));
    s.finish_calls(&[4], 15.5).unwrap();
    assert_eq!(s.schedule(15.5, 1).unwrap().admit, vec![2], "ahead of call 3, which waits in queue 3");
}

#[test]
fn plas_serves_older_programs_first_within_a_queue() {
    for (policy, expected) in [(Policy::Plas, vec![1, 3, 2]), (Policy::Mlfq, vec![1, 2, 3])] {
        let mut s = scheduler(policy);
        s.add_call(1, 100, 0.0, &[]).unwrap();
        s.add_call(2, 200, 0.0, &[]).unwrap();
        assert_eq!(s.schedule(0.0, 1).unwrap().admit, vec![1]);
        s.finish_calls(&[1], 0.1).unwrap(); // program 100 is still in queue 0 and older than 200
        s.add_call(3, 100, 0.1, &[]).unwrap();
        let mut admitted = vec![1];
        for now in [0.1, 0.2] {
            admitted.extend(s.schedule(now, 1).unwrap().admit.clone());
            let running = s.running().to_vec();
            s.finish_calls(&running, now).unwrap();
        }
        assert_eq!(admitted, expected, "{policy:?}: program order keeps a program's context warm; mlfq is call FCFS");
    }
}

#[test]
fn a_heavy_program_finishes_under_a_stream_of_light_ones() {
    for (beta, expect_to_run) in [(2.0, true), (f64::INFINITY, false)] {
        let mut s = scheduler_with_beta(Policy::Plas, beta);
        serve_and_finish(&mut s, 1, 1, 0.0, 10.0);
        s.add_call(2, 1, 10.0, &[]).unwrap();
        let mut heavy_ran = false;
        let mut now = 10.0;
        for light in 0..2_000u64 {
            // A new light program every 0.1 s keeps queue 0 busy forever.
            let running = s.running().to_vec();
            s.record_service(&running, 0.1, now).unwrap();
            let done: Vec<u64> = running.into_iter().filter(|&c| c != 2).collect();
            s.finish_calls(&done, now).unwrap();
            s.add_call(1_000 + light, 1_000 + light, now, &[]).unwrap();
            heavy_ran |= s.schedule(now, 1).unwrap().admit.contains(&2);
            now += 0.1;
        }
        assert_eq!(heavy_ran, expect_to_run, "beta = {beta}");
    }
}

#[test]
fn end_program_drops_its_calls_and_reports_them() {
    let mut s = scheduler(Policy::Plas);
    s.add_call(5, 1, 0.0, &[]).unwrap();
    s.add_call(3, 1, 0.0, &[]).unwrap();
    s.add_call(4, 2, 0.0, &[]).unwrap();
    s.schedule(0.0, 1).unwrap();
    assert_eq!(s.end_program(1).unwrap(), vec![3, 5]);
    assert_eq!((s.len(), s.num_waiting(), s.queue_lengths().iter().sum::<usize>()), (1, 1, 1));
    assert_eq!(s.schedule(0.0, 1).unwrap().admit, vec![4]);
    assert!(matches!(s.end_program(1), Err(CoreError::UnknownProgram(1))));
}

#[test]
fn stale_idle_programs_are_dropped() {
    let config = SchedulerConfig::new(Policy::Plas, None, None, None, Some(10.0)).unwrap();
    let mut s = Scheduler::new(config);
    serve_and_finish(&mut s, 1, 1, 0.0, 1.0);
    s.start_program(2, 1.0).unwrap();
    s.schedule(10.5, 1).unwrap();
    assert!(s.program(1).is_some());
    s.schedule(11.0, 1).unwrap();
    assert!(s.program(1).is_none() && s.program(2).is_none());
    assert_eq!(s.stats().dropped_programs, 2);
}

#[test]
fn a_rejected_step_changes_nothing() {
    let mut s = scheduler(Policy::Plas);
    s.add_call(1, 1, 0.0, &[]).unwrap();
    s.schedule(0.0, 1).unwrap();
    let new_calls = [NewCall { call: 2, program: 1, parents: &[] }, NewCall { call: 1, program: 1, parents: &[] }];
    let input = StepInput { ran: &[1], ran_seconds: 0.5, new_calls: &new_calls, ..StepInput::default() };
    assert!(matches!(s.step(input, 1.0, 1), Err(CoreError::DuplicateCall(1))));
    assert_eq!(s.call(1).unwrap().service, 0.0, "the service of the rejected step was not recorded");
    assert!(s.call(2).is_none());
    assert_eq!(s.len(), 1);
}

#[test]
fn step_applies_service_finishes_arrivals_then_decides() {
    let mut s = scheduler(Policy::Plas);
    s.add_call(1, 1, 0.0, &[]).unwrap();
    s.schedule(0.0, 1).unwrap();
    let new_calls = [NewCall { call: 2, program: 1, parents: &[] }];
    let input =
        StepInput { ran: &[1], ran_seconds: 1.5, finished: &[1], new_calls: &new_calls, ..StepInput::default() };
    assert_eq!(s.step(input, 1.5, 1).unwrap().admit, vec![2]);
    assert_eq!(s.call(2).unwrap().queue, 1, "priority came from the service recorded in the same step");
}

#[test]
fn ran_all_credits_every_running_call() {
    let mut s = scheduler(Policy::Mlfq);
    for call in 1..=3 {
        s.add_call(call, call, 0.0, &[]).unwrap();
    }
    s.schedule(0.0, 2).unwrap();
    let input = StepInput { ran_all: true, ran_seconds: 0.25, ..StepInput::default() };
    s.step(input, 0.25, 2).unwrap();
    let service: Vec<f64> = (1..=3).map(|c| s.call(c).unwrap().service).collect();
    assert_eq!(service, vec![0.25, 0.25, 0.0]);
    let both = StepInput { ran: &[1], ran_all: true, ..StepInput::default() };
    assert!(matches!(s.step(both, 0.5, 2), Err(CoreError::InvalidArgument(_))));
}

#[test]
fn a_whole_batch_credit_demotes_in_batch_order_as_crediting_each_call_in_turn_does() {
    // Calls 1, 2, 3 run in that order; 3 and 1 use up queue 0's 1 s quantum in the same step.
    let mut s = all_running(Policy::Mlfq, 3);
    s.record_service(&[1, 3], 0.5, 0.5).unwrap(); // alone: 1 and 3 have 0.5 s, 2 none
    s.record_service(&[1, 2, 3], 0.5, 1.0).unwrap(); // the whole batch, in its order
    let queues: Vec<usize> = (1..=3).map(|c| s.call(c).unwrap().queue).collect();
    assert_eq!(queues, vec![1, 0, 1]);
    // In queue 1, 1 went before 3, so with room for one call 3 stops first, then 1.
    let decision = s.schedule(1.0, 1).unwrap();
    assert_eq!(decision.preempt, vec![3, 1]);
    assert_eq!(s.running(), &[2]);
}

#[test]
fn lone_and_whole_batch_credits_add_up_to_each_call_s_own_service() {
    let mut s = scheduler(Policy::Plas);
    for call in 1..=3 {
        s.add_call(call, 100, 0.0, &[]).unwrap();
    }
    s.schedule(0.0, 3).unwrap();
    s.record_service_running(0.25, 0.25).unwrap();
    s.record_service_each(&[2], &[0.125], 0.25).unwrap();
    s.record_service_running_except(0.25, &[3], &[0.5], 0.5).unwrap();
    let service: Vec<f64> = (1..=3).map(|c| s.call(c).unwrap().service).collect();
    assert_eq!(service, vec![0.5, 0.625, 0.75], "read while running, each has its own total");
    // Leaving the batch keeps it; coming back, a call owes nothing for what others got meanwhile.
    s.finish_calls(&[1], 0.5).unwrap();
    s.schedule(0.5, 1).unwrap(); // 3 stops
    s.record_service_running(0.25, 0.75).unwrap();
    s.schedule(0.75, 2).unwrap(); // 3 runs again
    s.record_service_running(0.25, 1.0).unwrap();
    assert_eq!(s.program(100).unwrap().attained_service, 0.5);
    assert_eq!((s.call(2).unwrap().service, s.call(3).unwrap().service), (1.125, 1.0));
}

#[test]
fn bad_input_is_rejected_with_typed_errors() {
    let mut s = scheduler(Policy::Plas);
    s.add_call(1, 1, 5.0, &[]).unwrap();
    assert!(matches!(s.add_call(1, 1, 5.0, &[]), Err(CoreError::DuplicateCall(1))));
    assert!(matches!(s.record_service(&[1], 1.0, 5.0), Err(CoreError::WrongState { call: 1, .. })));
    assert!(matches!(s.finish_calls(&[2], 5.0), Err(CoreError::UnknownCall(2))));
    assert!(matches!(s.finish_calls(&[1, 1], 5.0), Err(CoreError::DuplicateCall(1))));
    assert!(s.schedule(4.0, 1).unwrap_err().to_string().contains("time went backwards"));
    assert!(matches!(s.schedule(f64::NAN, 1), Err(CoreError::InvalidArgument(_))));
    s.schedule(5.0, 1).unwrap();
    assert!(matches!(s.record_service(&[1], -1.0, 5.0), Err(CoreError::InvalidArgument(_))));
    assert_eq!(s.len(), 1);
}

/// MLFQ with calls 1, 2, 3 running in queues 2, 1 and 0 and a full batch of three.
fn three_running_in_queues_2_1_0() -> Scheduler {
    let mut s = scheduler(Policy::Mlfq);
    for call in 1..=3 {
        s.add_call(call, call, 0.0, &[]).unwrap();
    }
    s.schedule(0.0, 3).unwrap();
    s.record_service(&[1, 2], 1.0, 1.0).unwrap(); // both used up queue 0's quantum
    s.record_service(&[1], 1.0, 2.0).unwrap(); // and call 1 queue 1's
    let queues: Vec<usize> = (1..=3).map(|c| s.call(c).unwrap().queue).collect();
    assert_eq!(queues, vec![2, 1, 0]);
    s
}

#[test]
fn a_protected_victim_is_skipped_for_the_next_least_urgent() {
    let mut s = three_running_in_queues_2_1_0();
    s.add_call(4, 4, 2.0, &[]).unwrap();
    s.add_call(5, 5, 2.0, &[]).unwrap();
    let decision = s.schedule_protecting(2.0, 3, &[1]).unwrap().clone();
    assert_eq!((decision.admit, decision.preempt), (vec![4], vec![2]), "call 1 is protected, call 2 is next");
    assert_eq!(s.call(1).unwrap().state, CallState::Running);
    assert_eq!(s.call(5).unwrap().state, CallState::Waiting, "call 3 runs in queue 0, as urgent as call 5");
    // Protection lasts one decision.
    let decision = s.schedule(2.0, 3).unwrap().clone();
    assert_eq!((decision.admit, decision.preempt), (vec![5], vec![1]));
}

#[test]
fn when_every_less_urgent_call_is_protected_nothing_is_preempted() {
    for protected in [vec![1, 2], vec![2, 1, 3]] {
        let mut s = three_running_in_queues_2_1_0();
        s.add_call(4, 4, 2.0, &[]).unwrap();
        let decision = s.schedule_protecting(2.0, 3, &protected).unwrap();
        assert!(decision.admit.is_empty() && decision.preempt.is_empty(), "protected {protected:?}");
        assert_eq!(s.stats().preemptions, 0);
    }
}

#[test]
fn protection_does_not_override_capacity_or_free_slots() {
    let mut s = three_running_in_queues_2_1_0();
    assert_eq!(s.schedule_protecting(2.0, 2, &[1]).unwrap().preempt, vec![1], "capacity still binds");
    s.add_call(4, 4, 2.0, &[]).unwrap();
    assert_eq!(s.schedule_protecting(2.0, 3, &[2, 3]).unwrap().admit, vec![4], "free slots still fill");
}

#[test]
fn a_protected_call_can_still_be_demoted_requeued_and_finished() {
    let mut s = three_running_in_queues_2_1_0();
    s.add_call(4, 4, 2.0, &[]).unwrap();
    // Demoted from queue 2 to 3 in the very step that protects it: still not preempted.
    let input = StepInput { ran: &[1], ran_seconds: 2.0, protected: &[1, 2], ..StepInput::default() };
    assert!(s.step(input, 4.0, 3).unwrap().preempt.is_empty());
    assert_eq!(s.call(1).unwrap().queue, 3);
    s.requeue(&[1], 4.0).unwrap();
    assert_eq!(s.schedule_protecting(4.0, 3, &[2, 3]).unwrap().admit, vec![4], "the requeued call waits in queue 3");
    let input = StepInput { finished: &[2], protected: &[3], ..StepInput::default() };
    assert_eq!(s.step(input, 5.0, 3).unwrap().admit, vec![1]);
    assert!(s.call(2).is_none());
}

#[test]
fn bad_protected_ids_are_rejected_and_change_nothing() {
    let mut s = three_running_in_queues_2_1_0();
    s.add_call(4, 4, 2.0, &[]).unwrap();
    let cases: [(&[u64], CoreError); 3] = [
        (&[9], CoreError::UnknownCall(9)),
        (&[4], CoreError::WrongState { call: 4, expected: "running" }),
        (&[2, 1, 2], CoreError::DuplicateCall(2)),
    ];
    for (protected, expected) in cases {
        assert_eq!(s.schedule_protecting(10.0, 3, protected).unwrap_err(), expected);
        let input = StepInput { ran_all: true, ran_seconds: 1.0, protected, ..StepInput::default() };
        assert_eq!(s.step(input, 10.0, 3).unwrap_err(), expected);
    }
    // Judged after the step's own changes: a call finished in it is gone, one arriving waits.
    let input = StepInput { ran_all: true, ran_seconds: 1.0, finished: &[3], protected: &[3], ..StepInput::default() };
    assert_eq!(s.step(input, 10.0, 3).unwrap_err(), CoreError::UnknownCall(3));
    let new_calls = [NewCall { call: 5, program: 5, parents: &[] }];
    let input = StepInput { new_calls: &new_calls, protected: &[5], ..StepInput::default() };
    assert_eq!(s.step(input, 10.0, 3).unwrap_err(), CoreError::WrongState { call: 5, expected: "running" });
    assert_eq!((s.len(), s.num_running(), s.stats().preemptions), (4, 3, 0));
    assert_eq!(s.call(1).unwrap().service, 2.0, "no service recorded by a rejected step");
    s.schedule(2.0, 3).unwrap(); // time did not move on to 10
}

#[test]
fn a_step_credits_every_running_call_except_the_named_ones_their_own_amounts() {
    let mut s = scheduler(Policy::Plas);
    for call in 1..=3 {
        s.add_call(call, 100 + call, 0.0, &[]).unwrap();
    }
    assert_eq!(s.schedule(0.0, 3).unwrap().admit.len(), 3);
    s.record_service_running_except(0.5, &[2], &[1.5], 1.0).unwrap();
    let service = |s: &Scheduler, call| s.call(call).unwrap().service;
    assert_eq!((service(&s, 1), service(&s, 2), service(&s, 3)), (0.5, 1.5, 0.5));
    assert_eq!(s.call(2).unwrap().queue, 1, "the named call's own amount demotes it, the base does not");
    assert_eq!(s.call(1).unwrap().queue, 0);
    // Validated before anything changes: a waiting or unknown call, or lists of unequal length.
    s.add_call(4, 104, 1.0, &[]).unwrap();
    assert!(matches!(
        s.record_service_running_except(0.5, &[4], &[1.0], 2.0),
        Err(CoreError::WrongState { call: 4, .. })
    ));
    assert!(s.record_service_running_except(0.5, &[1, 2], &[1.0], 2.0).is_err());
    assert!(s.record_service_running_except(0.5, &[1], &[-1.0], 2.0).is_err());
    assert_eq!((service(&s, 1), service(&s, 2), service(&s, 3)), (0.5, 1.5, 0.5));
}

#[test]
fn a_step_tells_the_named_calls_apart_however_many_are_named() {
    // Up to a few named calls are found by a scan of the list, more by a stamp on each call.
    for named in [1, 3, 9, 11] {
        let mut s = scheduler(Policy::Plas);
        for call in 1..=12 {
            s.add_call(call, 100 + call, 0.0, &[]).unwrap();
        }
        assert_eq!(s.schedule(0.0, 12).unwrap().admit.len(), 12);
        let listed: Vec<u64> = (1..=named).collect();
        let amounts: Vec<f64> = listed.iter().map(|&call| 0.01 * call as f64).collect();
        s.record_service_running_except(0.5, &listed, &amounts, 1.0).unwrap();
        for call in 1..=12 {
            let expected = if call <= named { 0.01 * call as f64 } else { 0.5 };
            assert_eq!(s.call(call).unwrap().service, expected, "call {call} of 12 with {named} named");
        }
    }
}
