"""Engine replicas as Ray actors (engine/ray_replicas.py) on a real local multi-node Ray cluster.

One cluster and one driver for the module (an actor with an AsyncLLM takes 30-60 s to start on
two cores): a head node with no CPUs (nothing lands there) and two nodes told apart by custom
resources, one CPU each, so the two replica actors must land on different nodes. The driver runs
on an event loop in a thread, as the server would. Tests act on events they control: a replica
paused with its calls kept (`pause_generation(mode="keep")`) cannot finish a call before the
test acts; waits poll for an event with a generous bound.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

ray = pytest.importorskip("ray")

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.timeout(900),
]

SHORT_CALL_TOKENS = 16
LONG_PROMPT = list(range(100, 140))  # 40 tokens: a long call (pinned to its program's replica)
SHORT_PROMPT = [5, 6, 7, 8]


def wait_for(condition: Callable[[], Any], what: str, bound: float = 240.0) -> Any:
    """Poll for an event, failing only after a generous bound."""
    deadline = time.monotonic() + bound
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, work: Callable[[], Coroutine[Any, Any, Any]], timeout: float = 600) -> Any:
        return asyncio.run_coroutine_threadsafe(work(), self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()
        gc.collect()  # unclosed sockets of Ray's and vLLM's clients surface here, not at exit


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [c.add_node(num_cpus=1, resources={name: 1, "autellix_replica": 1}) for name in ("node_a", "node_b")]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    try:
        yield c, nodes
    finally:
        ray.shutdown()
        c.shutdown()
        gc.collect()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture(scope="module")
def served(cluster: Any) -> Iterator[tuple[LoopThread, Any]]:
    from autellix.engine import EngineDriver, EngineOptions

    c, _ = cluster
    options = EngineOptions(
        model="tiny", engines=2, max_num_seqs=8, max_model_len=1024, kv_cache_memory_bytes=64 << 20,
        short_call_tokens=SHORT_CALL_TOKENS, engine_args={"enforce_eager": True},
        ray_address=c.address, ray_num_cpus=1, ray_resources={"autellix_replica": 1},
    )
    lt = LoopThread()
    driver = EngineDriver(options)
    try:
        lt.run(driver.start)
        yield lt, driver
    finally:
        lt.run(driver.shutdown)
        lt.stop()


def params(max_tokens: int) -> Any:
    from vllm import SamplingParams

    return SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0)


async def collect(driver: Any, rid: str, prompt: list[int], max_tokens: int, program: int) -> tuple[list[Any], BaseException | None]:
    chunks: list[Any] = []
    try:
        async for chunk in driver.generate(rid, prompt, params(max_tokens), program_id=program):
            chunks.append(chunk)
    except Exception as exc:  # noqa: BLE001
        return chunks, exc
    return chunks, None


def alive_actors() -> list[dict[str, Any]]:
    from ray._private import state

    return [a for a in state.actors().values() if a["State"] != "DEAD"]


def pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_health_aware_balancer_routes_around_a_down_replica() -> None:
    import autellix_core

    from autellix.engine.ray_replicas import HealthAwareBalancer, ReplicaUnavailableError

    class Replica:
        available = True
        errored = False

    replicas = [Replica(), Replica()]
    balancer = HealthAwareBalancer(autellix_core.LoadBalancer(2, short_call_tokens=SHORT_CALL_TOKENS), replicas)
    pinned = balancer.route(1, 100)  # a long call pins program 1
    balancer.release(pinned)
    replicas[pinned].available = False
    other = 1 - pinned
    assert [balancer.route(1, 100), balancer.route(2, 1), balancer.route(3, 1)] == [other] * 3
    assert balancer.pinned(1) == other and balancer.loads()[other] == 3 and balancer.loads()[pinned] == 0
    for _ in range(3):
        balancer.release(other)
    assert balancer.loads() == [0, 0]
    replicas[pinned].available = True  # back: the re-pin holds until the program ends
    assert balancer.route(1, 100) == other
    balancer.release(other)
    balancer.forget(1)
    assert balancer.pinned(1) is None
    replicas[0].available = replicas[1].available = False
    with pytest.raises(ReplicaUnavailableError):
        balancer.route(4, 1)
    assert balancer.loads() == [0, 0]


def test_replicas_on_distinct_nodes_with_the_plugin(served: tuple[LoopThread, Any], cluster: Any) -> None:
    lt, driver = served
    replicas = driver.client.replicas
    assert len(replicas) == 2 and all(r.available for r in replicas)
    assert replicas[0].node_id != replicas[1].node_id
    worker_nodes = {n.node_id for n in cluster[1]}
    assert {r.node_id for r in replicas} == worker_nodes
    snapshots = lt.run(lambda: driver.snapshots())
    assert [s["policy"] for s in snapshots] == ["plas", "plas"]
    assert all(r.engine_pids for r in replicas)  # each actor runs its own engine-core process


def test_long_calls_stay_short_calls_spread(served: tuple[LoopThread, Any]) -> None:
    lt, driver = served

    async def work() -> tuple[list[Any], list[Any]]:
        longs = await asyncio.gather(*(collect(driver, f"long-{i}", LONG_PROMPT, 4, program=11) for i in range(4)))
        shorts = await asyncio.gather(*(collect(driver, f"short-{i}", SHORT_PROMPT, 4, program=12) for i in range(4)))
        return longs, shorts

    longs, shorts = lt.run(work)
    for chunks, error in (*longs, *shorts):
        assert error is None and chunks[-1].finished and chunks[-1].completion_tokens == 4
    assert len({chunks[-1].engine for chunks, _ in longs}) == 1
    assert driver.balancer.pinned(11) == longs[0][0][-1].engine
    assert {chunks[-1].engine for chunks, _ in shorts} == {0, 1}
    assert driver.loads() == [0, 0]
    lt.run(lambda: driver.end_program(11))
    lt.run(lambda: driver.end_program(12))


def test_abort_and_program_end_reach_the_remote_replica(served: tuple[LoopThread, Any]) -> None:
    lt, driver = served
    program = 21

    async def work() -> dict[str, Any]:
        stream = driver.generate("abort-me", LONG_PROMPT, params(900), program_id=program)
        first = await stream.__anext__()
        replica = driver.client.replicas[first.engine]
        await replica.pause_generation(mode="keep", clear_cache=False)  # it cannot finish now
        try:
            before = (await driver.snapshots([program]))[first.engine]
            await driver.abort(["abort-me"])
            rest = [chunk async for chunk in stream]
            after_abort = (await driver.snapshots([program]))[first.engine]
            await driver.end_program(program)
            after_end = (await driver.snapshots([program]))[first.engine]
        finally:
            await replica.resume_generation()
        return dict(before=before, rest=rest, after_abort=after_abort, after_end=after_end)

    seen = lt.run(work)
    assert seen["before"]["engine_requests"] == 1 and program in seen["before"]["programs"]
    assert seen["rest"] and seen["rest"][-1].finished and seen["rest"][-1].finish_reason == "abort"
    assert seen["after_abort"]["engine_requests"] == 0
    assert program not in seen["after_end"]["programs"]
    assert driver.balancer.pinned(program) is None


def test_disconnect_aborts_the_remote_call(served: tuple[LoopThread, Any]) -> None:
    lt, driver = served

    async def work() -> tuple[int, int]:
        stream = driver.generate("go-away", SHORT_PROMPT, params(900), program_id=31)
        first = await stream.__anext__()
        replica = driver.client.replicas[first.engine]
        await replica.pause_generation(mode="keep", clear_cache=False)
        try:
            before = (await driver.snapshots())[first.engine]["engine_requests"]
            await stream.aclose()  # the client went away
            for _ in range(200):  # the abort travels to the actor in the background
                after = (await driver.snapshots())[first.engine]["engine_requests"]
                if after == 0:
                    break
                await asyncio.sleep(0.05)
        finally:
            await replica.resume_generation()
        return before, after

    assert lt.run(work) == (1, 0)
    lt.run(lambda: driver.end_program(31))


def test_http_front_end_over_ray_replicas(served: tuple[LoopThread, Any]) -> None:
    import httpx

    from server_helpers import free_port

    lt, driver = served

    async def start() -> Any:
        from aiohttp import web

        from autellix.server import ServerSettings, make_app

        runner = web.AppRunner(make_app(ServerSettings(), driver=driver), handler_cancellation=True, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner, f"http://127.0.0.1:{port}"

    runner, base = lt.run(start)
    try:
        assert httpx.get(f"{base}/health", timeout=30).json() == {"status": "ok"}
        body = {"model": driver.served_model_name, "prompt": "hello there", "max_tokens": 5, "ignore_eos": True}
        reply = httpx.post(f"{base}/v1/completions", json=body, headers={"X-Autellix-Program": "ray-prog"}, timeout=120)
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] == 5
        assert "autellix:running_calls" in httpx.get(f"{base}/metrics", timeout=30).text
    finally:
        lt.run(runner.cleanup)


def test_killed_replica_fails_its_calls_and_rejoins(served: tuple[LoopThread, Any]) -> None:
    lt, driver = served
    replicas = driver.client.replicas
    pinned_program = 41
    # A long call pins program 41 to a replica: that one is killed.
    pin = lt.run(lambda: collect(driver, "pin", LONG_PROMPT, 2, program=pinned_program))
    assert pin[1] is None
    victim_index = pin[0][-1].engine
    survivor = 1 - victim_index
    victim = replicas[victim_index]
    old_engine_pids = list(victim.engine_pids)
    deaths = victim.deaths

    async def load() -> list[Any]:
        streams = [driver.generate(f"load-{i}", SHORT_PROMPT, params(900), program_id=42) for i in range(6)]
        firsts = await asyncio.gather(*(s.__anext__() for s in streams))
        on_victim = [f.engine == victim_index for f in firsts]
        assert any(on_victim) and not all(on_victim)
        await victim.pause_generation(mode="keep", clear_cache=False)  # its calls cannot finish
        changed = asyncio.ensure_future(victim.wait_changed())
        await asyncio.sleep(0)
        ray.kill(victim.actor, no_restart=False)

        async def rest(stream: Any) -> tuple[list[Any], BaseException | None]:
            chunks: list[Any] = []
            try:
                async for chunk in stream:
                    chunks.append(chunk)
            except Exception as exc:  # noqa: BLE001
                return chunks, exc
            return chunks, None

        # Calls on the other replica run to the end; those on the victim end with an error.
        others = [driver.abort([f"load-{i}"]) for i, v in enumerate(on_victim) if not v]
        await changed
        assert not victim.available
        unavailable = driver.unavailable_engines()
        ready = driver.ready()
        await asyncio.gather(*others)
        results = await asyncio.gather(*(rest(s) for s in streams))
        # Meanwhile the other replica serves, long calls of the victim's program included.
        during = await asyncio.gather(
            collect(driver, "during-short", SHORT_PROMPT, 3, program=43),
            collect(driver, "during-long", LONG_PROMPT, 3, program=pinned_program),
        )
        return [on_victim, results, unavailable, ready, during]

    seen = lt.run(load)
    on_victim, results, unavailable, ready, during = seen
    assert unavailable == [victim_index] and ready
    for v, (chunks, error) in zip(on_victim, results, strict=True):
        if v:
            from autellix.engine.ray_replicas import ReplicaLostError

            assert isinstance(error, ReplicaLostError), (chunks, error)
            assert f"engine replica {victim_index}" in str(error) and "died" in str(error)
        else:  # aborted by the test: ended with its tokens so far, not silently
            assert error is None and chunks and chunks[-1].finished
    for chunks, error in during:
        assert error is None and chunks[-1].finished and chunks[-1].engine == survivor
    assert driver.balancer.pinned(pinned_program) == survivor  # re-pinned off the dead replica
    assert victim.deaths == deaths + 1
    wait_for(lambda: not any(pid_alive(p) for p in old_engine_pids), "the killed replica's engine core to exit")

    # Ray restarts the actor; the replica rejoins and takes calls again.
    wait_for(lambda: victim.available, "the killed replica to rejoin", bound=400)
    assert driver.unavailable_engines() == [] and victim.rejoined >= 1

    async def after() -> list[Any]:
        return await asyncio.gather(*(collect(driver, f"after-{i}", SHORT_PROMPT, 3, program=44) for i in range(2)))

    results = lt.run(after)
    assert {chunks[-1].engine for chunks, error in results if error is None} == {0, 1}
    for name in (pinned_program, 42, 43, 44):
        lt.run(lambda name=name: driver.end_program(name))


def test_shutdown_leaves_no_actor_or_engine_process(served: tuple[LoopThread, Any]) -> None:
    # Last in the module: shuts the module's driver down (its fixture's shut-down is a no-op then).
    lt, driver = served
    pids = [p for r in driver.client.replicas for p in r.engine_pids]
    assert pids and alive_actors()
    lt.run(driver.shutdown)
    wait_for(lambda: not alive_actors(), "every replica actor to end")
    wait_for(lambda: not any(pid_alive(p) for p in pids), "every engine-core process to exit")
