"""The scaling search (autellix.sim.scaling, bench/sim/scaling.py): the bracketing/bisection
guarantees, the early stop's soundness, accumulated-context workloads; tiny, seeded configs."""

import math

import pytest
from autellix.sim.scaling import (
    accumulate_context,
    make_programs,
    measure_point,
    scaling_curve,
    scaling_rows,
    search_rate,
)
from autellix.sim.trace import Call, Program
from autellix.sim.workloads import generate


def _step(threshold: float, calls: list[float]):
    def measure(rate: float) -> dict:
        calls.append(rate)
        return {"search_latency": 1.0 if rate <= threshold else 10.0}

    return measure


@pytest.mark.parametrize("start", [0.3, 1.0, 3.3, 50.0])
def test_search_brackets_then_bisects_a_step(start):
    calls: list[float] = []
    s = search_rate(
        _step(3.3, calls), target=2.0, start=start, rel_tol=0.05, max_evals=30
    )
    assert s.exact
    assert s.rate <= 3.3 < s.upper
    assert s.upper / s.rate <= 1.05
    assert len(calls) == len(set(calls)) == len(s.points)  # no rate simulated twice
    assert s.point(s.rate)["ok"] and not s.point(s.upper)["ok"]


def test_search_stops_at_max_evals():
    calls: list[float] = []
    s = search_rate(_step(3.3, calls), target=2.0, start=50.0, max_evals=6)
    assert len(calls) == 6 and s.rate == 0.0 and s.upper == min(calls) and not s.exact


def test_search_floor_and_cap():
    never = search_rate(
        lambda r: {"search_latency": math.inf}, 1.0, start=4.0, floor=1.0
    )
    assert never.rate == 0.0 and not never.exact
    assert min(p["rate"] for p in never.points) >= 1.0
    always = search_rate(lambda r: {"search_latency": 0.0}, 1.0, start=1.0, cap=3.0)
    assert always.upper is None and not always.exact and always.rate == 3.0


def test_accumulate_context_chains_the_parent_context():
    p = Program(
        "p",
        0.0,
        [
            Call("a", 100, 10),
            Call("b", 50, 5, ("a",), 0.1, 40),
            Call("c", 30, 7, ("b",), 0.0, 20),
        ],
        system_tokens=16,
    )
    (q,) = accumulate_context([p])
    a, b, c = q.calls
    assert (a.prompt_tokens, a.prefix_tokens) == (100, 0)
    assert (b.prompt_tokens, b.prefix_tokens) == (
        110 + 10,
        110,
    )  # a's context + 10 new tokens
    assert (c.prompt_tokens, c.prefix_tokens) == (125 + 10, 125)
    assert q.system_tokens == 16 and [x.output_tokens for x in q.calls] == [10, 5, 7]
    (capped,) = accumulate_context([p], max_context=120)
    assert all(x.prompt_tokens + x.output_tokens < 120 for x in capped.calls)


def test_make_programs_is_generate_at_that_rate():
    ours = make_programs("bfcl", 3.7, 40, 2)
    ref = generate("bfcl", 3.7, 40, 2)
    assert [p.calls for p in ours] == [p.calls for p in ref]
    assert [p.arrival for p in ours] == pytest.approx(
        [p.arrival for p in ref], rel=1e-12
    )
    longer = make_programs("bfcl-accum", 1.0, 60, 2)
    assert [p.calls for p in make_programs("bfcl-accum", 5.0, 30, 2)] == [
        p.calls for p in longer[:30]
    ]


@pytest.fixture(scope="module")
def tiny_curve():
    return scaling_curve(
        "bfcl-accum",
        [1, 2],
        ["autellix", "round-robin"],
        [0],
        window=20.0,
        target_x=3.0,
        min_programs=20,
    )


def test_tiny_curve_meets_the_target_and_the_next_rate_up_does_not(tiny_curve):
    target = tiny_curve["target"]
    assert target == pytest.approx(3.0 * tiny_curve["unloaded"]["mean_token_latency"])
    assert [(s["engines"], s["balancer"]) for s in tiny_curve["searches"]] == [
        (1, None),
        (2, "autellix"),
        (2, "round-robin"),
    ]
    for s in tiny_curve["searches"]:
        assert s["exact"] and s["rate"] > 0 and s["upper"] / s["rate"] <= 1.05
        at = next(p for p in s["points"] if p["rate"] == s["rate"])
        above = next(p for p in s["points"] if p["rate"] == s["upper"])
        assert at["ok"] and not at["missed_early"] and at["completed"] == at["programs"]
        assert at["search_latency"] == at["mean_token_latency"] <= target
        assert not above["ok"] and above["search_latency"] > target
        # every point the search called a miss is one: none met the target at a higher rate
        assert all(p["ok"] == (p["search_latency"] <= target) for p in s["points"])


def test_early_stop_is_sound(tiny_curve):
    target = tiny_curve["target"]
    stopped = [
        p for s in tiny_curve["searches"] for p in s["points"] if p["missed_early"]
    ]
    assert stopped
    p = stopped[0]
    full = measure_point(
        "bfcl-accum",
        p["rate"],
        p["engines"],
        p["balancer"] or "autellix",
        0,
        20.0,
        min_programs=20,
    )
    assert not full["missed_early"] and full["completed"] == full["programs"]
    assert full["mean_token_latency"] >= p["search_latency"] > target


def test_tiny_curve_is_deterministic(tiny_curve):
    again = scaling_curve(
        "bfcl-accum",
        [1, 2],
        ["autellix", "round-robin"],
        [0],
        window=20.0,
        target_x=3.0,
        min_programs=20,
    )
    assert [s["rate"] for s in again["searches"]] == [
        s["rate"] for s in tiny_curve["searches"]
    ]
    assert [[p["rate"] for p in s["points"]] for s in again["searches"]] == [
        [p["rate"] for p in s["points"]] for s in tiny_curve["searches"]
    ]


def test_rows(tiny_curve):
    rows = scaling_rows(tiny_curve, ["autellix", "round-robin"])
    one, two = rows
    assert one["engines"] == 1 and two["engines"] == 2
    assert one["autellix"]["rate"] == one["round-robin"]["rate"]
    assert one["autellix"]["efficiency"] == pytest.approx(1.0)
    r = two["autellix"]["rate"] / two["round-robin"]["rate"]
    assert two["autellix/round-robin"] == pytest.approx(r)
    assert two["autellix"]["efficiency"] == pytest.approx(
        two["autellix"]["rate"] / (2 * one["autellix"]["rate"])
    )
    assert 0 <= two["autellix"]["prefix_hit_rate"] <= 1
