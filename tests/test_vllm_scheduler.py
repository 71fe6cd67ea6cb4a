"""The Autellix scheduler inside a real vLLM engine (CPU, in-process, tiny model). No mocks."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest

from autellix.models import TINY_MODEL, resolve_model
from engine_helpers import in_process_engine, scheduler_of

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

pytest.importorskip("autellix_core")

# The tiny model decodes a step in ~2 ms, so the queues must be in milliseconds too.
FAST_QUEUES = {"queue_boundaries": [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32]}
PLUGIN = "autellix.vllm.scheduler.AutellixScheduler"


def _engine(
    scheduler_cls: str | None, max_num_seqs: int, autellix: dict | None = None
) -> AbstractContextManager[Any]:
    args: dict[str, Any] = {"max_num_seqs": max_num_seqs}
    if scheduler_cls:
        args["scheduler_cls"] = scheduler_cls
        args["additional_config"] = {"autellix": {"policy": "plas", **(autellix or {})}}
    return in_process_engine(resolve_model(TINY_MODEL), **args)


def _run(engine, calls):
    """calls: list of (request id, prompt, max_tokens, program id, submit after N steps).
    Returns ({request id: token ids}, [request ids in finishing order])."""
    from vllm import SamplingParams

    llm_engine = engine.llm_engine
    pending = sorted(calls, key=lambda c: c[4])
    outputs: dict[str, list[int]] = {}
    order: list[str] = []
    step = 0
    while pending or llm_engine.has_unfinished_requests():
        while pending and pending[0][4] <= step:
            rid, prompt, max_tokens, program, _ = pending.pop(0)
            params = SamplingParams(
                max_tokens=max_tokens,
                ignore_eos=True,
                temperature=0,
                extra_args={"autellix_program_id": program} if program is not None else None,
            )
            llm_engine.add_request(rid, prompt, params)
        for out in llm_engine.step():
            if out.finished:
                outputs[out.request_id] = list(out.outputs[0].token_ids)
                order.append(out.request_id)
        step += 1
    return outputs, order


WARMUP = [("heavy-warmup", "def heavy(x):", 120, 1, 0)]
# The heavy program has earned service in WARMUP; it fills the batch with two long calls and a
# light program arrives mid-way.
CALLS = [
    ("heavy-a", "class Heavy:", 160, 1, 0),
    ("heavy-b", "import heavy", 160, 1, 0),
    ("light", "print('light')", 20, 2, 10),
]


def _scenario(scheduler_cls: str | None):
    with _engine(scheduler_cls, max_num_seqs=2, autellix=FAST_QUEUES) as engine:
        _run(engine, WARMUP)
        outputs, order = _run(engine, CALLS)
        return scheduler_of(engine), outputs, order


def test_light_program_preempts_heavy_one_and_every_call_completes():
    vanilla, vanilla_outputs, vanilla_order = _scenario(None)
    assert type(vanilla).__name__ == "Scheduler"
    assert vanilla_order[-1] == "light"  # FCFS: the light call waits for a heavy one to end

    scheduler, outputs, order = _scenario(PLUGIN)
    assert type(scheduler).__name__ == "AutellixScheduler"
    assert {rid: len(tokens) for rid, tokens in outputs.items()} == {
        "heavy-a": 160,
        "heavy-b": 160,
        "light": 20,
    }
    assert order[0] == "light"
    assert scheduler.autellix_stats["priority_preemptions"] >= 1
    assert scheduler.core.stats()["preemptions"] >= 1
    # Preempted calls are recomputed, and scheduling never changes what a call generates.
    assert outputs == vanilla_outputs


def test_parents_and_thread_ids_reach_the_core():
    from vllm import SamplingParams

    with _engine(PLUGIN, max_num_seqs=4, autellix={**FAST_QUEUES, "policy": "atlas"}) as engine:
        scheduler = scheduler_of(engine)
        llm_engine = engine.llm_engine
        # Two parallel roots of program 9: a long one and a short one.
        _run(engine, [("root-long", "alpha beta gamma", 150, 9, 0), ("root-short", "delta", 5, 9, 0)])

        def submit(rid: str, parents: list[str]) -> None:
            args = {"autellix_program_id": 9, "autellix_thread_id": 3, "autellix_parents": parents}
            params = SamplingParams(max_tokens=50, ignore_eos=True, temperature=0, extra_args=args)
            llm_engine.add_request(rid, "epsilon zeta eta", params)

        submit("after-short", ["root-short"])
        submit("after-long", ["root-long"])
        llm_engine.step()  # the core hears about new calls at the next step
        short_child = scheduler.core.call_info(scheduler.call_id("after-short"))
        long_child = scheduler.core.call_info(scheduler.call_id("after-long"))
        assert scheduler.thread_id("after-short") == 3
        # ATLAS: a call's priority is its parents' critical path, so the short root's child is
        # more urgent than the long root's.
        assert 0 < short_child["priority"] < long_child["priority"]
        assert short_child["program_id"] == long_child["program_id"]
        while llm_engine.has_unfinished_requests():
            llm_engine.step()


def _starvation_scenario(starvation_ratio: float) -> tuple[list[str], dict]:
    """One slot. A heavy program (service earned in a warm-up) waits with one call while light
    one-call programs keep arriving, each in a more urgent queue than the heavy one."""
    # Quanta too long to use up: running calls never demote, so the order depends only on the
    # queues calls enter (light: 0, heavy: below) and on anti-starvation, not on step times.
    knobs = {**FAST_QUEUES, "quanta": [1000.0] * 8, "starvation_ratio": starvation_ratio}
    with _engine(PLUGIN, max_num_seqs=1, autellix=knobs) as engine:
        _run(engine, [("heavy-warmup", "def heavy(x):", 40, 1, 0)])
        # Arrivals (every 4 steps) outpace service (~7 steps a call): some light call always waits.
        light = [(f"light-{i}", f"print({i})", 6, 100 + i, 4 * i) for i in range(48)]
        outputs, order = _run(engine, [("heavy", "class Heavy:", 10, 1, 0), *light])
        assert len(outputs["heavy"]) == 10
        return order, scheduler_of(engine).core.stats()


def test_anti_starvation_lets_a_heavy_program_finish_under_a_stream_of_light_ones():
    starved, starved_stats = _starvation_scenario(float("inf"))
    assert starved[-1] == "heavy"  # pure PLAS: the light stream always goes first
    assert starved_stats["promotions"] == 0

    # Promoted after waiting 1.5x the ~40 steps of service it earned, the heavy call goes to the
    # head of the line (without preempting) while light programs keep arriving for ~190 steps.
    order, stats = _starvation_scenario(1.5)
    assert stats["promotions"] >= 1
    # Promoted to the top queue, the heavy call runs while light programs are still arriving.
    assert order.index("heavy") < len(order) - 10
