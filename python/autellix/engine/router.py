"""One vLLM `EngineClient` over N engine replicas, routed by the Rust core's load balancer.

vLLM's OpenAI serving classes (chat, completions, Responses, Anthropic Messages) are built over
this router as over a single AsyncLLM: they render, validate and stream; the router picks the
replica of each call (short calls: the least-used replica; long ones: the replica the program is
pinned to, where its KV cache lives), tags the call with its program (`tags.CURRENT_CALL`) for
the scheduler plug-in, and reports what the engine did to the call's observer.

Replica-wide operations (caches, sleep, pause, profiling) go to every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import Any

from vllm.engine.protocol import EngineClient
from vllm.exceptions import RetryableRequestError
from vllm.renderers.inputs.preprocess import extract_prompt_len

from autellix.engine.tags import CURRENT_CALL, CallTag

# Calls that name no program (the router used without the front end) are routed as this one
# program: short ones spread, long ones share a replica.
_UNTAGGED_PROGRAM = 0


class ReplicaRouter(EngineClient):
    def __init__(self, replicas: Sequence[Any], balancer: Any) -> None:
        if not replicas:
            raise ValueError("a router needs at least one replica")
        first = replicas[0]
        self.replicas = list(replicas)
        self.balancer = balancer
        # Every replica runs the same model and settings: one config and renderer serve all.
        self.vllm_config = first.vllm_config
        self.model_config = first.model_config
        self.renderer = first.renderer
        self.input_processor = first.input_processor
        self._placed: dict[str, int] = {}  # live engine request id -> replica

    # -- calls -------------------------------------------------------------------------------

    def placement(self, request_id: str) -> int | None:
        return self._placed.get(request_id)

    def _prompt_tokens(self, prompt: Any) -> int:
        try:
            return int(extract_prompt_len(self.model_config, prompt) or 0)
        except Exception:  # a prompt form the balancer need not understand: route as short
            return 0

    async def generate(  # type: ignore[override]
        self, prompt: Any, sampling_params: Any, request_id: str, *, call: CallTag | None = None, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        """vLLM's generate, on the replica the balancer picks. The call's tag is `call` or, as
        vLLM's serving classes cannot pass one, `CURRENT_CALL` (read when the stream starts)."""
        tag = call if call is not None else CURRENT_CALL.get()
        prompt_tokens = self._prompt_tokens(prompt)
        program = tag.program_id if tag is not None else _UNTAGGED_PROGRAM
        try:
            index = self.balancer.route(program, prompt_tokens)
        except RuntimeError as e:  # no replica can take it (all down): vLLM answers 503, in a stream too
            raise RetryableRequestError(str(e)) from e
        if tag is not None:
            sampling_params = tag.tag(sampling_params)
        observer = tag.observer if tag is not None else None
        self._placed[request_id] = index
        if observer is not None:
            observer.engine_request_started(request_id, index, prompt_tokens)
        finish_reason: str | None = None
        try:
            stream = self.replicas[index].generate(prompt, sampling_params, request_id, **kwargs)
            async with contextlib.aclosing(stream):
                async for output in stream:
                    if observer is not None:
                        observer.engine_request_progressed(request_id, sum(len(o.token_ids) for o in output.outputs))
                    if output.finished:
                        finish_reason = output.outputs[0].finish_reason if output.outputs else "stop"
                    yield output
        finally:
            self._placed.pop(request_id, None)
            self.balancer.release(index)
            if observer is not None:
                observer.engine_request_ended(request_id, finish_reason)

    async def encode(self, prompt: Any, pooling_params: Any, request_id: str, *args: Any, **kwargs: Any):  # type: ignore[override]
        raise NotImplementedError("Autellix serves generative models only")

    async def abort(self, request_id: str | Iterable[str], internal: bool = False) -> None:
        ids = [request_id] if isinstance(request_id, str) else list(request_id)
        by_replica: dict[int, list[str]] = {}
        for rid in ids:
            placed = self._placed.get(rid)
            for index in [placed] if placed is not None else range(len(self.replicas)):
                by_replica.setdefault(index, []).append(rid)
        await asyncio.gather(*(self.replicas[i].abort(r) for i, r in by_replica.items()))

    def check_admission(self, n: int = 1, request_id: str | None = None) -> None:
        # The replica the call will most likely land on decides.
        loads = self.balancer.loads()
        self.replicas[loads.index(min(loads))].check_admission(n, request_id)

    async def notify_kv_transfer_request_rejected(self, request_id: str, kv_transfer_params: dict[str, Any], *, data_parallel_rank: int | None = None) -> None:
        await self._each("notify_kv_transfer_request_rejected", request_id, kv_transfer_params, data_parallel_rank=data_parallel_rank)

    # -- state -------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return all(r.is_running for r in self.replicas)

    @property
    def is_stopped(self) -> bool:
        return any(r.is_stopped for r in self.replicas)

    @property
    def errored(self) -> bool:
        return any(r.errored for r in self.replicas)

    @property
    def dead_error(self) -> BaseException:
        dead = [r for r in self.replicas if r.errored]
        return (dead or self.replicas)[0].dead_error

    async def get_supported_tasks(self) -> Any:
        return await self.replicas[0].get_supported_tasks()

    async def is_tracing_enabled(self) -> bool:
        return bool(await self.replicas[0].is_tracing_enabled())

    async def is_sleeping(self) -> bool:
        return all(await self._each("is_sleeping"))

    async def is_paused(self) -> bool:
        return all(await self._each("is_paused"))

    # -- replica-wide operations ---------------------------------------------------------------

    async def _each(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        return list(await asyncio.gather(*(getattr(r, method)(*args, **kwargs) for r in self.replicas)))

    async def do_log_stats(self) -> None:
        await self._each("do_log_stats")

    async def check_health(self) -> None:
        await self._each("check_health")

    async def start_profile(self, profile_prefix: str | None = None, **kwargs: Any) -> None:
        await self._each("start_profile", profile_prefix, **kwargs)

    async def stop_profile(self) -> None:
        await self._each("stop_profile")

    async def reset_mm_cache(self) -> None:
        await self._each("reset_mm_cache")

    async def reset_encoder_cache(self) -> None:
        await self._each("reset_encoder_cache")

    async def reset_prefix_cache(self, reset_running_requests: bool = False, reset_connector: bool = False) -> bool:
        return all(await self._each("reset_prefix_cache", reset_running_requests, reset_connector))

    async def sleep(self, level: int = 1, mode: Any = "abort") -> None:
        await self._each("sleep", level, mode)

    async def wake_up(self, tags: list[str] | None = None) -> bool:  # type: ignore[override]
        return all(r is not False for r in await self._each("wake_up", tags))

    async def release_kv_cache_memory(self) -> None:
        await self._each("release_kv_cache_memory")

    async def add_lora(self, lora_request: Any) -> bool:
        return all(await self._each("add_lora", lora_request))

    async def pause_generation(self, *, mode: Any = "abort", clear_cache: bool = True) -> None:
        await self._each("pause_generation", mode=mode, clear_cache=clear_cache)

    async def resume_generation(self) -> None:
        await self._each("resume_generation")

    def shutdown(self, timeout: float | None = None) -> None:
        for replica in self.replicas:
            replica.shutdown()
