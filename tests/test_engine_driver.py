"""The engine driver on real vLLM `AsyncLLM` replicas (engine cores in child processes, CPU, tiny
model): routing by the core's balancer, the plug-in live in the child, streaming, abort, program
end, clean shut-down. No mocks."""

from __future__ import annotations

import asyncio
import gc

import psutil
import pytest

from autellix.engine import EngineDriver, EngineOptions, EngineUnavailableError

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _collect_vllm_leftovers():
    """vLLM's AsyncLLM closes its ZMQ sockets at shut-down but leaves the context to the garbage
    collector: collected here, its warning stays in the test that made it instead of failing
    whichever later test collects garbage."""
    yield
    gc.collect()

SHORT_CALL_TOKENS = 16  # prompts longer than this are "long": pinned to their program's engine


def _options(**overrides) -> EngineOptions:
    settings = dict(
        model="tiny",
        max_num_seqs=4,
        max_model_len=1024,
        kv_cache_memory_bytes=64 << 20,
        short_call_tokens=SHORT_CALL_TOKENS,
        engine_args={"enforce_eager": True},
    )
    settings.update(overrides)
    return EngineOptions(**settings)


def _greedy(max_tokens: int):
    from vllm import SamplingParams

    return SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)


async def _collect(driver: EngineDriver, request_id: str, prompt, max_tokens: int, **tags):
    chunks = [c async for c in driver.generate(request_id, prompt, _greedy(max_tokens), **tags)]
    return chunks


def _engine_processes() -> set[int]:
    """Live descendants, less multiprocessing's resource tracker (one per parent process, by design
    alive until the parent exits) and reaped-but-unwaited zombies."""
    live = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE or "resource_tracker" in " ".join(child.cmdline()):
                continue
        except psutil.NoSuchProcess:
            continue
        live.add(child.pid)
    return live


def _watch_core_stops(driver: EngineDriver) -> list[bool]:
    """Records, as each replica's engine core is told to stop, whether its AsyncLLM's output
    reader had already stopped."""
    seen: list[bool] = []
    for engine in driver._engines:
        stop_core = engine.engine_core.shutdown

        def watched(*args, _engine=engine, _stop_core=stop_core, **kwargs):
            seen.append(_engine.output_handler.done())
            return _stop_core(*args, **kwargs)

        engine.engine_core.shutdown = watched
    return seen


def test_two_replicas_route_stream_abort_and_shut_down_cleanly():
    async def scenario():
        before = _engine_processes()
        driver = EngineDriver(_options(engines=2, scheduler="plas"))
        with pytest.raises(EngineUnavailableError):
            await anext(driver.generate("early", "hi", _greedy(1), program_id=1))
        await driver.start()
        try:
            assert driver.num_engines == 2 and driver.ready()
            assert len(_engine_processes() - before) >= 2  # one engine core each

            # Short calls of different programs spread over the least-used engines.
            short = await asyncio.gather(
                *(_collect(driver, f"short-{i}", "hello there", 12, program_id=i) for i in range(4))
            )
            assert {chunks[-1].engine for chunks in short} == {0, 1}
            for chunks in short:
                last = chunks[-1]
                assert last.finished and last.finish_reason == "length"
                assert last.completion_tokens == 12 == sum(len(c.token_ids) for c in chunks)
                assert last.prompt_tokens == len(driver.tokenize("hello there"))

            # Long calls follow their program's pin, wherever the load is.
            long_prompt = list(range(5, 5 + 3 * SHORT_CALL_TOKENS))
            first = await _collect(driver, "long-1", long_prompt, 4, program_id=7)
            pinned = driver.balancer.pinned(7)
            assert first[-1].engine == pinned
            again = await _collect(
                driver, "long-2", long_prompt + [9], 4, program_id=7, parents=["long-1"], calls_left=3
            )
            assert again[-1].engine == pinned

            # The plug-in runs inside each child engine core and saw exactly these calls; the
            # count of calls left reached the core, less the call that told it.
            snapshots = await driver.snapshots([7])
            assert [s["policy"] for s in snapshots] == ["plas", "plas"]
            assert sum(s["stats"]["finished"] for s in snapshots) == 6
            program = snapshots[pinned]["programs"][7]
            assert program["attained_service"] > 0 and program["active_calls"] == 0
            assert program["calls_to_come"] == 2

            # Closing a stream early aborts the call in its engine; the engine carries on.
            stream = driver.generate("doomed", "tell me everything", _greedy(900), program_id=8)
            received = [await anext(stream), await anext(stream)]
            await stream.aclose()
            assert not received[-1].finished
            await asyncio.sleep(0.5)
            assert driver.loads() == [0, 0]
            snapshots = await driver.snapshots()
            assert sum(s["num_running"] + s["num_waiting"] for s in snapshots) == 0
            assert sum(s["stats"]["finished"] for s in snapshots) == 7
            survivor = await _collect(driver, "after-abort", "still here", 5, program_id=8)
            assert survivor[-1].completion_tokens == 5

            # Ending a program right after aborting its running call (what DELETE /v1/programs
            # does): the engines never report the dropped call to their core again.
            victim = driver.generate("victim", "a long story", _greedy(900), program_id=11)
            await anext(victim)
            await driver.abort(["victim"])
            await driver.end_program(11)
            await victim.aclose()
            await _collect(driver, "after-end", "next", 3, program_id=12)
            snapshots = await driver.snapshots([11])
            assert all(s["plugin"].get("rejected_batches", 0) == 0 for s in snapshots)
            assert all(11 not in s["programs"] for s in snapshots)

            # Ending a program unpins it and drops it from the schedulers' tables.
            await driver.end_program(7)
            assert driver.balancer.pinned(7) is None
            assert all(7 not in s["programs"] for s in await driver.snapshots([7]))
            handler_done_at_core_stop = _watch_core_stops(driver)
        finally:
            await driver.shutdown()
        assert not driver.ready()
        # Each engine's output reader stopped before its core did, so the core's exit was not
        # read as a crash (vLLM logs EngineDeadError then: vllm-project/vllm#48745).
        assert handler_done_at_core_stop == [True, True]
        await asyncio.sleep(1.0)
        assert _engine_processes() - before == set()

    asyncio.run(scenario())


def test_vanilla_vllm_baseline_generates_the_same_greedy_tokens():
    prompts = {"a": "the quick brown fox", "b": [11, 12, 13, 14, 15, 16], "c": "lorem ipsum"}

    async def run(scheduler: str):
        async with EngineDriver(_options(scheduler=scheduler)) as driver:
            results = await asyncio.gather(
                *(_collect(driver, rid, p, 24, program_id=n) for n, (rid, p) in enumerate(prompts.items()))
            )
            snapshots = await driver.snapshots()
        tokens = {rid: [t for c in chunks for t in c.token_ids] for rid, chunks in zip(prompts, results)}
        return tokens, snapshots

    async def scenario():
        vanilla, vanilla_snapshots = await run("vllm")
        autellix, autellix_snapshots = await run("atlas")
        assert vanilla_snapshots == [None]  # vLLM's own scheduler has no Autellix state
        assert autellix_snapshots[0]["policy"] == "atlas"
        assert all(len(t) == 24 for t in vanilla.values())
        assert autellix == vanilla

    asyncio.run(scenario())
