"""The Autellix scheduler inside a real vLLM engine (CPU, in-process, tiny model). No mocks."""

from __future__ import annotations

import json
import threading
from contextlib import AbstractContextManager
from typing import Any

import pytest

from autellix.contract import PROGRAM_KEY, SESSION_PROGRAMS, SOLO_PROGRAMS
from autellix.models import TINY_MODEL, resolve_model
from engine_helpers import COLOR_SCHEMA, COMPACT_JSON, in_process_engine, scheduler_of

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

pytest.importorskip("autellix_core")

# The plug-in's clock is engine work (decode steps, autellix.work_units), so a scenario's
# decisions do not depend on how fast this machine steps. These calls are a few dozen steps long.
FAST_QUEUES = {"queue_boundaries": [2.5, 5, 10, 20, 40, 80, 160]}
PLUGIN = "autellix.vllm.scheduler.AutellixScheduler"


def _engine(
    scheduler_cls: str | None, max_num_seqs: int, autellix: dict | None = None, **engine_args: Any
) -> AbstractContextManager[Any]:
    args: dict[str, Any] = {"max_num_seqs": max_num_seqs, **engine_args}
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
    # The plug-in's defaults: the heavy program's 120-step warm-up puts it below the top queue.
    with _engine(scheduler_cls, max_num_seqs=2) as engine:
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


GRAMMAR_WAIT = 120.0  # seconds; only reached if compilation itself hangs


class GrammarGate:
    """Holds vLLM's grammar compilation (in its own thread pool) until `open()`, so a test decides
    when the grammars are ready instead of racing the compiler. Opens on exit whatever happened:
    the engine's shut-down waits for its compiler threads."""

    def __init__(self, scheduler: Any) -> None:
        self._open = threading.Event()
        self._compiled = threading.Semaphore(0)
        manager = scheduler.structured_output_manager
        compile_grammar = manager._create_grammar

        def gated(request: Any) -> Any:
            self._open.wait(GRAMMAR_WAIT)
            try:
                return compile_grammar(request)
            finally:
                self._compiled.release()

        manager._create_grammar = gated

    def open(self) -> None:
        self._open.set()

    def __enter__(self) -> GrammarGate:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.open()

    def wait_compiled(self, count: int) -> None:
        for _ in range(count):
            assert self._compiled.acquire(timeout=GRAMMAR_WAIT), "grammar compilation hung"


def test_structured_output_calls_start_once_their_grammar_is_ready():
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    engine_cm = _engine(
        PLUGIN, max_num_seqs=4, autellix=FAST_QUEUES, structured_outputs_config=COMPACT_JSON
    )
    with engine_cm as engine, GrammarGate(scheduler_of(engine)) as gate:
        scheduler = scheduler_of(engine)
        llm_engine = engine.llm_engine
        json_ids = [f"json-{i}" for i in range(3)]
        plain_ids = [f"plain-{i}" for i in range(3)]
        grammar = StructuredOutputsParams(json=COLOR_SCHEMA)
        json_params = SamplingParams(max_tokens=32, temperature=0, structured_outputs=grammar)
        plain_params = SamplingParams(max_tokens=8, ignore_eos=True, temperature=0)
        for json_id, plain_id in zip(json_ids, plain_ids):  # interleaved: the core admits both
            llm_engine.add_request(json_id, "colour:", json_params)
            llm_engine.add_request(plain_id, "print(", plain_params)

        texts: dict[str, str] = {}

        def step() -> None:
            for out in llm_engine.step():
                if out.finished:
                    texts[out.request_id] = out.outputs[0].text

        # While the grammars are held, the plain calls run to the end; the JSON ones are admitted
        # by the core, skipped by vLLM, and must be waiting in the core again after each step.
        while not set(plain_ids) <= set(texts):
            step()
            for json_id in json_ids:
                assert scheduler.core.call_info(scheduler.call_id(json_id))["state"] == "waiting"
        assert not set(json_ids) & set(texts)
        assert scheduler.autellix_stats["requeued"] >= 1

        gate.open()
        gate.wait_compiled(len(json_ids))
        for _ in range(10_000):  # a hang detector, not a clock: each call needs a few steps
            if not llm_engine.has_unfinished_requests():
                break
            step()
        assert set(texts) == {*json_ids, *plain_ids}
        colors = COLOR_SCHEMA["properties"]["color"]["enum"]
        for json_id in json_ids:
            answer = json.loads(texts[json_id])  # the schema, checked by hand: one key, an enum
            assert set(answer) == {"color"} and answer["color"] in colors, texts[json_id]
        # The core's books agree with vLLM's: nothing left running or waiting.
        snapshot = scheduler.autellix_snapshot([])
        assert (snapshot["num_running"], snapshot["num_waiting"]) == (0, 0)
        assert scheduler.core.num_running == scheduler.core.num_waiting == 0


def test_a_vllm_session_is_one_program():
    from vllm import SamplingParams

    with _engine(PLUGIN, max_num_seqs=8, autellix=FAST_QUEUES) as engine:
        scheduler = scheduler_of(engine)
        llm_engine = engine.llm_engine

        def submit(rid: str, session: str | None, extra_args: dict | None = None) -> None:
            params = SamplingParams(max_tokens=4, ignore_eos=True, extra_args=extra_args)
            llm_engine.add_request(rid, "hello", params, session_id=session)

        submit("alpha-1", "alpha")
        submit("alpha-2", "alpha")
        submit("beta-1", "beta")
        submit("named", "alpha", {PROGRAM_KEY: 7})  # an Autellix program id wins over a session
        submit("alone", None)
        llm_engine.step()  # the core hears about new calls at the next step

        def program(rid: str) -> int:
            return scheduler.core.call_info(scheduler.call_id(rid))["program_id"]

        alpha = program("alpha-1")
        assert program("alpha-2") == alpha
        assert SESSION_PROGRAMS <= alpha < SOLO_PROGRAMS
        assert SESSION_PROGRAMS <= program("beta-1") < SOLO_PROGRAMS
        assert program("beta-1") != alpha
        assert program("named") == 7
        assert program("alone") >= SOLO_PROGRAMS
        snapshot = scheduler.autellix_snapshot([alpha])
        calls = snapshot["programs"][alpha]["calls"]
        assert sorted(calls) == sorted([scheduler.call_id("alpha-1"), scheduler.call_id("alpha-2")])
        while llm_engine.has_unfinished_requests():
            llm_engine.step()


def test_the_core_runs_on_engine_work_not_on_seconds():
    """One call alone: every step is one unit, the first also prefills the prompt, so the
    program's attained service is the same on any machine: 1 + (prompt - 1) / 32 + (tokens - 1)."""
    from vllm import SamplingParams

    from autellix import work_units
    from autellix.work_units import PREFILL_TOKENS_PER_UNIT

    with _engine(PLUGIN, max_num_seqs=1) as engine:
        prompt = list(range(10, 42))  # 32 token ids
        params = SamplingParams(max_tokens=20, ignore_eos=True, temperature=0, extra_args={PROGRAM_KEY: 5})
        engine.llm_engine.add_request("alone", {"prompt_token_ids": prompt}, params)
        while engine.llm_engine.has_unfinished_requests():
            engine.llm_engine.step()
        scheduler = scheduler_of(engine)
        expected = 1 + (len(prompt) - 1) / PREFILL_TOKENS_PER_UNIT + (20 - 1)
        assert scheduler.work_clock == pytest.approx(expected)
        snapshot = scheduler.autellix_snapshot([5])
        assert snapshot["programs"][5]["attained_service"] == pytest.approx(expected)
        # The default ladder, in work units.
        assert scheduler.core.queue_boundaries == list(work_units.QUEUE_BOUNDARIES)


@pytest.mark.parametrize("own_work_credit", [False, True])
def test_a_call_is_credited_the_steps_work_or_its_own(own_work_credit):
    """A call decoding next to another call's long prefill: with own_work_credit (the default)
    one unit a step, what it would have alone; without it credited the step's work (the prefill
    too, as it would be the step's seconds). The engine's clock counts all of the work either way; the core's
    waits in the unit calls are credited in."""
    from vllm import SamplingParams

    from autellix.work_units import PREFILL_TOKENS_PER_UNIT

    knobs = {"own_work_credit": own_work_credit}
    with _engine(PLUGIN, max_num_seqs=2, autellix=knobs) as engine:
        llm_engine = engine.llm_engine
        decoder_prompt = list(range(10, 42))
        params = SamplingParams(max_tokens=20, ignore_eos=True, temperature=0, extra_args={PROGRAM_KEY: 1})
        llm_engine.add_request("decoder", {"prompt_token_ids": decoder_prompt}, params)
        for _ in range(3):
            llm_engine.step()
        long_prompt = [10 + i % 200 for i in range(513)]
        params = SamplingParams(max_tokens=1, ignore_eos=True, temperature=0, extra_args={PROGRAM_KEY: 2})
        llm_engine.add_request("prefiller", {"prompt_token_ids": long_prompt}, params)
        while llm_engine.has_unfinished_requests():
            llm_engine.step()
        scheduler = scheduler_of(engine)
        alone = 1 + (len(decoder_prompt) - 1) / PREFILL_TOKENS_PER_UNIT + (20 - 1)
        prefill = 1 + (len(long_prompt) - 1) / PREFILL_TOKENS_PER_UNIT
        programs = scheduler.autellix_snapshot([1, 2])["programs"]
        shared_step_prefill = prefill - 1  # the decoder's share of the one step they shared, by default
        assert programs[1]["attained_service"] == pytest.approx(alone + (0 if own_work_credit else shared_step_prefill))
        assert programs[2]["attained_service"] == pytest.approx(prefill)
        assert scheduler.work_clock == pytest.approx(alone + shared_step_prefill)
        # The core's clock moves with what calls are credited: the step's work, or under own-work
        # crediting the mean call's (the shared step's prefill split over its two calls).
        core_step_share = shared_step_prefill / 2 if own_work_credit else shared_step_prefill
        assert scheduler.core_clock == pytest.approx(alone + core_step_share)


def _guard_scenario(guard: bool) -> tuple[Any, dict[str, list[int]]]:
    """Two slots, no prefix cache (a preempted call recomputes its whole context). Light one-call
    programs of 4 tokens arrive two at a time: first alone (both slots full, so the wait for a slot
    is measured), then while a heavy program's long call runs (896 prompt tokens: 7 units of
    recompute); each pair's second call waits in the top queue above the heavy call."""
    knobs = {"preemption_guard": guard}
    with _engine(PLUGIN, max_num_seqs=2, autellix=knobs, enable_prefix_caching=False) as engine:
        _run(engine, [("heavy-warmup", "def heavy(x):", 80, 1, 0)])
        long_prompt = {"prompt_token_ids": [10 + i % 200 for i in range(896)]}
        pairs = [0, 5, 10, 24, 34, 44, 54]  # steps; the heavy call arrives at 16, between them
        light = [(f"light-{2 * k + j}", f"print({k}, {j})", 4, 100 + 2 * k + j, at) for k, at in enumerate(pairs) for j in (0, 1)]
        outputs, _ = _run(engine, [*light, ("heavy", long_prompt, 120, 1, 16)])
        return scheduler_of(engine), outputs


def test_a_preemption_whose_recompute_costs_more_than_the_wait_is_skipped():
    from autellix.work_units import PREFILL_TOKENS_PER_UNIT

    unguarded, unguarded_outputs = _guard_scenario(guard=False)
    assert unguarded.autellix_stats["priority_preemptions"] >= 1  # the heavy call is swapped out

    guarded, outputs = _guard_scenario(guard=True)
    assert guarded.hooks.slot_wait is not None and guarded.hooks.slot_wait < 896 / PREFILL_TOKENS_PER_UNIT
    assert guarded.autellix_stats["protected_call_steps"] >= 1
    assert guarded.autellix_stats["priority_preemptions"] == 0
    assert {rid: len(t) for rid, t in outputs.items()} == {rid: len(t) for rid, t in unguarded_outputs.items()}
    assert len(outputs["heavy"]) == 120
