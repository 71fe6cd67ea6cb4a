"""Engine replicas behind the core's load balancer: start, route, stream, abort, shut down.

Each replica is a vLLM `AsyncLLM`, whose engine core runs in a child process with Autellix's
scheduler plugged in (or vLLM's own, for the baseline). `driver.client` is one vLLM
`EngineClient` over all of them (`router.ReplicaRouter`): vLLM's OpenAI serving classes run over
it, and it routes each call with the Rust `LoadBalancer`. `driver.generate` is the same path for
callers that bring their own token ids (benches, tests). Closing a stream early (a client went
away) aborts the call in the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import autellix_core

from autellix.contract import VANILLA_VLLM
from autellix.engine.options import EngineOptions
from autellix.engine.tags import CallTag
from autellix.models import DEFAULT_MODEL, resolve_model

if TYPE_CHECKING:  # the router imports vLLM, which the driver loads only when it starts
    from autellix.engine.router import ReplicaRouter

log = logging.getLogger("autellix.engine")


class EngineUnavailableError(RuntimeError):
    """No replica can take the call (not started, shutting down, or dead)."""


@dataclass(frozen=True)
class CallChunk:
    """What one call produced since its previous chunk."""

    text: str
    token_ids: list[int]
    finished: bool
    finish_reason: str | None  # "stop", "length" or "abort" once finished
    prompt_tokens: int
    completion_tokens: int  # so far, in all
    engine: int


class EngineDriver:
    """N vLLM replicas behind the Autellix load balancer. Use `async with` or start/shutdown."""

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self.model_path: Path | None = None
        self.served_model_name = options.served_model_name or _served_name(options.model)
        self.balancer = autellix_core.LoadBalancer(
            options.engines, short_call_tokens=options.short_call_tokens
        )
        self._engines: list[Any] = []  # vllm AsyncLLM
        self._client: ReplicaRouter | None = None
        self._tokenizer: Any = None
        self._max_model_len = 0
        self._accepting = False
        self._ray_connected = False  # this driver joined the Ray cluster (and leaves it at shut-down)

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Resolve (build or convert) the model, then start every replica."""
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from autellix.engine.router import ReplicaRouter

        self.model_path = await asyncio.to_thread(resolve_model, self.options.model)
        args = self.options.vllm_engine_args(str(self.model_path), self.served_model_name)
        started = time.monotonic()
        try:
            if self.options.ray_address is not None:  # replicas as Ray actors (engine/ray_replicas.py)
                await self._start_ray(args)
            for index in range(len(self._engines), self.options.engines):
                log.info("starting engine %d/%d (%s)", index + 1, self.options.engines, self.options.scheduler)
                # No local keeps an engine: shutdown() must be able to drop the last reference.
                self._engines.append(await asyncio.to_thread(AsyncLLM.from_engine_args, AsyncEngineArgs(**args)))
        except BaseException:
            await self.shutdown()
            raise
        self._client = ReplicaRouter(self._engines, self.balancer)
        self._tokenizer = self._engines[0].get_tokenizer()
        self._max_model_len = self._engines[0].model_config.max_model_len
        self._accepting = True
        log.info(
            "%d engine(s) ready in %.1f s: model %s (%s), max_model_len %d",
            len(self._engines), time.monotonic() - started, self.served_model_name,
            self.model_path, self._max_model_len,
        )

    async def _start_ray(self, args: dict[str, Any]) -> None:
        from autellix.engine import ray_replicas

        self._ray_connected = await asyncio.to_thread(ray_replicas.connect, self.options.ray_address)
        self._engines.extend(await ray_replicas.start_ray_replicas(self.options, args))
        # Routes around replicas that are down (restarting) and re-pins their programs.
        self.balancer = ray_replicas.HealthAwareBalancer(self.balancer, self._engines)

    async def shutdown(self) -> None:
        """Stop every replica and its engine-core process. Safe to call twice."""
        self._accepting = False
        self._client = None
        engines, self._engines = self._engines, []
        while engines:
            engine = engines.pop(0)
            await _stop_reading_outputs(engine)
            await asyncio.to_thread(engine.shutdown)
        if self._ray_connected:
            import ray

            self._ray_connected = False
            await asyncio.to_thread(ray.shutdown)

    async def __aenter__(self) -> EngineDriver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    # -- what callers need to know -------------------------------------------------------------

    @property
    def client(self) -> ReplicaRouter:
        """The one vLLM EngineClient over every replica (after start)."""
        if self._client is None:
            raise EngineUnavailableError("the engines are not started")
        return self._client

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    @property
    def num_engines(self) -> int:
        return len(self._engines)

    def dead_engines(self) -> list[int]:
        """Replicas whose engine core has died (their calls fail; /health says 503)."""
        return [i for i, engine in enumerate(self._engines) if engine.errored]

    def unavailable_engines(self) -> list[int]:
        """Ray replicas that are down and being restarted (calls go to the others meanwhile)."""
        return [i for i, engine in enumerate(self._engines) if not getattr(engine, "available", True) and not engine.errored]

    def ready(self) -> bool:
        return (
            self._accepting and bool(self._engines) and not self.dead_engines()
            and len(self.unavailable_engines()) < len(self._engines)
        )

    def loads(self) -> list[int]:
        """Outstanding calls per engine, as the balancer counts them."""
        return self.balancer.loads()

    def tokenize(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    # -- calls -------------------------------------------------------------------------------

    async def generate(
        self,
        request_id: str,
        prompt: str | Sequence[int],
        params: Any,  # vllm.SamplingParams; copied, not changed
        *,
        program_id: int,
        thread_id: int | None = None,
        parents: Sequence[str] = (),
        calls_left: int | None = None,
    ) -> AsyncIterator[CallChunk]:
        """Run one call and yield what it produces as it comes. `parents` are request ids of
        earlier calls of the same program (ATLAS); `calls_left`, the calls the program will still
        make, this one included (`contract.CALLS_LEFT_KEY`). Closing the iterator aborts the call."""
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        if not self.ready():
            raise EngineUnavailableError(
                "no engine is ready (starting, shutting down, or an engine died): retry later"
            )
        token_ids = self.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        params = params.clone()
        params.output_kind = RequestOutputKind.DELTA
        client = self.client
        tag = CallTag(program_id, thread_id, tuple(parents), calls_left=calls_left)
        stream = client.generate(TokensPrompt(prompt_token_ids=token_ids), params, request_id, call=tag)
        completion_tokens = 0
        engine: int | None = None
        async with contextlib.aclosing(stream):
            async for output in stream:
                if engine is None:
                    engine = client.placement(request_id)
                completion = output.outputs[0]
                completion_tokens += len(completion.token_ids)
                yield CallChunk(
                    text=completion.text,
                    token_ids=list(completion.token_ids),
                    finished=output.finished,
                    finish_reason=completion.finish_reason if output.finished else None,
                    prompt_tokens=len(token_ids),
                    completion_tokens=completion_tokens,
                    engine=engine if engine is not None else 0,
                )

    async def abort(self, request_ids: Sequence[str]) -> None:
        """Abort calls wherever they run (unknown or finished ids are ignored)."""
        if self._client is not None:
            await self._client.abort(list(request_ids))

    # -- programs ----------------------------------------------------------------------------

    async def end_program(self, program_id: int) -> None:
        """Forget a program: unpin it and drop it from every engine's scheduler table."""
        self.balancer.forget(program_id)
        if self.options.scheduler == VANILLA_VLLM:
            return
        await asyncio.gather(
            *(e.engine_core.call_utility_async("autellix_end_program", program_id) for e in self._engines)
        )

    async def snapshots(self, program_ids: Sequence[int] = ()) -> list[dict[str, Any] | None]:
        """Per engine, the Autellix scheduler's queues, counters and the listed programs
        (None for an engine running vLLM's own scheduler)."""
        if self.options.scheduler == VANILLA_VLLM:
            return [None] * len(self._engines)
        return list(
            await asyncio.gather(
                *(
                    e.engine_core.call_utility_async("autellix_snapshot", list(program_ids))
                    for e in self._engines
                )
            )
        )


async def _stop_reading_outputs(engine: Any) -> None:
    """Cancel an `AsyncLLM`'s task that reads its engine core's outputs, before the core stops.
    vLLM stops the core first and the task then reads the core's exit as a crash, logging
    EngineDeadError on a clean shut-down (vllm-project/vllm#48745). Ray replicas have no such task."""
    handler = getattr(engine, "output_handler", None)
    if isinstance(handler, asyncio.Task) and not handler.done():
        handler.cancel()
        await asyncio.wait([handler])  # unlike awaiting it, never raises its CancelledError here


def _served_name(model: str | None) -> str:
    if model is None:
        return DEFAULT_MODEL
    return Path(model).name if "/" in model else model
