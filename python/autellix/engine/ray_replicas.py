"""Engine replicas as Ray actors, behind the same router and balancer as local replicas.

`autellix serve --ray ADDRESS --engines N` starts N `ReplicaActor`s on the Ray cluster at
ADDRESS (one GPU each on GPU clusters; on CPU, `ray_num_cpus` and `ray_resources` of
`EngineOptions` place them), each holding a vLLM `AsyncLLM` with the Autellix scheduler and the
server's engine settings. In the front end each actor is a `RayReplica`: it has the replica
interface `ReplicaRouter` uses (`generate`, `abort`, `errored`, `dead_error`,
`check_admission`, the cache/pause/sleep fan-outs, `engine_core.call_utility_async` for the
driver's `end_program`/`snapshots`), so vLLM's serving layer and the Rust balancer treat Ray
replicas exactly as local ones.

Batching: a Ray call or a Ray stream item per token costs ~0.4 ms of CPU, so nothing here is per
token. Per replica the front end keeps ONE long poll in flight (`ReplicaActor.poll`): it returns
everything the replica produced since the previous poll, keyed by request id, with outputs of
one request merged the way vLLM's own `RequestOutputCollector` merges them for a slow consumer
(deltas concatenated, cumulative outputs replaced). While one poll travels back, the next outputs
pile up, so under load one poll carries one step of every running call. The front end
demultiplexes each reply into per-call queues. New calls and aborts issued in the same event-loop
turn travel in one Ray call too (`add_many`, `abort`). Prompt token ids go with a request's first
output only; the front end puts them back on the later ones.

Faults: the poll loop is also the replica's heartbeat. When a poll fails because the actor died
(killed, its node lost, its engine core crashed: the actor exits so that Ray restarts it), the
replica is marked unavailable and every call in flight on it ends at once with
`ReplicaLostError` (a clear error naming the replica; calls are not retried elsewhere: a call may
have had side effects in a client's tool loop and vLLM's serving layer may already have streamed
part of it, so the client decides). `HealthAwareBalancer` then routes around it: a call the Rust
balancer puts on an unavailable replica goes to the least-used available one, and a long call of
a program pinned there is re-pinned to an available replica (a Python overlay on the Rust
balancer, which has no "engine down" call). Ray restarts the actor (`max_restarts`); the poll
loop waits on `ReplicaActor.ready`, sees a new incarnation and the replica rejoins. A replica
that is out of restarts is `errored` (permanently dead) like a dead local AsyncLLM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import uuid
from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

log = logging.getLogger("autellix.engine.ray")

# How long a replica waits for its actor to come back before asking again.
_REJOIN_RETRY_S = 1.0


class ReplicaLostError(RuntimeError):
    """The Ray actor serving this call died before the call finished."""


class ReplicaUnavailableError(RuntimeError):
    """A call was put on a replica that is restarting (the balancer routes around those)."""


# -- the actor ------------------------------------------------------------------------------------


class ReplicaActor:
    """One engine replica in a Ray actor: a vLLM AsyncLLM and an output buffer drained by polls.

    The AsyncLLM is built in __init__ so that a restart by Ray (which re-runs __init__ with the
    same arguments) brings the replica back by itself."""

    def __init__(self, engine_args: dict[str, Any], index: int) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.index = index
        self.incarnation = uuid.uuid4().hex
        self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_args))
        # request id -> items (RequestOutput or _Failure) not yet polled
        self._buffer: dict[str, list[Any]] = {}
        self._delta: dict[str, bool] = {}  # request id -> outputs are deltas (merge by appending)
        self._prompt_sent: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: asyncio.Event | None = None
        self._watchdog: asyncio.Task[None] | None = None

    # The event loop of an async actor exists only once its first method runs.
    def _event(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
            self._watchdog = asyncio.get_running_loop().create_task(self._watch_engine())
        return self._wake

    async def ready(self) -> dict[str, Any]:
        self._event()
        return {
            "incarnation": self.incarnation,
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "engine_pids": _child_pids(),
        }

    async def add_many(self, calls: list[tuple[str, Any, Any, dict[str, Any]]]) -> None:
        from vllm.sampling_params import RequestOutputKind

        self._event()
        loop = asyncio.get_running_loop()
        for request_id, prompt, params, kwargs in calls:
            self._delta[request_id] = getattr(params, "output_kind", None) == RequestOutputKind.DELTA
            stream = self.engine.generate(prompt, params, request_id, **kwargs)
            self._tasks[request_id] = loop.create_task(self._pump(request_id, stream))

    async def _pump(self, request_id: str, stream: AsyncGenerator[Any, None]) -> None:
        try:
            async with contextlib.aclosing(stream):
                async for output in stream:
                    self._put(request_id, output)
        except asyncio.CancelledError:
            self._put(request_id, _Failure.of(ReplicaLostError(f"engine replica {self.index} is shutting down")))
            raise
        except BaseException as exc:  # noqa: BLE001 - every error goes back to the caller
            self._put(request_id, _Failure.of(exc))
        finally:
            self._tasks.pop(request_id, None)

    def _put(self, request_id: str, item: Any) -> None:
        items = self._buffer.setdefault(request_id, [])
        if items and not isinstance(item, _Failure) and not isinstance(items[-1], _Failure):
            items[-1].add(item, aggregate=self._delta.get(request_id, True))
        else:
            items.append(item)
        self._event().set()

    async def poll(self) -> tuple[str, list[tuple[str, list[Any]]], bool]:
        """Everything produced since the last poll (waits until there is something)."""
        wake = self._event()
        while not self._buffer:
            wake.clear()
            await wake.wait()
        batch, self._buffer = self._buffer, {}
        for request_id, items in batch.items():
            for item in items:
                if isinstance(item, _Failure):
                    continue
                if request_id in self._prompt_sent:
                    item.prompt_token_ids = None  # the front end has them from the first output
                    item.prompt = None
                else:
                    self._prompt_sent.add(request_id)
            if items and (isinstance(items[-1], _Failure) or items[-1].finished):
                self._prompt_sent.discard(request_id)
                self._delta.pop(request_id, None)
        return self.incarnation, list(batch.items()), bool(self.engine.errored)

    async def abort(self, request_ids: list[str]) -> None:
        await self.engine.abort(request_ids)

    async def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = getattr(self.engine, method)(*args, **kwargs)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    async def utility(self, name: str, args: tuple[Any, ...]) -> Any:
        return await self.engine.engine_core.call_utility_async(name, *args)

    async def shutdown(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()
        await asyncio.to_thread(self.engine.shutdown)

    async def _watch_engine(self) -> None:
        # An engine core that died leaves the AsyncLLM dead for good: give the calls' errors a
        # moment to be polled, then exit so that Ray restarts the actor with a fresh engine.
        while not self.engine.errored:
            await asyncio.sleep(1.0)
        log.error("engine replica %d: the engine core died; restarting the actor", self.index)
        await asyncio.sleep(2.0)
        os._exit(1)


class _Failure:
    """An exception on its way back to the front end (pickled ahead, so a type Ray cannot
    pickle becomes a RuntimeError with the same message instead of failing the whole poll)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    @classmethod
    def of(cls, exc: BaseException) -> _Failure:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        return cls(exc)


def _child_pids() -> list[int]:
    try:
        import psutil

        return [p.pid for p in psutil.Process().children(recursive=True)]
    except Exception:
        return []


# -- the front end's side -------------------------------------------------------------------------


class Frontend:
    """What vLLM's serving layer needs locally: the config, renderer and input processor of the
    replicas' model, built without an engine (the model files are at the same path here)."""

    def __init__(self, engine_args: dict[str, Any]) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.renderers import renderer_from_config
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.input_processor import InputProcessor

        self.vllm_config = AsyncEngineArgs(**engine_args).create_engine_config(UsageContext.ENGINE_CONTEXT)
        self.model_config = self.vllm_config.model_config
        self.renderer = renderer_from_config(self.vllm_config)
        self.input_processor = InputProcessor(self.vllm_config, self.renderer)

    def shutdown(self) -> None:
        self.renderer.shutdown()


class _Call:
    __slots__ = ("queue", "incarnation", "prompt_token_ids", "prompt")

    def __init__(self, incarnation: str | None) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.incarnation = incarnation
        self.prompt_token_ids: Any = None
        self.prompt: Any = None


class _UtilityClient:
    """`engine_core.call_utility_async` of a remote replica (the driver's end_program, snapshots).
    A replica that is restarting answers None: its fresh scheduler knows no program yet."""

    def __init__(self, replica: RayReplica) -> None:
        self._replica = replica

    async def call_utility_async(self, name: str, *args: Any) -> Any:
        if not self._replica.available:
            return None
        try:
            return await self._replica.actor.utility.remote(name, args)
        except RayActorError:
            return None


class RayReplica:
    """One Ray actor replica, with the interface `ReplicaRouter` needs of a replica."""

    def __init__(self, index: int, actor: Any, frontend: Frontend, max_restarts: int) -> None:
        self.index = index
        self.actor = actor
        self.frontend = frontend
        self.vllm_config = frontend.vllm_config
        self.model_config = frontend.model_config
        self.renderer = frontend.renderer
        self.input_processor = frontend.input_processor
        self.engine_core = _UtilityClient(self)
        self.max_restarts = max_restarts
        self.available = False
        self.incarnation: str | None = None
        self.node_id: str | None = None
        self.engine_pids: list[int] = []
        self.deaths = 0  # times the actor was seen dead
        self.rejoined = 0  # times it came back after a death
        self.last_error: str | None = None
        self.polls = 0  # polls answered (each carries one batch of outputs)
        self._dead_for_good = False
        self._closed = False
        self._calls: dict[str, _Call] = {}
        self._adds: list[tuple[tuple[str, Any, Any, dict[str, Any]], asyncio.Future[None]]] = []
        self._aborts: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state_changed: asyncio.Event | None = None

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Wait until the actor's engine is up, then start polling it."""
        self._loop = asyncio.get_running_loop()
        self._state_changed = asyncio.Event()
        self._joined(await self.actor.ready.remote())
        self._poller = self._loop.create_task(self._poll_loop(), name=f"autellix-ray-poll-{self.index}")

    def _joined(self, info: dict[str, Any]) -> None:
        self.incarnation = info["incarnation"]
        self.node_id = info["node_id"]
        self.engine_pids = list(info.get("engine_pids", ()))
        self.available = True
        self._changed()
        log.info("engine replica %d up on node %s (incarnation %s)", self.index, self.node_id, self.incarnation)

    def _changed(self) -> None:
        if self._state_changed is not None:
            self._state_changed.set()
            self._state_changed = asyncio.Event()

    async def wait_changed(self) -> None:
        """Until the replica next goes down or comes back (for tests and tools)."""
        assert self._state_changed is not None
        await self._state_changed.wait()

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop the engine and the actor (callable from any thread, twice too)."""
        if self._closed:
            return
        self._closed = True
        self.available = False
        if self._loop is not None and self._poller is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed already
                self._loop.call_soon_threadsafe(self._poller.cancel)
        with contextlib.suppress(RayError, Exception):
            ray.get(self.actor.shutdown.remote(), timeout=timeout or 30)
        with contextlib.suppress(Exception):
            ray.kill(self.actor, no_restart=True)

    # -- the poll loop ---------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while not self._closed:
            try:
                incarnation, batch, _engine_errored = await self.actor.poll.remote()
            except asyncio.CancelledError:
                raise
            except RayActorError as exc:
                if self._closed:
                    return
                self._lost(exc)
                await self._rejoin()
                continue
            self.polls += 1
            if incarnation != self.incarnation:  # restarted between two polls
                self._lost(ReplicaLostError("the actor restarted"))
                self._joined_again_as(incarnation)
            self._dispatch(batch)

    def _dispatch(self, batch: list[tuple[str, list[Any]]]) -> None:
        for request_id, items in batch:
            call = self._calls.get(request_id)
            if call is None:  # aborted or closed on this side already
                continue
            for item in items:
                if isinstance(item, _Failure):
                    call.queue.put_nowait(item.exc)
                    continue
                if item.prompt_token_ids is None:
                    item.prompt_token_ids = call.prompt_token_ids
                    item.prompt = call.prompt
                else:
                    call.prompt_token_ids = item.prompt_token_ids
                    call.prompt = item.prompt
                call.queue.put_nowait(item)

    def _lost(self, exc: BaseException) -> None:
        self.available = False
        self.deaths += 1
        self.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        log.error("engine replica %d (Ray actor) lost: %s", self.index, self.last_error)
        error = ReplicaLostError(
            f"engine replica {self.index} (a Ray actor on node {self.node_id}) died while this call "
            f"was running; the call was not completed: {self.last_error}"
        )
        for call in self._calls.values():
            call.queue.put_nowait(error)
            call.incarnation = None
        for _, future in self._adds:
            if not future.done():
                future.set_exception(error)
        self._adds.clear()
        self._changed()

    async def _rejoin(self) -> None:
        while not self._closed and not self._dead_for_good:
            try:
                info = await self.actor.ready.remote()
            except RayActorError:
                if self._actor_state() == "DEAD":  # out of restarts (or killed for good)
                    self._dead_for_good = True
                    self._changed()
                    return
                await asyncio.sleep(_REJOIN_RETRY_S)  # restarting: Ray says so on the next try
                continue
            self.rejoined += 1
            self._joined(info)
            return

    def _actor_state(self) -> str | None:
        """The GCS's state of the actor (ALIVE, RESTARTING, DEAD...), None if unknown."""
        try:
            from ray._private import state

            entry = state.actors(actor_id=self.actor._actor_id.hex())
            return str(entry.get("State")) if entry else None
        except Exception:
            return None

    def _joined_again_as(self, incarnation: str) -> None:
        self.incarnation = incarnation
        self.available = True
        self.rejoined += 1
        self._changed()

    # -- the replica interface -------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return not self._closed and not self._dead_for_good

    @property
    def is_stopped(self) -> bool:
        return self._closed or self._dead_for_good

    @property
    def errored(self) -> bool:
        """Dead for good (out of restarts). A replica that Ray is restarting is not errored,
        only unavailable: vLLM's serving layer refuses every call while its client is errored."""
        return self._dead_for_good

    @property
    def dead_error(self) -> BaseException:
        from vllm.v1.engine.exceptions import EngineDeadError

        return EngineDeadError(f"engine replica {self.index} (Ray actor) is dead: {self.last_error}")

    def get_tokenizer(self) -> Any:
        return self.renderer.get_tokenizer()

    def check_admission(self, n: int = 1, request_id: str | None = None) -> None:
        from vllm.exceptions import QueueOverflowError

        limit = self.vllm_config.scheduler_config.max_num_queued_reqs
        if limit is not None and self.available and len(self._calls) + n > limit:
            raise QueueOverflowError()

    async def generate(
        self, prompt: Any, sampling_params: Any, request_id: str, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        if not self.available:
            raise ReplicaUnavailableError(f"engine replica {self.index} is restarting: retry the call")
        if request_id in self._calls:
            raise ValueError(f"request id {request_id!r} is already running on engine replica {self.index}")
        call = _Call(self.incarnation)
        self._calls[request_id] = call
        finished = False
        try:
            await self._submit((request_id, prompt, sampling_params, kwargs))
            while not finished:
                item = await call.queue.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                finished = bool(item.finished)
                yield item
        finally:
            self._calls.pop(request_id, None)
            if not finished and call.incarnation is not None and call.incarnation == self.incarnation:
                self._abort_soon(request_id)  # the caller went away: stop the call in the engine

    def _submit(self, entry: tuple[str, Any, Any, dict[str, Any]]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._adds:
            loop.call_soon(self._flush_adds)
        self._adds.append((entry, future))
        return future

    def _flush_adds(self) -> None:
        adds, self._adds = self._adds, []
        if adds:
            self._spawn(self._send_adds(adds))

    async def _send_adds(self, adds: list[tuple[tuple[str, Any, Any, dict[str, Any]], asyncio.Future[None]]]) -> None:
        try:
            await self.actor.add_many.remote([entry for entry, _ in adds])
        except BaseException as exc:  # noqa: BLE001
            error = exc
            if isinstance(exc, RayActorError):
                error = ReplicaLostError(f"engine replica {self.index} died before taking the call: {exc}")
            for _, future in adds:
                if not future.done():
                    future.set_exception(error)
            return
        for _, future in adds:
            if not future.done():
                future.set_result(None)

    def _abort_soon(self, request_id: str) -> None:
        loop = asyncio.get_running_loop()
        if not self._aborts:
            loop.call_soon(self._flush_aborts)
        self._aborts.add(request_id)

    def _flush_aborts(self) -> None:
        ids, self._aborts = list(self._aborts), set()
        if ids and self.available:
            self._spawn(self._send_aborts(ids))

    async def _send_aborts(self, ids: list[str]) -> None:
        with contextlib.suppress(RayError):
            await self.actor.abort.remote(ids)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def abort(self, request_id: str | Iterable[str], internal: bool = False) -> None:
        ids = [request_id] if isinstance(request_id, str) else list(request_id)
        if ids and self.available:
            with contextlib.suppress(RayActorError):  # a dead replica has no calls to abort
                await self.actor.abort.remote(ids)

    async def _call(self, method: str, *args: Any, default: Any = None, **kwargs: Any) -> Any:
        if not self.available:
            return default
        try:
            return await self.actor.call.remote(method, args, kwargs)
        except RayActorError:
            return default

    # The fan-outs the router sends to every replica. A restarting replica is skipped (it comes
    # back fresh: unpaused, awake, caches empty).
    async def get_supported_tasks(self) -> Any:
        return await self._call("get_supported_tasks", default=("generate",))

    async def is_tracing_enabled(self) -> bool:
        return self.vllm_config.observability_config.otlp_traces_endpoint is not None

    async def is_sleeping(self) -> bool:
        return bool(await self._call("is_sleeping", default=False))

    async def is_paused(self) -> bool:
        return bool(await self._call("is_paused", default=False))

    async def do_log_stats(self) -> None:
        await self._call("do_log_stats")

    async def check_health(self) -> None:
        if self._dead_for_good:
            raise self.dead_error
        await self._call("check_health")

    async def start_profile(self, profile_prefix: str | None = None, **kwargs: Any) -> None:
        await self._call("start_profile", profile_prefix, **kwargs)

    async def stop_profile(self) -> None:
        await self._call("stop_profile")

    async def reset_mm_cache(self) -> None:
        await self._call("reset_mm_cache")

    async def reset_encoder_cache(self) -> None:
        await self._call("reset_encoder_cache")

    async def reset_prefix_cache(self, reset_running_requests: bool = False, reset_connector: bool = False) -> bool:
        return bool(await self._call("reset_prefix_cache", reset_running_requests, reset_connector, default=True))

    async def sleep(self, level: int = 1, mode: Any = "abort") -> None:
        await self._call("sleep", level, mode)

    async def wake_up(self, tags: list[str] | None = None) -> bool:
        return await self._call("wake_up", tags, default=True) is not False

    async def release_kv_cache_memory(self) -> None:
        await self._call("release_kv_cache_memory")

    async def add_lora(self, lora_request: Any) -> bool:
        return bool(await self._call("add_lora", lora_request, default=False))

    async def pause_generation(self, *, mode: Any = "abort", clear_cache: bool = True) -> None:
        await self._call("pause_generation", mode=mode, clear_cache=clear_cache)

    async def resume_generation(self) -> None:
        await self._call("resume_generation")

    async def notify_kv_transfer_request_rejected(self, request_id: str, kv_transfer_params: dict[str, Any], *, data_parallel_rank: int | None = None) -> None:
        await self._call("notify_kv_transfer_request_rejected", request_id, kv_transfer_params, data_parallel_rank=data_parallel_rank)


# -- routing around replicas that are down --------------------------------------------------------


class HealthAwareBalancer:
    """The Rust `LoadBalancer` with replicas that can go down and come back.

    The Rust balancer has no call to take an engine out, so this overlay keeps its decisions
    while every replica is up and corrects them otherwise: a call it puts on an unavailable
    replica is counted back there (`release`) and placed on the least-used available replica
    instead; a long call of a program pinned to an unavailable replica re-pins the program here
    (Python-side pins win over the Rust pin until the program ends). Counts of calls placed by
    the overlay are kept beside the Rust counts, so `loads()` stays exact."""

    def __init__(self, inner: Any, replicas: Sequence[Any]) -> None:
        self.inner = inner
        self.replicas = replicas
        self._pins: dict[int, int] = {}  # program -> replica, for programs re-pinned here
        self._extra = [0] * inner.num_engines  # outstanding calls placed by the overlay

    def _up(self, index: int) -> bool:
        replica = self.replicas[index]
        return bool(getattr(replica, "available", True)) and not replica.errored

    def route(self, program_id: int, prompt_tokens: int) -> int:
        pin = self._pins.get(program_id)
        if pin is not None and prompt_tokens > self.inner.short_call_tokens and self._up(pin):
            self._extra[pin] += 1
            return pin
        index = self.inner.route(program_id, prompt_tokens)
        if self._up(index):
            return index
        self.inner.release(index)
        loads = self.loads()
        up = [i for i in range(len(loads)) if self._up(i)]
        if not up:
            raise ReplicaUnavailableError("no engine replica is available (all are restarting): retry later")
        choice = min(up, key=lambda i: (loads[i], i))
        if prompt_tokens > self.inner.short_call_tokens:
            self._pins[program_id] = choice
        self._extra[choice] += 1
        return choice

    def release(self, engine: int) -> None:
        if self._extra[engine] > 0:
            self._extra[engine] -= 1
        else:
            self.inner.release(engine)

    def forget(self, program_id: int) -> None:
        self._pins.pop(program_id, None)
        self.inner.forget(program_id)

    def pinned(self, program_id: int) -> int | None:
        pin = self._pins.get(program_id)
        return pin if pin is not None else self.inner.pinned(program_id)

    def loads(self) -> list[int]:
        return [a + b for a, b in zip(self.inner.loads(), self._extra, strict=True)]

    @property
    def num_engines(self) -> int:
        return int(self.inner.num_engines)

    @property
    def short_call_tokens(self) -> int:
        return int(self.inner.short_call_tokens)

    @property
    def policy(self) -> Any:
        return self.inner.policy


# -- starting them --------------------------------------------------------------------------------


def connect(address: str) -> bool:
    """Join the Ray cluster at `address` ("auto", "host:port", "ray://..."); True if this call
    connected (so the caller disconnects at shut-down)."""
    if ray.is_initialized():
        return False
    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    return True


def actor_options(options: Any, index: int) -> dict[str, Any]:
    """Where replica `index` runs: one GPU on clusters with GPUs, else `ray_num_cpus` CPUs and
    the custom `ray_resources`; spread over the nodes."""
    gpus = ray.cluster_resources().get("GPU", 0)
    opts: dict[str, Any] = dict(
        name=None,
        max_restarts=options.ray_max_restarts,
        max_task_retries=0,  # a call lost with its actor fails; it is not replayed
        scheduling_strategy="SPREAD",
        num_cpus=options.ray_num_cpus,
    )
    if gpus >= 1:
        opts["num_gpus"] = 1
    if options.ray_resources:
        opts["resources"] = dict(options.ray_resources)
    return opts


async def start_ray_replicas(options: Any, engine_args: dict[str, Any]) -> list[RayReplica]:
    """Start `options.engines` replica actors at once and wait for all of them."""
    frontend = await asyncio.to_thread(Frontend, engine_args)
    remote_cls = ray.remote(ReplicaActor)
    replicas = [
        RayReplica(i, remote_cls.options(**actor_options(options, i)).remote(engine_args, i), frontend, options.ray_max_restarts)
        for i in range(options.engines)
    ]
    try:
        await asyncio.gather(*(r.start() for r in replicas))
    except BaseException:
        await asyncio.to_thread(lambda: [r.shutdown(timeout=10) for r in replicas])
        frontend.shutdown()
        raise
    return replicas
