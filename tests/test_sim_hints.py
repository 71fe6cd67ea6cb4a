"""The simulator's clients can tell the core how many calls each program has left: a program
nearly done then goes before one with as much service and more to do; budgets stay within the
slack asked for; the option is refused where no core hears it."""

import pytest

from autellix.sim.presets import EngineConfig
from autellix.sim.simulator import CLIENT_CALLS_LEFT, Simulator, simulate
from autellix.sim.trace import Call, Program
from autellix.sim.workloads import generate

ONE_SLOT = EngineConfig(name="one slot", step_base=0.01, step_per_token=1e-5, step_per_kv_token=0.0, max_running=1,
                        token_budget=512, kv_tokens=100_000)


def chain(name: str, arrival: float, calls: int) -> Program:
    steps = [Call("s0", 50, 10)] + [Call(f"s{i}", 50, 10, (f"s{i - 1}",)) for i in range(1, calls)]
    return Program(name, arrival, steps)


def test_told_the_calls_left_plas_runs_the_program_nearly_done_first():
    # "long" (5 calls) starts first; "short" (2 calls) arrives just after. Once each has had one
    # call both have the same service, and plas runs the older program's second call first; told
    # that short has one call left and long four, it runs short's.
    progs = [chain("long", 0.0, 5), chain("short", 0.001, 2)]
    plain = simulate(progs, "plas", config=ONE_SLOT)
    told = simulate(progs, "plas", config=ONE_SLOT, scheduler_options={CLIENT_CALLS_LEFT: 0.0})
    long, short = plain.programs
    assert long.calls[1].start < short.calls[1].start
    long, short = told.programs
    assert short.calls[1].start < long.calls[1].start
    assert short.finish < long.finish


def test_budgets_are_the_calls_made_up_to_one_plus_the_slack_times_them():
    progs = generate("bfcl", 2.0, 200, seed=3)
    sim = Simulator(progs, "plas", config=ONE_SLOT, scheduler_options={CLIENT_CALLS_LEFT: 2.0})
    ratios = [p.budget / len(p.calls) for p in sim.programs]
    assert all(1.0 <= r <= 3.0 + 1.0 / len(p.calls) for r, p in zip(ratios, sim.programs))
    assert max(ratios) > 2.0 > 1.5 > min(ratios)


@pytest.mark.parametrize("policy, slack, why", [("srpt", 0.0, "not one of its"), ("plas", -1.0, ">= 0"),
                                                ("plas", float("inf"), ">= 0"), ("plas", "2", ">= 0")])
def test_the_option_is_refused_where_it_cannot_be_told(policy, slack, why):
    with pytest.raises(ValueError, match=why):
        simulate([chain("p", 0.0, 2)], policy, config=ONE_SLOT, scheduler_options={CLIENT_CALLS_LEFT: slack})
