"""The Python surface of autellix_core: arguments, results, errors and the stub."""

import math
import subprocess
import sys
from pathlib import Path

import autellix_core as core
import pytest


def test_defaults_are_the_documented_ones():
    s = core.Scheduler()
    assert s.policy == "plas"
    assert s.queue_boundaries == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    assert s.quanta == [1.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 32.0]
    assert (s.num_queues, s.starvation_ratio, s.stale_after) == (8, 4.0, 900.0)
    assert core.Scheduler("fcfs").num_queues == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policy": "lifo"}, "unknown policy"),
        ({"queue_boundaries": [2.0, 1.0]}, "strictly increasing"),
        ({"queue_boundaries": [1.0], "quanta": [1.0]}, "one value per queue"),
        ({"starvation_ratio": -1.0}, "starvation_ratio"),
        ({"policy": "fcfs", "quanta": [1.0]}, "single queue"),
    ],
)
def test_bad_configuration_raises_config_error(kwargs, message):
    with pytest.raises(core.ConfigError, match=message):
        core.Scheduler(**kwargs)


def test_a_light_program_overtakes_a_heavy_one():
    s = core.Scheduler("plas", queue_boundaries=[1.0, 2.0, 4.0])
    s.add_call(1, 100, 0.0)
    assert s.schedule(0.0, 1).admit == [1]
    s.record_service([1], 3.0, 3.0)
    s.finish_call(1, 3.0)
    s.add_call(2, 100, 3.0)
    s.add_call(3, 200, 3.0)
    assert (s.queue_of(2), s.queue_of(3)) == (2, 0)
    decision = s.schedule(3.0, 1)
    assert decision.admit == [3]
    assert decision.preempt == []
    info = s.program_info(100)
    assert info["attained_service"] == 3.0 and info["calls"] == [2] and info["active_calls"] == 1
    assert s.call_info(2) == {
        "program_id": 100,
        "state": "waiting",
        "queue": 2,
        "priority": 3.0,
        "service": 0.0,
        "waiting_time": 0.0,
    }


def test_a_program_told_to_have_little_left_overtakes_one_with_less_service():
    s = core.Scheduler("plas", queue_boundaries=[1.0, 2.0, 4.0])
    for call, program in ((1, 100), (2, 200)):
        s.add_call(call, program, 0.0)
        assert s.schedule(0.0, 1).admit == [call]
        s.record_service([call], 1.5 if program == 100 else 0.5, 0.0)
        s.finish_call(call, 0.0)
    s.set_calls_left(100, 1, 0.0)  # 1 call of its 1.5 mean: queue 1
    s.set_calls_left(200, 8, 0.0)  # 8 of 0.5: 4, queue 3 (plas alone: 0.5, queue 0)
    assert s.program_info(100)["calls_to_come"] == 1
    s.add_call(3, 200, 0.0)
    s.add_call(4, 100, 0.0)
    assert (s.queue_of(3), s.queue_of(4)) == (3, 1)
    assert s.schedule(0.0, 1).admit == [4]
    assert s.program_info(100)["calls_to_come"] == 0 and s.call_info(4)["priority"] == 1.5


def test_a_count_of_calls_left_below_one_is_refused_and_changes_nothing():
    s = core.Scheduler()
    with pytest.raises(core.InvalidArgumentError, match="calls_left of program 7 must be at least 1"):
        s.set_calls_left(7, 0, 0.0)
    with pytest.raises(OverflowError):
        s.set_calls_left(7, -1, 0.0)
    assert s.num_programs == 0
    s.add_call(1, 7, 5.0)
    with pytest.raises(core.InvalidArgumentError, match="time went backwards"):
        s.set_calls_left(7, 2, 1.0)
    assert s.program_info(7)["calls_to_come"] is None


def test_step_equals_the_separate_operations():
    one, many = core.Scheduler("atlas"), core.Scheduler("atlas")
    for s in (one, many):
        s.add_calls([1, 2], [7, 7], 0.0)
        s.schedule(0.0, 2)
    decision = one.step(2.0, 2, ran=[1, 2], ran_seconds=1.5, finished=[1], new_calls=[3], new_programs=[7], new_parents=[[1]])
    many.record_service([1, 2], 1.5, 2.0)
    many.finish_calls([1], 2.0)
    many.add_call(3, 7, 2.0, parents=[1])
    assert decision.admit == many.schedule(2.0, 2).admit == [3]
    assert one.call_info(3) == many.call_info(3)
    assert one.call_info(3)["priority"] == 1.5


def test_errors_are_typed_clear_and_change_nothing():
    s = core.Scheduler()
    s.add_call(1, 1, 1.0)
    with pytest.raises(core.DuplicateCallError, match="call 1 is already live"):
        s.add_calls([2, 1], [1, 1], 1.0)
    assert 2 not in s and len(s) == 1
    with pytest.raises(core.CallStateError, match="call 1 is not running"):
        s.record_service([1], 1.0, 1.0)
    with pytest.raises(core.UnknownCallError, match="unknown call 9"):
        s.finish_call(9, 1.0)
    with pytest.raises(core.UnknownProgramError, match="unknown program 5"):
        s.program_info(5)
    with pytest.raises(core.InvalidArgumentError, match="time went backwards"):
        s.schedule(0.5, 1)
    with pytest.raises(core.InvalidArgumentError, match="parallel lists"):
        s.add_calls([3, 4], [1], 1.0)
    with pytest.raises(core.InvalidArgumentError, match="finite"):
        s.schedule(math.nan, 1)
    for error in (core.UnknownCallError, core.DuplicateCallError, core.ConfigError, core.UnknownParentError):
        assert issubclass(error, core.SchedulerError)
    assert len(s) == 1 and s.num_waiting == 1


def test_rejected_step_records_nothing():
    s = core.Scheduler()
    s.add_call(1, 1, 0.0)
    s.schedule(0.0, 1)
    with pytest.raises(core.UnknownCallError):
        s.step(1.0, 1, ran=[1], ran_seconds=0.5, finished=[42])
    assert s.call_info(1)["service"] == 0.0


def three_running_in_queues_2_1_0():
    s = core.Scheduler("mlfq", queue_boundaries=[1.0, 2.0, 4.0])
    s.add_calls([1, 2, 3], [1, 2, 3], 0.0)
    s.schedule(0.0, 3)
    s.record_service([1, 2], 1.0, 1.0)
    s.record_service([1], 1.0, 2.0)
    assert [s.queue_of(c) for c in (1, 2, 3)] == [2, 1, 0]
    return s


def test_protected_calls_are_not_swapped_out():
    s = three_running_in_queues_2_1_0()
    s.add_call(4, 4, 2.0)
    decision = s.schedule(2.0, 3, protected=[1])
    assert (decision.admit, decision.preempt) == ([4], [2])
    s.add_call(5, 5, 2.0)
    decision = s.step(3.0, 3, ran_all=True, ran_seconds=0.0, protected=(1,))
    assert decision.preempt == [], "the rest run in queue 0, as urgent as call 5"
    assert s.schedule(3.0, 3).preempt == [1], "protection lasts one decision"


def test_bad_protected_ids_raise_typed_errors_and_change_nothing():
    s = core.Scheduler()
    s.add_calls([1, 2], [1, 2], 0.0)
    s.schedule(0.0, 1)
    with pytest.raises(core.UnknownCallError, match="unknown call 9"):
        s.schedule(1.0, 1, protected=[9])
    with pytest.raises(core.CallStateError, match="call 2 is not running"):
        s.schedule(1.0, 1, protected=[2])
    with pytest.raises(core.DuplicateCallError, match="call 1"):
        s.schedule(1.0, 1, protected=[1, 1])
    with pytest.raises(core.UnknownCallError, match="unknown call 1"):
        s.step(1.0, 1, ran=[1], ran_seconds=0.5, finished=[1], protected=[1])
    with pytest.raises(core.CallStateError, match="call 3 is not running"):
        s.step(1.0, 1, ran=[1], ran_seconds=0.5, new_calls=[3], new_programs=[1], protected=[3])
    with pytest.raises(TypeError):
        s.schedule(1.0, 1, protected="1")  # type: ignore[arg-type]
    assert s.running() == [1] and 3 not in s and s.call_info(1)["service"] == 0.0
    assert s.stats()["preemptions"] == 0
    s.schedule(0.0, 1)  # the rejected calls did not move the clock on


def test_wrong_python_types_raise_python_errors_not_panics():
    s = core.Scheduler()
    with pytest.raises(OverflowError):
        s.add_call(-1, 1, 0.0)
    with pytest.raises(TypeError):
        s.add_call("one", 1, 0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        s.record_service("12", 1.0, 0.0)  # type: ignore[arg-type]
    assert len(s) == 0


def test_end_program_returns_its_live_calls():
    s = core.Scheduler()
    s.add_calls([5, 3, 4], [1, 1, 2], 0.0)
    s.schedule(0.0, 1)
    assert s.end_program(1) == [3, 5]
    assert len(s) == 1 and s.queue_lengths()[0] + s.num_running == 1
    with pytest.raises(core.UnknownProgramError):
        s.end_program(1)


def test_anti_starvation_promotes_and_reports_it():
    s = core.Scheduler("plas", queue_boundaries=[1.0, 2.0, 4.0], starvation_ratio=2.0)
    s.add_call(1, 100, 0.0)
    s.schedule(0.0, 1)
    s.record_service([1], 5.0, 5.0)
    s.finish_call(1, 5.0)
    s.add_calls([2, 3], [100, 200], 5.0)
    s.schedule(5.0, 1)
    assert s.schedule(15.0, 1).promoted == [2]
    assert s.queue_of(2) == 0
    assert s.stats()["promotions"] == 1


def test_load_balancer_pins_long_calls_and_spreads_short_ones():
    b = core.LoadBalancer(3, short_call_tokens=100)
    assert (b.num_engines, b.short_call_tokens, b.policy) == (3, 100, "autellix")
    assert [b.route(1, 10), b.route(2, 10)] == [0, 1]
    assert b.route(9, 500) == 2 and b.pinned(9) == 2
    assert b.route(9, 500) == 2
    assert b.loads() == [1, 1, 2]
    b.release(2)
    with pytest.raises(core.InvalidArgumentError, match="does not exist"):
        b.release(3)
    with pytest.raises(core.ConfigError, match="unknown balancer policy"):
        core.LoadBalancer(2, policy="random")  # type: ignore[arg-type]
    rr = core.LoadBalancer(2, policy="round-robin")
    assert [rr.route(1, 1) for _ in range(4)] == [0, 1, 0, 1]


def _adapter(**kwargs):
    from autellix.contract import CALLS_LEFT_KEY, PARENTS_KEY, PROGRAM_KEY, SESSION_KEY, SESSION_PROGRAMS, SOLO_PROGRAMS
    from autellix.work_units import PREFILL_TOKENS_PER_UNIT

    return core.EngineAdapter(
        core.Scheduler("plas", **kwargs), SESSION_PROGRAMS, SOLO_PROGRAMS, PREFILL_TOKENS_PER_UNIT,
        extra_args_keys=(PROGRAM_KEY, SESSION_KEY, PARENTS_KEY, CALLS_LEFT_KEY),
    )


class _Params:
    def __init__(self, extra_args):
        self.extra_args = extra_args


class _Request:
    """The attributes of vLLM's `Request` that `add_vllm_request` reads (the plug-in's tests
    drive it with real ones)."""

    def __init__(self, request_id, session_id=None, extra_args=None, params=True):
        self.request_id = request_id
        self.session_id = session_id
        self.sampling_params = _Params(extra_args) if params else None


def test_engine_adapter_reads_a_requests_program_by_the_contracts_rules():
    from autellix.contract import CALLS_LEFT_KEY, PARENTS_KEY, PROGRAM_KEY, SESSION_KEY, SESSION_PROGRAMS, SOLO_PROGRAMS

    adapter = _adapter()
    # A client's program id wins over any session.
    assert adapter.add_vllm_request(_Request("a", "s1", {PROGRAM_KEY: 7, SESSION_KEY: "s2"})) == (7, None, [])
    # vLLM's session id, else the session key of extra_args: once new, then known.
    program, new_session, ignored = adapter.add_vllm_request(_Request("b", "s1"))
    assert program >= SESSION_PROGRAMS and new_session == "s1" and ignored == []
    assert adapter.add_vllm_request(_Request("c", "", {SESSION_KEY: "s1"})) == (program, None, [])
    # Neither: a program of its own, also with no sampling params at all.
    solo = [adapter.add_vllm_request(_Request(r, params=p))[0] for r, p in (("d", True), ("e", False))]
    assert all(p >= SOLO_PROGRAMS for p in solo) and solo[0] != solo[1]
    # Ids that are no client's are ignored, with a line for the log; the session still counts.
    for bad in (True, -1, SESSION_PROGRAMS, "7", 2.0):
        given, new_session, ignored = adapter.add_vllm_request(_Request(f"bad-{bad!r}", "s1", {PROGRAM_KEY: bad}))
        assert given == program and new_session is None
        assert len(ignored) == 1 and repr(bad) in ignored[0]
    with pytest.raises(core.InvalidArgumentError):
        adapter.add_vllm_request(_Request("a"))
    adapter_without_keys = core.EngineAdapter(core.Scheduler(), SESSION_PROGRAMS, SOLO_PROGRAMS, 128.0)
    with pytest.raises(ValueError, match="extra_args_keys"):
        adapter_without_keys.add_vllm_request(_Request("x"))


def test_engine_adapter_drives_its_scheduler_in_request_ids():
    adapter = _adapter()
    call, program, new_session = adapter.add_request("r1-0123abcd", None, "session-a")
    assert new_session and adapter.call_id("r1") == adapter.call_id("r1-0123abcd") == call
    assert adapter.add_request("r2", None, "session-a")[1] == program
    assert adapter.apply(0.0) == []
    assert adapter.decide(0.0, 1) == (["r1-0123abcd"], [])
    assert adapter.scheduler.num_running == adapter.num_running() == 1
    assert adapter.counts_match(1) and not adapter.counts_match(0)
    adapter.ran_all(2.0)
    adapter.free_request("r1-0123abcd")
    assert adapter.num_finished_pending == 1
    adapter.apply(2.0)
    assert adapter.scheduler.program_info(program)["attained_service"] == 2.0
    assert adapter.request_id(adapter.call_id("r2")) == "r2" and adapter.request_id(call) is None


def test_engine_adapter_reads_a_requests_parents_as_a_list_or_one_id():
    """Under ATLAS a child's priority is its parent's path (the parent's priority plus service):
    the parents were read, whichever way they were given."""
    from autellix.contract import CALLS_LEFT_KEY, PARENTS_KEY, PROGRAM_KEY, SESSION_KEY, SESSION_PROGRAMS, SOLO_PROGRAMS

    adapter = core.EngineAdapter(
        core.Scheduler("atlas"), SESSION_PROGRAMS, SOLO_PROGRAMS, 128.0,
        extra_args_keys=(PROGRAM_KEY, SESSION_KEY, PARENTS_KEY, CALLS_LEFT_KEY),
    )
    adapter.add_vllm_request(_Request("parent", None, {PROGRAM_KEY: 7}))
    adapter.step(0.0, 1)
    adapter.ran_all(5.0)
    for request_id, parents in (("listed", ["parent", "unknown"]), ("one", "parent"), ("none", None), ("odd", 5)):
        _, _, ignored = adapter.add_vllm_request(_Request(request_id, None, {PROGRAM_KEY: 7, PARENTS_KEY: parents}))
        assert ignored == (["parents 5 (expected a list of request ids)"] if parents == 5 else [])
    adapter.apply(5.0)
    priority = {r: adapter.scheduler.call_info(adapter.call_id(r))["priority"] for r in ("listed", "one", "none", "odd")}
    assert priority == {"listed": 5.0, "one": 5.0, "none": 0.0, "odd": 0.0}


def test_engine_adapter_tells_the_scheduler_a_clients_calls_left_before_the_arrivals():
    from autellix.contract import CALLS_LEFT_KEY, PROGRAM_KEY

    adapter = _adapter()
    for request_id, calls_left in (("first", 4), ("sibling", 9), ("bad", 0), ("worse", 2.0), ("bool", True)):
        _, _, ignored = adapter.add_vllm_request(_Request(request_id, None, {PROGRAM_KEY: 7, CALLS_LEFT_KEY: calls_left}))
        assert ignored == ([] if request_id in ("first", "sibling") else [f"calls left {calls_left!r} (expected an int >= 1)"])
    assert adapter.scheduler.num_programs == 0  # told at the next apply, with the arrivals
    adapter.apply(0.0)
    # The first arrival's count, 4, counts the five arrivals: none is left to come.
    assert adapter.scheduler.program_info(7)["calls_to_come"] == 0
    adapter.add_vllm_request(_Request("later", None, {PROGRAM_KEY: 7, CALLS_LEFT_KEY: 3}))
    adapter.apply(1.0)
    assert adapter.scheduler.program_info(7)["calls_to_come"] == 2


def test_engine_adapter_credits_each_call_its_own_work_as_work_units_defines_it():
    from autellix.work_units import call_units, mean_call_units, step_units

    adapter = _adapter()
    for request in ("decoding", "prefilling"):
        adapter.add_request(request, 1, None)
    adapter.apply(0.0)
    adapter.decide(0.0, 2)
    clocks = adapter.ran_tokens({"decoding": 1, "prefilling": 700, "unknown": 5}, 706)
    assert clocks == (step_units(706, 3), mean_call_units(706, 3))
    adapter.apply(1.0)
    service = {r: adapter.scheduler.call_info(adapter.call_id(r))["service"] for r in ("decoding", "prefilling")}
    assert service == {"decoding": call_units(1), "prefilling": call_units(700)}
    assert call_units(1) == 1.0 and call_units(700) > call_units(1)
    with pytest.raises(TypeError):
        adapter.ran_tokens({"decoding": "many"}, 1)  # type: ignore[dict-item]


def test_engine_adapter_credits_a_whole_batch_reading_only_the_prefills_by_name():
    """When every running call can have run (sync scheduling) and the counts match, calls not
    named beside a prefill are credited their one decode token; when the counts do not match,
    only the named calls are credited."""
    from autellix.work_units import call_units

    adapter = _adapter()
    requests = ("a", "b", "c")
    for request in requests:
        adapter.add_request(request, 1, None)
    adapter.apply(0.0)
    adapter.decide(0.0, 3)

    def service():
        return {r: adapter.scheduler.call_info(adapter.call_id(r))["service"] for r in requests}

    adapter.ran_tokens({"a": 1, "b": 1, "c": 1}, 3, True)  # a decode-only step
    adapter.apply(1.0)
    assert service() == {"a": 1.0, "b": 1.0, "c": 1.0}
    adapter.ran_tokens({"a": 1, "b": 300, "c": 1}, 302, True)
    adapter.apply(2.0)
    assert service() == {"a": 2.0, "b": 1.0 + call_units(300), "c": 2.0}
    adapter.ran_tokens({"a": 1, "b": 1}, 2, True)  # c did not run: the counts say so
    adapter.apply(3.0)
    assert service() == {"a": 3.0, "b": 2.0 + call_units(300), "c": 2.0}
    adapter.ran_tokens({"a": 1, "b": 1, "c": 1}, 3, False)  # async scheduling: names are read
    adapter.apply(4.0)
    assert service() == {"a": 4.0, "b": 3.0 + call_units(300), "c": 3.0}


def test_engine_adapter_step_applies_then_decides_in_one_call():
    adapter = _adapter()
    adapter.add_request("r1", 1, None)
    adapter.add_request("r2", 2, None)
    assert adapter.step(0.0, 1) == (["r1"], [], [])
    adapter.free_request("r1")
    assert adapter.step(1.0, 1) == (["r2"], [], [])
    assert adapter.scheduler.num_running == 1 and len(adapter.scheduler) == 1
    with pytest.raises(core.InvalidArgumentError, match="time"):
        adapter.step(0.5, 1)  # the clock went backwards
    assert adapter.scheduler.num_running == 1


def test_engine_adapter_decides_in_the_requests_its_calls_were_added_with():
    """A call added with a request object comes back as that object (vLLM's `Request`, no lookup
    by id); without one, as its request id. Freeing drops the object; freeing a set of ids skips
    unknown ones and counts the finished calls the scheduler will hear of."""

    class Request:  # any object: the adapter only holds it
        def __init__(self, request_id):
            self.request_id = request_id

    adapter = _adapter()
    first, second = Request("r1"), Request("r2")
    call, _, _ = adapter.add_request("r1", 1, None, (), first)
    adapter.add_request("r2", 2, None, (), second)
    adapter.add_request("r3", 3, None)
    admit, preempt, refused = adapter.step(0.0, 2)
    assert admit[0] is first and admit[1] is second and (preempt, refused) == ([], [])
    assert adapter.request(call) is first and adapter.request(12345) is None
    assert adapter.free_requests({"r1", "not-ours"}) == 1
    assert adapter.request(call) is None and adapter.free_requests(["r1"]) == 1  # freed once
    assert adapter.step(1.0, 2)[0] == ["r3"]
    assert adapter.num_finished_pending == 0
    with pytest.raises(TypeError):
        adapter.free_requests([7])  # type: ignore[list-item]


def test_engine_adapter_holds_request_objects_weakly():
    """The engine owns its requests: one it dropped is left out of decisions, not kept alive."""

    class Request:
        pass

    adapter = _adapter()
    kept, dropped = Request(), Request()
    adapter.add_request("kept", 1, None, (), kept)
    dropped_call, _, _ = adapter.add_request("dropped", 2, None, (), dropped)
    del dropped  # its last reference: freed now (no collection, which would reap other tests' garbage)
    assert adapter.request(dropped_call) is None
    admit, _, _ = adapter.step(0.0, 2)
    assert admit == [kept]


def test_record_service_each_credits_each_its_own_and_validates_first():
    s = core.Scheduler()
    s.add_calls([1, 2], [1, 2], 0.0)
    s.schedule(0.0, 2)
    s.record_service_each([1, 2], [0.5, 2.0], 1.0)
    assert (s.call_info(1)["service"], s.call_info(2)["service"]) == (0.5, 2.0)
    with pytest.raises(core.InvalidArgumentError, match="parallel"):
        s.record_service_each([1, 2], [1.0], 1.0)
    with pytest.raises(core.InvalidArgumentError, match="finite"):
        s.record_service_each([1, 2], [1.0, -1.0], 1.0)
    assert (s.call_info(1)["service"], s.call_info(2)["service"]) == (0.5, 2.0)


def test_engine_adapter_errors_are_typed_and_change_nothing():
    adapter = _adapter()
    adapter.add_request("r1", 5, None)
    with pytest.raises(core.InvalidArgumentError, match="already live"):
        adapter.add_request("r1", 5, None)
    with pytest.raises(OverflowError):
        adapter.add_request("r2", -1, None)
    with pytest.raises(TypeError):
        adapter.ran_requests("r1", 1.0)  # type: ignore[arg-type]
    with pytest.raises(core.ConfigError, match="client < session < solo"):
        core.EngineAdapter(core.Scheduler(), 10, 5, 128.0)
    with pytest.raises(core.ConfigError, match="prefill tokens per unit"):
        core.EngineAdapter(core.Scheduler(), 5, 10, 0.0)
    assert adapter.num_requests == 1
    adapter.apply(0.0)
    with pytest.raises(core.InvalidArgumentError, match="backwards"):
        adapter.decide(-1.0, 1)
    assert adapter.decide(0.0, 1) == (["r1"], [])


def test_stub_matches_the_built_module():
    allowlist = Path(__file__).with_name("stubtest_allowlist.txt")
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "autellix_core", "--allowlist", str(allowlist)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_vllm_hooks_used_without_a_live_scheduler_raise_instead_of_crashing():
    hooks = core.VllmHooks(_adapter(), core.AdmissionQueue(), 16, cache_room=0.9)
    with pytest.raises(RuntimeError, match="install"):
        hooks.schedule()

    class Served:  # stands in for the plug-in's scheduler, which owns its hooks
        pass

    served = Served()
    hooks.install(served, Served, print, print)
    del served  # the hooks hold it weakly
    with pytest.raises(RuntimeError, match="gone"):
        hooks.add_request(object())
