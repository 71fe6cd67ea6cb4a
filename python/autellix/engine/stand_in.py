"""Stand-in engine replicas: what `ReplicaRouter` and vLLM's serving layer need of a replica, and
no engine behind it. For benches that measure the front end alone and tests of the server path.

A `StandInReplica` answers `generate` with vLLM `RequestOutput`s of `max_tokens` tokens (always
the same token, finish reason "length"), all at once or at a set token rate per call, with at
most `max_num_seqs` calls running (the others wait their turn, as in an engine's batch). The model
config, renderer and input processor are the real model's, built from vLLM's engine args without
starting an engine, so vLLM's serving classes render and validate exactly as over real replicas.
Tests switch a replica off: `dead = True` (an engine core that died: `errored`) or
`available = False` (a Ray replica that is restarting).

`StandInDriver` is an `EngineDriver` whose replicas are stand-ins: the app, the program layer,
the router and the Rust balancer above them are the real ones.

    driver = StandInDriver(EngineOptions(model="tiny", engines=4), tokens_per_s=None)
    await driver.start()
    app = make_app(ServerSettings(), driver=driver)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable
from typing import Any

from autellix.engine.driver import EngineDriver, EngineUnavailableError
from autellix.engine.options import EngineOptions
from autellix.models import resolve_model

# The token every stand-in call generates (any id the tiny model's vocabulary has).
STAND_IN_TOKEN = 352


class StandInFrontend:
    """The replicas' model config, renderer and input processor, built without an engine (as
    `ray_replicas.Frontend` does for remote replicas)."""

    def __init__(self, engine_args: dict[str, Any]) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.renderers import renderer_from_config
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.input_processor import InputProcessor

        self.vllm_config = AsyncEngineArgs(**engine_args).create_engine_config(
            UsageContext.ENGINE_CONTEXT
        )
        self.model_config = self.vllm_config.model_config
        self.renderer = renderer_from_config(self.vllm_config)
        self.input_processor = InputProcessor(self.vllm_config, self.renderer)

    def shutdown(self) -> None:
        self.renderer.shutdown()


class _StandInUtilities:
    """`engine_core.call_utility_async`: the scheduler plug-in's utilities (end a program,
    snapshot) have nothing to do here."""

    async def call_utility_async(self, name: str, *args: Any) -> Any:
        return None


class StandInReplica:
    """A stand-in engine replica with the interface `ReplicaRouter` needs of one.

    `tokens_per_s` is each call's decode rate (None: every token at once); `max_num_seqs` bounds
    the calls running at once (None: no bound)."""

    def __init__(
        self,
        index: int,
        frontend: StandInFrontend,
        *,
        tokens_per_s: float | None = None,
        max_num_seqs: int | None = None,
        token_id: int = STAND_IN_TOKEN,
    ) -> None:
        self.index = index
        self.vllm_config = frontend.vllm_config
        self.model_config = frontend.model_config
        self.renderer = frontend.renderer
        self.input_processor = frontend.input_processor
        self.engine_core = _StandInUtilities()
        self.tokens_per_s = tokens_per_s
        self.token_id = token_id
        self.token_text = frontend.renderer.get_tokenizer().decode([token_id])
        # The engine core died (errored, for good).
        self.dead = False
        # False: down and coming back (a Ray replica that is restarting).
        self.available = True
        self.calls_started = 0
        self._seats = asyncio.Semaphore(max_num_seqs) if max_num_seqs else None
        # Running request id -> aborted (by `abort` or shutdown).
        self._calls: dict[str, bool] = {}
        self._stopped = False

    # -- calls -------------------------------------------------------------------------------

    async def generate(
        self, prompt: Any, sampling_params: Any, request_id: str, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        from vllm.sampling_params import RequestOutputKind

        if self.errored:
            raise self.dead_error
        if not self.available:
            raise EngineUnavailableError(
                f"stand-in replica {self.index} is down: retry the call"
            )
        if request_id in self._calls:
            raise ValueError(
                f"request id {request_id!r} is already running on stand-in replica {self.index}"
            )
        self._calls[request_id] = False
        self.calls_started += 1
        n = sampling_params.n or 1
        total = max(int(sampling_params.max_tokens or 1), 1)
        prompt_ids = (
            list(prompt.get("prompt_token_ids") or [])
            if isinstance(prompt, dict)
            else []
        )
        prompt_text = prompt.get("prompt") if isinstance(prompt, dict) else None
        delta = sampling_params.output_kind == RequestOutputKind.DELTA
        final_only = sampling_params.output_kind == RequestOutputKind.FINAL_ONLY
        try:
            async with self._seats or contextlib.nullcontext():
                sent = 0  # tokens already in an output (DELTA outputs carry only the new ones)
                for made in range(1, total + 1):
                    if self.tokens_per_s:
                        await asyncio.sleep(1.0 / self.tokens_per_s)
                    if self._calls[
                        request_id
                    ]:  # aborted: the token being made is dropped
                        done = made - 1
                        yield self._output(
                            request_id,
                            prompt_text,
                            prompt_ids,
                            n,
                            done - sent if delta else done,
                            "abort",
                        )
                        return
                    last = made == total
                    if final_only and not last:
                        continue
                    yield self._output(
                        request_id,
                        prompt_text,
                        prompt_ids,
                        n,
                        made - sent if delta else made,
                        "length" if last else None,
                    )
                    sent = made
        finally:
            self._calls.pop(request_id, None)

    def _output(
        self,
        request_id: str,
        prompt: str | None,
        prompt_ids: list[int],
        n: int,
        count: int,
        finish_reason: str | None,
    ) -> Any:
        from vllm.outputs import CompletionOutput, RequestOutput

        outputs = [
            CompletionOutput(
                index=i,
                text=self.token_text * count,
                token_ids=[self.token_id] * count,
                cumulative_logprob=None,
                logprobs=None,
                finish_reason=finish_reason,
            )
            for i in range(n)
        ]
        return RequestOutput(
            request_id,
            prompt,
            prompt_ids,
            None,
            outputs,
            finished=finish_reason is not None,
            num_cached_tokens=0,
        )

    async def abort(
        self, request_id: str | Iterable[str], internal: bool = False
    ) -> None:
        for rid in [request_id] if isinstance(request_id, str) else request_id:
            if rid in self._calls:
                self._calls[rid] = True

    def check_admission(self, n: int = 1, request_id: str | None = None) -> None:
        pass

    def get_tokenizer(self) -> Any:
        return self.renderer.get_tokenizer()

    # -- state -------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._calls)

    @property
    def is_running(self) -> bool:
        return not self._stopped and not self.dead

    @property
    def is_stopped(self) -> bool:
        return self._stopped or self.dead

    @property
    def errored(self) -> bool:
        return self.dead

    @property
    def dead_error(self) -> BaseException:
        from vllm.v1.engine.exceptions import EngineDeadError

        return EngineDeadError()  # as a dead AsyncLLM's

    async def get_supported_tasks(self) -> Any:
        return ("generate",)

    async def is_tracing_enabled(self) -> bool:
        return False

    async def check_health(self) -> None:
        if self.dead:
            raise self.dead_error

    async def is_sleeping(self) -> bool:
        return False

    async def is_paused(self) -> bool:
        return False

    async def reset_prefix_cache(
        self, reset_running_requests: bool = False, reset_connector: bool = False
    ) -> bool:
        return True

    async def wake_up(self, tags: list[str] | None = None) -> bool:
        return True

    async def add_lora(self, lora_request: Any) -> bool:
        return False

    async def _nothing(self, *args: Any, **kwargs: Any) -> None:
        return None

    # Replica-wide operations with nothing to act on.
    do_log_stats = start_profile = stop_profile = _nothing
    reset_mm_cache = reset_encoder_cache = sleep = release_kv_cache_memory = _nothing
    pause_generation = resume_generation = notify_kv_transfer_request_rejected = (
        _nothing
    )

    def shutdown(self, timeout: float | None = None) -> None:
        self._stopped = True
        for rid in self._calls:
            self._calls[rid] = True


class StandInDriver(EngineDriver):
    """An EngineDriver over `options.engines` stand-in replicas (no engine is started).

    `route_around_down` puts the Ray path's `HealthAwareBalancer` over the Rust balancer, so that
    replicas with `available = False` behave as Ray replicas that are restarting."""

    def __init__(
        self,
        options: EngineOptions,
        *,
        tokens_per_s: float | None = None,
        max_num_seqs: int | None = None,
        route_around_down: bool = False,
    ) -> None:
        super().__init__(options)
        self.tokens_per_s = tokens_per_s
        self.stand_in_seqs = max_num_seqs
        self.route_around_down = route_around_down
        self.frontend: StandInFrontend | None = None

    @property
    def replicas(self) -> list[StandInReplica]:
        return list(self._engines)

    async def start(self) -> None:
        from autellix.engine.router import ReplicaRouter

        self.model_path = await asyncio.to_thread(resolve_model, self.options.model)
        args = self.options.vllm_engine_args(
            str(self.model_path), self.served_model_name
        )
        self.frontend = await asyncio.to_thread(StandInFrontend, args)
        self._engines = [
            StandInReplica(
                i,
                self.frontend,
                tokens_per_s=self.tokens_per_s,
                max_num_seqs=self.stand_in_seqs,
            )
            for i in range(self.options.engines)
        ]
        if self.route_around_down:
            from autellix.engine.ray_replicas import HealthAwareBalancer

            self.balancer = HealthAwareBalancer(self.balancer, self._engines)  # type: ignore[assignment]
        self._client = ReplicaRouter(self._engines, self.balancer)
        self._tokenizer = self.frontend.renderer.get_tokenizer()
        self._max_model_len = self.frontend.model_config.max_model_len
        self._accepting = True

    async def shutdown(self) -> None:
        await super().shutdown()
        if self.frontend is not None:
            frontend, self.frontend = self.frontend, None
            frontend.shutdown()
