"""Random operation sequences through the Rust core and the pure-Python reference must agree
exactly: same decisions, same errors, same books."""

import math

import autellix_core as core
from autellix.reference_scheduler import ReferenceScheduler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROGRAMS = range(5)
PROTECT_BAD = ["protect-unknown", "protect-waiting", "protect-duplicate", "protect-finishing", "protect-arriving"]


def snapshot(s, ids):
    programs = {}
    for program in PROGRAMS:
        try:
            programs[program] = s.program_info(program)
        except core.UnknownProgramError:
            programs[program] = None
    calls = {i: s.call_info(i) for i in ids if i in s}
    return {
        "len": len(s),
        "running": sorted(s.running()),
        "queues": s.queue_lengths(),
        "stats": s.stats(),
        "programs": programs,
        "calls": calls,
    }


def outcome(fn):
    """The result of an operation, or the name of the exception it raised."""
    try:
        result = fn()
    except core.SchedulerError as error:
        return type(error).__name__
    if hasattr(result, "admit"):
        return (result.admit, result.preempt, result.promoted)
    return result


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=st.sampled_from(["fcfs", "mlfq", "plas", "atlas"]),
    beta=st.sampled_from([0.5, 2.0, math.inf]),
    data=st.data(),
)
def test_rust_core_and_python_reference_agree(policy, beta, data):
    kwargs = {"starvation_ratio": beta, "stale_after": 15.0}
    if policy != "fcfs":
        kwargs["queue_boundaries"] = [0.5, 1.5, 4.0]
    rust, ref = core.Scheduler(policy, **kwargs), ReferenceScheduler(policy, **kwargs)
    now, next_id, ids = 0.0, 1, []
    for _ in range(data.draw(st.integers(1, 120), label="operations")):
        kind = data.draw(st.sampled_from(["add", "add", "schedule", "schedule", "serve", "serve-each", "finish", "requeue", "end", "step", "hint", "time", "bad"]))
        running = sorted(ref.running())
        live = [i for i in ids if i in ref]
        if kind == "add":
            program = data.draw(st.sampled_from(PROGRAMS))
            parents = data.draw(st.lists(st.sampled_from(ids), max_size=2)) if ids else []
            op = lambda s, i=next_id, p=program, ps=parents: s.add_call(i, p, now, ps)  # noqa: E731
            ids.append(next_id)
            next_id += 1
        elif kind == "schedule":
            protected = data.draw(st.lists(st.sampled_from(running), unique=True)) if running else []
            op = lambda s, c=data.draw(st.integers(0, 4)), pr=protected: s.schedule(now, c, pr)  # noqa: E731
        elif kind == "serve":
            served = data.draw(st.lists(st.sampled_from(running), unique=True)) if running else []
            op = lambda s, c=served, t=data.draw(st.floats(0, 2)): s.record_service(c, t, now)  # noqa: E731
        elif kind == "serve-each":
            served = data.draw(st.lists(st.sampled_from(running), unique=True)) if running else []
            amounts = data.draw(st.lists(st.floats(0, 2), min_size=len(served), max_size=len(served)))
            op = lambda s, c=served, a=amounts: s.record_service_each(c, a, now)  # noqa: E731
        elif kind == "finish":
            done = data.draw(st.lists(st.sampled_from(live), unique=True, max_size=2)) if live else []
            op = lambda s, c=done: s.finish_calls(c, now)  # noqa: E731
        elif kind == "requeue":
            back = data.draw(st.lists(st.sampled_from(running), unique=True, max_size=2)) if running else []
            op = lambda s, c=back: s.requeue(c, now)  # noqa: E731
        elif kind == "end":
            op = lambda s, p=data.draw(st.sampled_from(PROGRAMS)): s.end_program(p)  # noqa: E731
        elif kind == "step":
            new_program = data.draw(st.sampled_from(PROGRAMS))
            done = data.draw(st.lists(st.sampled_from(live), unique=True, max_size=1)) if live else []
            ran = {"ran_all": True} if data.draw(st.booleans()) else {"ran": running}
            still_running = [i for i in running if i not in done]
            protected = data.draw(st.lists(st.sampled_from(still_running), unique=True)) if still_running else []
            op = lambda s, r=ran, d=done, i=next_id, p=new_program, pr=protected, cap=data.draw(st.integers(0, 4)), t=data.draw(st.floats(0, 1)): s.step(  # noqa: E731
                now, cap, ran_seconds=t, finished=d, new_calls=[i], new_programs=[p], protected=pr, **r
            )
            ids.append(next_id)
            next_id += 1
        elif kind == "hint":  # 0 calls left is refused
            op = lambda s, p=data.draw(st.sampled_from(PROGRAMS)), n=data.draw(st.integers(0, 4)): s.set_calls_left(p, n, now)  # noqa: E731
        elif kind == "time":
            now += data.draw(st.floats(0, 5))
            continue
        else:  # invalid input: both must reject it the same way and change nothing
            bad = data.draw(st.sampled_from(["unknown", "duplicate", "backwards", "negative", "not-running", "parent", *PROTECT_BAD]))
            waiting = sorted(set(live) - set(running))
            op = {
                "unknown": lambda s: s.finish_calls([10_000], now),
                "duplicate": lambda s: s.add_calls([next_id, next_id], [0, 0], now),
                "backwards": lambda s: s.schedule(now - 1.0, 2),
                "negative": lambda s: s.record_service(running[:1], -1.0, now),
                "not-running": lambda s: s.record_service(sorted(set(live) - set(running))[:1] or [10_000], 1.0, now),
                "parent": lambda s: s.add_call(next_id, 0, now, [10_001]),
                # Protected calls must be running as the decision starts: never valid below.
                "protect-unknown": lambda s: s.schedule(now, 2, [10_000]),
                "protect-waiting": lambda s: s.schedule(now, 2, waiting[:1] or [10_000]),
                "protect-duplicate": lambda s: s.schedule(now, 2, running[:1] * 2 or [10_000]),
                "protect-finishing": lambda s: s.step(
                    now, 2, ran_all=True, ran_seconds=0.5, finished=running[:1], protected=running[:1] or [10_000]
                ),
                "protect-arriving": lambda s: s.step(
                    now, 2, ran_all=True, ran_seconds=0.5, new_calls=[next_id], new_programs=[0], protected=[next_id]
                ),
            }[bad]
        before = snapshot(ref, ids)
        result = outcome(lambda: op(rust))
        assert result == outcome(lambda: op(ref)), kind
        assert snapshot(rust, ids) == snapshot(ref, ids), kind
        if kind == "bad" and bad in PROTECT_BAD:
            assert isinstance(result, str) and snapshot(rust, ids) == before, bad


def test_a_hinted_program_starves_at_the_same_moment_in_both():
    """The random sequences seldom reach it: a program told its calls left, with calls finished,
    waiting below the top queue until starved. Both promote it against its told size."""
    promoted_at = {}
    for s in (core.Scheduler("plas", starvation_ratio=2.0, queue_boundaries=[1.0, 2.0, 4.0]),
              ReferenceScheduler("plas", starvation_ratio=2.0, queue_boundaries=[1.0, 2.0, 4.0])):
        s.add_call(1, 100, 0.0)
        s.schedule(0.0, 1)
        s.record_service([1], 5.0, 5.0)
        s.finish_calls([1], 5.0)
        s.set_calls_left(100, 3, 5.0)
        s.add_call(2, 100, 5.0)
        s.add_call(3, 200, 5.0)
        s.schedule(5.0, 1)  # 3 runs; 2 waits against 5 s had + 3 calls of 5 s left
        promoted_at[type(s).__name__] = next(t for t in range(5, 100) if s.schedule(float(t), 1).promoted)
    assert promoted_at == {"Scheduler": 45, "ReferenceScheduler": 45}
