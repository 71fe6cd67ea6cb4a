"""Running calls for the HTTP handlers: admission (overload, readiness), program and parent
checks, and the bookkeeping every call leaves behind (its record in the program table, metrics,
aborting what is left of it in the engine when the client goes away).

    call = calls.admit(identity, owner)        # 429/503/400 before any work is done
    with calls.run(call):                      # vLLM's serving layer generates inside
        ...

Inside `run`, the engine router sees the call through `CURRENT_CALL` and reports each engine
request vLLM's serving layer makes for it (one per prompt, or per turn of a Responses call).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from autellix.engine import EngineDriver
from autellix.engine.tags import CURRENT_CALL, CallTag
from autellix.server.errors import ApiError, bad_request
from autellix.server.identity import CallIdentity
from autellix.server.metrics import FrontEndMetrics
from autellix.server.programs import CallRecord, Program, ProgramTable, new_call_id
from autellix.server.settings import ServerSettings

log = logging.getLogger("autellix.server")

# vLLM's finish reasons for a request that ran to its end (not aborted, not failed).
COMPLETED_REASONS = frozenset({"stop", "length"})


def not_found_program(program_id: str) -> ApiError:
    return ApiError(404, f"program {program_id!r} does not exist or has ended", param="program_id", code="program_not_found")


@dataclass
class AdmittedCall:
    """A call that passed every check and counts as outstanding until its run ends."""

    id: str
    program: Program
    identity: CallIdentity
    parent_ids: tuple[str, ...]  # its parents' call ids, however the client named them
    parent_requests: tuple[str, ...]  # engine request ids of its parents


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
            self.metrics.call_rejected()
            raise self.unavailable("the engine is not ready (starting, shutting down, or an engine died): retry later")

    def admit(self, identity: CallIdentity, owner: str | None) -> AdmittedCall:
        self.check_ready()
        if self.outstanding >= self.settings.max_queued_calls:
            self.metrics.call_rejected()
            raise ApiError(
                429,
                f"the server has {self.outstanding} calls outstanding (limit {self.settings.max_queued_calls}): retry later",
                code="overloaded",
                headers={"Retry-After": str(self.settings.retry_after)},
            )
        if identity.program_id is None:
            if identity.parent_ids:
                raise bad_request("'parent_ids' need a program id: parents are earlier calls of the same program", param="parent_ids")
            program = self.start_program(owner, solo=True)
        else:
            program = self.programs.get(identity.program_id, owner)
        parents = [program.find_call(p) if program else None for p in identity.parent_ids]
        unknown = [p for p, record in zip(identity.parent_ids, parents) if record is None]
        if unknown:
            raise bad_request(
                f"parent ids {', '.join(map(repr, unknown))} are not earlier calls of program {identity.program_id!r}",
                param="parent_ids",
            )
        if program is None:  # a program id the client chose starts its program on first use
            program = self.start_program(owner, identity.program_id)
        found = [record for record in parents if record is not None]
        parent_requests = tuple(r for record in found for r in record.engine_requests)
        # Counted from here: the caller enters run() at once (no await in between), whose exit
        # gives it back.
        self.outstanding += 1
        return AdmittedCall(new_call_id(), program, identity, tuple(dict.fromkeys(r.id for r in found)), parent_requests)

    def run(self, call: AdmittedCall) -> CallRun:
        return CallRun(self, call)

    # -- programs ----------------------------------------------------------------------------

    def start_program(
        self, owner: str | None, program_id: str | None = None, *, solo: bool = False, metadata: dict[str, Any] | None = None
    ) -> Program:
        program = self.programs.create(owner, program_id, solo=solo, metadata=metadata)
        self.metrics.program_started()
        return program

    async def end_program(self, program: Program) -> int:
        """Forget a program: abort its outstanding calls, drop it from the engines. Returns how
        many calls were aborted."""
        self.programs.remove(program)
        aborted = [program.calls[c] for c in sorted(program.active) if c in program.calls]
        live = [r for record in aborted for r in record.live_requests]
        if live:
            try:
                await self.driver.abort(live)
            except Exception:
                log.exception("aborting the calls of program %s failed", program.id)
        if program.first_arrival is not None:
            self.metrics.program_ended(program.waiting_total, program.service_total, program.latency())
        try:
            await self.driver.end_program(program.internal_id)
        except Exception:  # an engine died: nothing left to forget there
            log.warning("ending program %s in the engines failed", program.id, exc_info=True)
        return len(aborted)

    def in_background(self, work: Coroutine[Any, Any, Any], what: str) -> None:
        """Engine work a client need not wait for (ending a one-call program, aborting what is
        left of a call); awaited by close()."""

        async def logged() -> None:
            try:
                await work
            except Exception:
                log.warning("%s failed", what, exc_info=True)

        task = asyncio.get_running_loop().create_task(logged())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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


class CallRun:
    """One admitted call while vLLM's serving layer runs it: makes the call current for the
    engine router, observes its engine requests, and on exit records how it ended and aborts
    whatever of it is still running in the engine (client gone, error, cancellation)."""

    def __init__(self, service: CallService, call: AdmittedCall) -> None:
        self.service = service
        self.call = call
        self.record = CallRecord(
            id=call.id,
            thread_id=call.identity.thread_id,
            parent_ids=list(call.parent_ids),
            arrival=time.monotonic(),
        )
        self.finish_reasons: list[str | None] = []
        self.refused = False  # vLLM's serving layer answered with an error before any engine request
        self._token: Any = None

    def __enter__(self) -> CallRun:
        self.call.program.add_call(self.record)
        identity = self.call.identity
        tag = CallTag(
            self.call.program.internal_id, identity.thread_id, self.call.parent_requests, self, identity.calls_left
        )
        self._token = CURRENT_CALL.set(tag)
        return self

    def alias(self, name: str) -> None:
        """Another name clients may give this call as a parent (its response id)."""
        self.call.program.alias(name, self.call.id)

    @property
    def completed(self) -> bool:
        return bool(self.finish_reasons) and not self.record.live_requests and all(
            r in COMPLETED_REASONS for r in self.finish_reasons
        )

    # CallObserver: what the router reports
    def engine_request_started(self, request_id: str, engine: int, prompt_tokens: int) -> None:
        record = self.record
        self.alias(request_id)
        record.engine_requests.append(request_id)
        record.live_requests.add(request_id)
        record.prompt_tokens += prompt_tokens
        if record.engine is None:
            record.engine = engine
            self.service.metrics.placed(engine)

    def engine_request_progressed(self, request_id: str, new_tokens: int) -> None:
        if self.record.first_output is None:
            self.record.first_output = time.monotonic()
        self.record.completion_tokens += new_tokens

    def engine_request_ended(self, request_id: str, finish_reason: str | None) -> None:
        self.record.live_requests.discard(request_id)
        self.finish_reasons.append(finish_reason)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        CURRENT_CALL.reset(self._token)
        service, record, program = self.service, self.record, self.call.program
        service.outstanding -= 1
        if self.refused and not record.engine_requests:
            program.drop_call(record)  # it never ran: leave no trace but the rejection
            service.metrics.call_rejected()
            if program.solo:
                service.programs.remove(program)
            return
        record.finished_at = time.monotonic()
        record.state = "finished" if self.completed else "aborted"
        if exc_type is None or issubclass(exc_type, (asyncio.CancelledError, ConnectionError, GeneratorExit)):
            status = record.state
        else:
            status = "failed"
        service.metrics.call_ended(status, record.latency)
        program.finish_call(record)
        if record.live_requests:  # vLLM normally aborts these itself when cancelled
            service.in_background(service.driver.abort(sorted(record.live_requests)), f"aborting call {record.id}")
        if program.solo:
            service.in_background(service.end_program(program), f"ending program {program.id}")
