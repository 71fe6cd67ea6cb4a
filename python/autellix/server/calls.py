"""Running calls for the HTTP handlers: admission (overload, readiness), program and parent
checks, the engine stream, and the bookkeeping every call leaves behind (its record in the program
table, metrics, aborting it in the engine when the client goes away).

    call = calls.admit(tags, owner)            # 429/503/404/400 before any work is done
    async with calls.run(call, token_ids, params) as stream:
        async for chunk in stream: ...
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from autellix.engine import CallChunk, EngineDriver, EngineUnavailableError
from autellix.server.errors import ApiError, bad_request
from autellix.server.metrics import FrontEndMetrics
from autellix.server.programs import CallRecord, Program, ProgramTable, new_call_id
from autellix.server.protocol import CallTags
from autellix.server.settings import ServerSettings

log = logging.getLogger("autellix.server")

FINISHED_REASONS = ("stop", "length")


def not_found_program(program_id: str) -> ApiError:
    return ApiError(404, f"program {program_id!r} does not exist or has ended", param="program_id", code="program_not_found")


@dataclass
class AdmittedCall:
    """A call that passed every check and counts as outstanding until its stream is closed."""

    id: str
    program: Program
    tags: CallTags


class CallService:
    def __init__(self, driver: EngineDriver, settings: ServerSettings, metrics: FrontEndMetrics) -> None:
        self.driver = driver
        self.settings = settings
        self.metrics = metrics
        self.programs = ProgramTable()
        self.outstanding = 0
        self._background: set[asyncio.Task[Any]] = set()

    # -- admission ---------------------------------------------------------------------------

    def unavailable(self, message: str) -> ApiError:
        return ApiError(503, message, code="engine_unavailable", headers={"Retry-After": str(self.settings.retry_after)})

    def check_ready(self) -> None:
        if not self.driver.ready():
            self.metrics.calls_total.inc("rejected")
            raise self.unavailable("the engine is not ready (starting, shutting down, or an engine died): retry later")

    def admit(self, tags: CallTags, owner: str | None) -> AdmittedCall:
        self.check_ready()
        if self.outstanding >= self.settings.max_queued_calls:
            self.metrics.calls_total.inc("rejected")
            raise ApiError(
                429,
                f"the server has {self.outstanding} calls outstanding (limit {self.settings.max_queued_calls}): retry later",
                code="overloaded",
                headers={"Retry-After": str(self.settings.retry_after)},
            )
        if tags.program_id is None:
            if tags.parent_ids:
                raise bad_request("'parent_ids' need a program id: parents are earlier calls of the same program", param="parent_ids")
            program = self.start_program(owner, solo=True)
        else:
            found = self.programs.get(tags.program_id, owner)
            if found is None:
                raise not_found_program(tags.program_id)
            program = found
            unknown = [p for p in tags.parent_ids if p not in program.calls]
            if unknown:
                raise bad_request(
                    f"parent ids {', '.join(map(repr, unknown))} are not earlier calls of program {program.id!r}",
                    param="parent_ids",
                )
        call_id = new_call_id()
        # Counted from here: the caller hands it to run() at once (no await in between), whose
        # exit gives it back.
        self.outstanding += 1
        return AdmittedCall(call_id, program, tags)

    def run(self, call: AdmittedCall, token_ids: Sequence[int], params: Any) -> CallStream:
        return CallStream(self, call, token_ids, params)

    # -- programs ----------------------------------------------------------------------------

    def start_program(self, owner: str | None, *, solo: bool = False, metadata: dict[str, Any] | None = None) -> Program:
        program = self.programs.create(owner, solo=solo, metadata=metadata)
        self.metrics.programs_total.inc()
        return program

    async def end_program(self, program: Program) -> int:
        """Forget a program: abort its outstanding calls, drop it from the engines. Returns how
        many calls were aborted."""
        self.programs.remove(program)
        aborted = sorted(program.active)
        if aborted:
            try:
                await self.driver.abort(aborted)
            except Exception:
                log.exception("aborting the calls of program %s failed", program.id)
        self._observe_program(program)
        try:
            await self.driver.end_program(program.internal_id)
        except Exception:  # an engine died: nothing left to forget there
            log.warning("ending program %s in the engines failed", program.id, exc_info=True)
        return len(aborted)

    def end_in_background(self, program: Program) -> None:
        # One-call programs end after their call; the client need not wait for the engines.
        task = asyncio.get_running_loop().create_task(self.end_program(program))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _observe_program(self, program: Program) -> None:
        if program.first_arrival is None:
            return  # it never made a call
        self.metrics.program_waiting.observe(program.waiting_total)
        self.metrics.program_service.observe(program.service_total)
        latency = program.latency()
        if latency is not None:
            self.metrics.program_latency.observe(latency)

    async def reap_idle(self) -> int:
        cutoff = time.monotonic() - self.settings.program_ttl
        idle = self.programs.idle_since(cutoff)
        for program in idle:
            log.info("ending program %s: idle for more than %.0f s", program.id, self.settings.program_ttl)
            await self.end_program(program)
        return len(idle)

    async def close(self) -> None:
        """Let background program ends finish (server shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


class CallStream:
    """The engine's chunks for one admitted call; on exit, records how it ended and aborts it in
    the engine if it did not finish (client gone, error, cancellation)."""

    def __init__(self, service: CallService, call: AdmittedCall, token_ids: Sequence[int], params: Any) -> None:
        self.service = service
        self.call = call
        self.record = CallRecord(
            id=call.id,
            thread_id=call.tags.thread_id,
            parent_ids=list(call.tags.parent_ids),
            arrival=time.monotonic(),
            prompt_tokens=len(token_ids),
        )
        self.finish_reason: str | None = None
        self._token_ids = token_ids
        self._params = params
        self._stream: Any = None

    async def __aenter__(self) -> CallStream:
        self.call.program.add_call(self.record)
        self._stream = self.service.driver.generate(
            self.call.id,
            self._token_ids,
            self._params,
            program_id=self.call.program.internal_id,
            thread_id=self.call.tags.thread_id,
            parents=self.call.tags.parent_ids,
        )
        return self

    def __aiter__(self) -> CallStream:
        return self

    async def __anext__(self) -> CallChunk:
        if self.finish_reason is not None:
            raise StopAsyncIteration
        try:
            chunk = await self._stream.__anext__()
        except (StopAsyncIteration, ApiError):
            raise
        except EngineUnavailableError as e:
            raise self.service.unavailable(str(e)) from None
        except ValueError as e:
            # vLLM validates a request when it is added, before any output: the request's fault.
            if self.record.first_output is None and self.service.driver.ready():
                raise bad_request(f"the engine refused the call: {e}") from None
            raise
        except Exception as e:
            if self.service.driver.ready():
                raise
            raise self.service.unavailable(f"the engine failed: {e}") from e
        record = self.record
        if record.first_output is None:
            record.first_output = time.monotonic()
            record.engine = chunk.engine
            self.service.metrics.placements.inc(str(chunk.engine))
        record.completion_tokens = chunk.completion_tokens
        if chunk.finished:
            self.finish_reason = chunk.finish_reason or "stop"
        return chunk

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        service, record = self.service, self.record
        record.finished_at = time.monotonic()
        completed = self.finish_reason in FINISHED_REASONS
        ended_in_engine = self.finish_reason is not None
        record.state = "finished" if completed else "aborted"
        if exc_type is None or issubclass(exc_type, (asyncio.CancelledError, ConnectionError, GeneratorExit)):
            status = record.state
        else:
            status = "failed"
        service.metrics.calls_total.inc(status)
        service.metrics.call_latency.observe(record.latency)
        service.outstanding -= 1
        self.call.program.finish_call(record)
        try:
            if self._stream is not None:
                await asyncio.shield(self._stream.aclose())
            if not ended_in_engine:
                await asyncio.shield(service.driver.abort([self.call.id]))
        except Exception:
            log.warning("aborting call %s failed", self.call.id, exc_info=True)
        finally:
            if self.call.program.solo:
                service.end_in_background(self.call.program)
