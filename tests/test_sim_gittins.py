"""The Gittins rank matches its closed forms, and the srpt oracle knowing only the distribution of
programs' work ranks by it: finishing a program it has started when sizes are alike, as least
attained service would not."""

import numpy as np
import pytest

from autellix.sim.gittins import GittinsRank
from autellix.sim.presets import EngineConfig
from autellix.sim.simulator import simulate
from autellix.sim.srpt import SrptKnowledge
from autellix.sim.trace import Call, Program

ONE_SLOT = EngineConfig(name="one slot", step_base=0.01, step_per_token=1e-5, step_per_kv_token=0.0, max_running=1,
                        token_budget=512, kv_tokens=100_000)


def test_a_memoryless_size_ranks_at_its_mean_whatever_was_attained():
    rank = GittinsRank(np.random.default_rng(0).exponential(10.0, 20_000))
    for attained in (0.0, 5.0, 10.0, 30.0):
        assert rank(attained) == pytest.approx(10.0, rel=0.15)


def test_two_sizes_rank_by_the_chance_of_ending_soon():
    rank = GittinsRank([1.0] * 900 + [100.0] * 100)
    assert rank(0.0) == pytest.approx(1.0 / 0.9)  # budget 1: nine in ten end, using 1 each
    assert rank(1.0) == pytest.approx(99.0)  # past the short size, only the long one is left
    assert rank(100.0) == 0.0  # longer than every program seen


def test_a_known_size_ranks_by_what_is_left_as_srpt_does():
    rank = GittinsRank([50.0] * 100)
    assert [rank(a) for a in (0.0, 20.0, 49.0)] == pytest.approx([50.0, 30.0, 1.0])


def test_a_heavy_tail_ranks_programs_that_ran_longer_later_as_least_attained_service_does():
    rank = GittinsRank(np.random.default_rng(0).pareto(1.5, 20_000) + 1.0)
    ranks = [rank(a) for a in (1.5, 3.0, 6.0, 12.0)]
    assert ranks == sorted(ranks)


@pytest.mark.parametrize("totals", [[], [1.0, float("inf")], [-1.0, 2.0]])
def test_it_needs_finite_non_negative_totals(totals):
    with pytest.raises(ValueError, match="total work"):
        GittinsRank(totals)


def test_knowing_programs_are_alike_the_oracle_finishes_the_program_it_started():
    # One slot; two programs of two equal calls arrive together. Each program's size is known to
    # be the same, so the one that has had work has less left: Gittins runs a's second call next.
    # plas ranks by attained work and starts b first.
    progs = [Program(name, 0.0, [Call("x", 50, 10), Call("y", 50, 10, ("x",))]) for name in "ab"]
    gittins = simulate(progs, "srpt", config=ONE_SLOT, scheduler_options={"knows": "distribution"})
    plas = simulate(progs, "plas", config=ONE_SLOT)
    a, b = gittins.programs
    assert a.finish <= b.calls[0].start
    a, b = plas.programs
    assert b.calls[0].start < a.calls[1].start


def test_knowing_each_kind_apart_the_oracle_runs_the_kind_that_is_short_first():
    # One slot; a long agent and a short one arrive together, the long one listed first. From all
    # programs together nothing tells them apart at the start (the tie keeps arrival order); from
    # each kind's own programs the short kind has less to expect.
    progs = [Program("long", 0.0, [Call("x", 50, 400)], workload="long"),
             Program("short", 0.0, [Call("x", 50, 10)], workload="short")]
    pooled = simulate(progs, "srpt", config=ONE_SLOT, scheduler_options={"knows": "distribution"})
    by_kind = simulate(progs, "srpt", config=ONE_SLOT, scheduler_options={"knows": "distribution by kind"})
    assert pooled.programs[0].finish < pooled.programs[1].finish
    assert by_kind.programs[1].finish < by_kind.programs[0].finish


def _alike_then_a_pair(before: int) -> list[Program]:
    """`before` programs of two equal calls, one at a time, then two more arriving together."""
    alike = [Call("x", 50, 10), Call("y", 50, 10, ("x",))]
    return [Program(f"p{i}", 10.0 * i, list(alike)) for i in range(before)] + [
        Program(name, 10.0 * before, list(alike)) for name in "ab"
    ]


def test_learning_from_ended_programs_the_oracle_finishes_the_started_program_once_enough_ended():
    options = {"knows": "ended programs"}
    learned = simulate(_alike_then_a_pair(SrptKnowledge.LEARNS_FROM), "srpt", config=ONE_SLOT, scheduler_options=options)
    *_, a, b = learned.programs
    assert a.finish <= b.calls[0].start
    # Too few ended to learn from: least attained work, which starts b first.
    early = simulate(_alike_then_a_pair(SrptKnowledge.LEARNS_FROM - 2), "srpt", config=ONE_SLOT, scheduler_options=options)
    *_, a, b = early.programs
    assert b.calls[0].start < a.calls[1].start


def test_on_a_ladder_close_ranks_tie_and_keep_arrival_order():
    # a's second call ranks lower than b's first, but both fall in the ladder's one wide range:
    # b's call came first and goes first, as multi-level queues would order them.
    progs = [Program(name, 0.0, [Call("x", 50, 10), Call("y", 50, 10, ("x",))]) for name in "ab"]
    laddered = simulate(progs, "srpt", config=ONE_SLOT, scheduler_options={"knows": "distribution", "ladder": (1e9,)})
    a, b = laddered.programs
    assert b.calls[0].start < a.calls[1].start
