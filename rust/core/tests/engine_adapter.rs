//! The engine adapter: request ids, sessions and lineage onto calls and programs, and the
//! per-step bookkeeping the vLLM plug-in relies on.

use autellix_sched::*;

const SESSIONS: u64 = 1 << 62;
const SOLO: u64 = 1 << 63;

fn setup(policy: Policy, session_memory: usize) -> (EngineAdapter, Scheduler) {
    let config = AdapterConfig {
        session_programs: SESSIONS,
        solo_programs: SOLO,
        session_memory,
        parent_memory: 64,
        prefill_tokens_per_unit: 128.0,
    };
    let scheduler = Scheduler::new(SchedulerConfig::new(policy, None, None, None, None).unwrap());
    (EngineAdapter::new(config).unwrap(), scheduler)
}

fn add(adapter: &mut EngineAdapter, request: &str, program: Option<u64>, session: Option<&str>) -> Arrival {
    adapter.add_request(request, program, session, &[]).unwrap()
}

#[test]
fn programs_come_from_the_client_then_the_session_then_the_call_alone() {
    let (mut adapter, _) = setup(Policy::Plas, 2);
    assert_eq!(add(&mut adapter, "a", Some(7), Some("s")).program, 7, "a client id wins over a session");
    let first = add(&mut adapter, "b", None, Some("s"));
    let again = add(&mut adapter, "c", None, Some("s"));
    assert!(first.new_session && !again.new_session);
    assert_eq!(first.program, again.program);
    assert!((SESSIONS..SOLO).contains(&first.program));
    assert_eq!(
        add(&mut adapter, "d", Some(SESSIONS), None).program,
        SOLO,
        "an id outside the client range is not a client's"
    );
    assert_eq!(add(&mut adapter, "e", None, Some("")).program, SOLO + 1);
    // Memory of two sessions: touching "s" keeps it, "t" is the oldest when "v" arrives.
    add(&mut adapter, "f", None, Some("t"));
    add(&mut adapter, "g", None, Some("s"));
    add(&mut adapter, "h", None, Some("v"));
    assert_eq!(add(&mut adapter, "i", None, Some("s")).program, first.program);
    let back = add(&mut adapter, "j", None, Some("t"));
    assert!(back.new_session, "a forgotten session starts a new program");
    assert_ne!(back.program, first.program);
}

#[test]
fn a_live_request_id_cannot_arrive_twice() {
    let (mut adapter, _) = setup(Policy::Plas, 8);
    add(&mut adapter, "a", Some(1), None);
    assert!(matches!(adapter.add_request("a", Some(1), None, &[]), Err(CoreError::InvalidArgument(_))));
    assert_eq!(adapter.num_requests(), 1);
}

#[test]
fn a_live_calls_handle_is_kept_until_its_request_is_freed() {
    let config = AdapterConfig {
        session_programs: SESSIONS,
        solo_programs: SOLO,
        session_memory: 8,
        parent_memory: 8,
        prefill_tokens_per_unit: 128.0,
    };
    let mut adapter: EngineAdapter<&str> = EngineAdapter::with_handles(config).unwrap();
    let a = adapter.add_request_with("a", Some(1), None, &[], "request a").unwrap();
    let b = adapter.add_request_with("b", Some(1), None, &[], "request b").unwrap();
    assert_eq!((adapter.handle(a.call), adapter.handle(b.call)), (Some(&"request a"), Some(&"request b")));
    assert!(adapter.is_live("a") && adapter.request_id(a.call) == Some("a"));
    assert_eq!(adapter.free_request("a"), Some(a.call));
    assert_eq!((adapter.handle(a.call), adapter.request_id(a.call)), (None, None));
    assert!(!adapter.is_live("a") && adapter.is_live("b"));
}

#[test]
fn parents_are_named_by_either_request_id_and_only_within_the_program() {
    let (mut adapter, mut scheduler) = setup(Policy::Atlas, 8);
    let parent = adapter.add_request("p-1234abcd", Some(1), None, &[]).unwrap();
    let other = add(&mut adapter, "q", Some(2), None);
    adapter.apply(&mut scheduler, 0.0);
    let admitted = adapter.decide(&mut scheduler, 0.0, 2, &[]).unwrap().admit;
    assert_eq!(admitted, vec!["p-1234abcd".to_string(), "q".to_string()]);
    adapter.ran_all(5.0);
    adapter.free_request("p-1234abcd");
    adapter.free_request("q");
    assert!(adapter.apply(&mut scheduler, 1.0).is_empty());
    assert_eq!(adapter.call_id("p"), Some(parent.call), "finished calls stay nameable");
    let child = adapter.add_request("c", Some(1), None, &["p", "q"]).unwrap();
    assert!(adapter.apply(&mut scheduler, 1.0).is_empty(), "q is of another program: ignored, not refused");
    assert_eq!(scheduler.call(child.call).unwrap().priority, 5.0, "critical path through p only");
    assert_ne!(other.program, child.program);
}

#[test]
fn a_request_freed_before_the_step_never_reaches_the_scheduler() {
    let (mut adapter, mut scheduler) = setup(Policy::Plas, 8);
    add(&mut adapter, "a", Some(1), None);
    assert!(adapter.free_request("a").is_some());
    assert!(adapter.free_request("a").is_none(), "freed once");
    assert!(adapter.apply(&mut scheduler, 0.0).is_empty());
    assert_eq!(scheduler.stats().added, 0);
    assert_eq!(adapter.num_requests(), 0);
}

#[test]
fn a_step_credits_what_ran_and_the_decision_is_in_request_ids() {
    let (mut adapter, mut scheduler) = setup(Policy::Plas, 8);
    for request in ["a", "b", "c"] {
        add(&mut adapter, request, Some(1), None);
    }
    adapter.apply(&mut scheduler, 0.0);
    let decision = adapter.decide(&mut scheduler, 0.0, 2, &[]).unwrap();
    assert_eq!(decision.admit, vec!["a".to_string(), "b".to_string()]);
    assert!(adapter.counts_match(&scheduler, 2));
    adapter.ran_requests(&["a", "unknown"], 3.0);
    adapter.apply(&mut scheduler, 3.0);
    assert_eq!(scheduler.call(adapter.call_id("a").unwrap()).unwrap().service, 3.0);
    assert_eq!(scheduler.call(adapter.call_id("b").unwrap()).unwrap().service, 0.0);
    adapter.ran_all(2.0);
    adapter.apply(&mut scheduler, 5.0);
    assert_eq!(scheduler.call(adapter.call_id("b").unwrap()).unwrap().service, 2.0);
    // Own work: "a" decoded one token, "b" prefilled 257 tokens (1 + 256 / 128 units).
    adapter.ran_tokens([("a", 1), ("b", 257), ("unknown", 9)]);
    assert!(adapter.apply(&mut scheduler, 6.0).is_empty());
    assert_eq!(scheduler.call(adapter.call_id("a").unwrap()).unwrap().service, 6.0);
    assert_eq!(scheduler.call(adapter.call_id("b").unwrap()).unwrap().service, 5.0);
}

#[test]
fn calls_the_engine_did_not_start_go_back_and_counts_tell_when_none_did() {
    let (mut adapter, mut scheduler) = setup(Policy::Plas, 8);
    for request in ["a", "b"] {
        add(&mut adapter, request, Some(1), None);
    }
    adapter.apply(&mut scheduler, 0.0);
    adapter.decide(&mut scheduler, 0.0, 2, &[]).unwrap();
    // The engine started only "a" ("b" waits for its grammar, say).
    assert!(!adapter.counts_match(&scheduler, 1));
    assert_eq!(adapter.requeue_all_but(&mut scheduler, &["a"], 0.0).unwrap(), 1);
    assert!(adapter.counts_match(&scheduler, 1));
    assert_eq!(scheduler.call(adapter.call_id("b").unwrap()).unwrap().state, CallState::Waiting);
    // A freed running call is no longer counted, and is not requeued: it finishes at the next step.
    adapter.free_request("a");
    assert_eq!(adapter.num_running(&scheduler), 0);
    assert_eq!(adapter.requeue_all_but(&mut scheduler, &[], 0.0).unwrap(), 0);
    assert!(adapter.apply(&mut scheduler, 1.0).is_empty());
    assert_eq!(scheduler.stats().finished, 1);
}

#[test]
fn an_ended_programs_requests_are_never_reported_again() {
    let (mut adapter, mut scheduler) = setup(Policy::Plas, 8);
    add(&mut adapter, "a", Some(1), None);
    add(&mut adapter, "b", Some(2), None);
    adapter.apply(&mut scheduler, 0.0);
    adapter.decide(&mut scheduler, 0.0, 2, &[]).unwrap();
    assert!(adapter.end_program(&mut scheduler, 1));
    assert!(!adapter.end_program(&mut scheduler, 1), "already gone");
    assert!(!adapter.counts_match(&scheduler, 1), "a live request of an ended program may still run");
    adapter.free_request("a");
    adapter.free_request("b");
    assert!(adapter.apply(&mut scheduler, 1.0).is_empty(), "the ended program's call is not finished twice");
    assert_eq!(scheduler.stats().finished, 1);
    assert!(adapter.counts_match(&scheduler, 0));
}

#[test]
fn refused_parents_leave_the_call_arriving_without_them() {
    let (mut adapter, mut scheduler) = setup(Policy::Atlas, 8);
    add(&mut adapter, "p", Some(1), None);
    adapter.apply(&mut scheduler, 0.0);
    // The program ends in the scheduler; its id lives on in the lineage, its calls do not.
    adapter.end_program(&mut scheduler, 1);
    adapter.free_request("p");
    adapter.add_request("c", Some(1), None, &["p"]).unwrap();
    let refused = adapter.apply(&mut scheduler, 1.0);
    assert!(!refused.is_empty(), "the unknown parent is reported");
    assert_eq!(adapter.stats().rejected_batches, 1);
    assert_eq!(scheduler.call(adapter.call_id("c").unwrap()).unwrap().state, CallState::Waiting);
}

#[test]
fn protection_is_named_by_request_and_may_swap_sees_a_more_urgent_waiting_call() {
    let config = SchedulerConfig::new(Policy::Plas, Some(vec![1.0]), None, Some(f64::INFINITY), None).unwrap();
    let mut scheduler = Scheduler::new(config);
    let adapter_config = AdapterConfig {
        session_programs: SESSIONS,
        solo_programs: SOLO,
        session_memory: 8,
        parent_memory: 8,
        prefill_tokens_per_unit: 128.0,
    };
    let mut adapter = EngineAdapter::new(adapter_config).unwrap();
    add(&mut adapter, "heavy", Some(1), None);
    adapter.apply(&mut scheduler, 0.0);
    adapter.decide(&mut scheduler, 0.0, 1, &[]).unwrap();
    adapter.ran_all(2.0); // past the first quantum: demoted
    adapter.apply(&mut scheduler, 2.0);
    assert!(!scheduler.may_swap(), "nothing waits");
    add(&mut adapter, "light", Some(2), None);
    adapter.apply(&mut scheduler, 2.0);
    assert!(scheduler.may_swap());
    let guarded = adapter.decide(&mut scheduler, 2.0, 1, &["heavy"]).unwrap();
    assert!(guarded.preempt.is_empty() && guarded.admit.is_empty(), "protected: no swap");
    let swapped = adapter.decide(&mut scheduler, 2.0, 1, &[]).unwrap();
    assert_eq!((swapped.admit, swapped.preempt), (vec!["light".to_string()], vec!["heavy".to_string()]));
}

#[test]
fn bad_id_ranges_are_refused() {
    let config = AdapterConfig {
        session_programs: 10,
        solo_programs: 5,
        session_memory: 1,
        parent_memory: 1,
        prefill_tokens_per_unit: 128.0,
    };
    assert!(matches!(EngineAdapter::new(config), Err(CoreError::InvalidConfig(_))));
}
