"""Which program a call belongs to, carried from the HTTP handler to the engine router.

vLLM's serving classes call `engine_client.generate(...)` without knowing about programs. The
front end sets `CURRENT_CALL` around that call (a context variable: it follows the handler's task
and the tasks vLLM spawns from it), and the router reads it to route the call, tag its
`SamplingParams.extra_args` for the plug-in, and tell the observer what the engine did.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from autellix.contract import CALLS_LEFT_KEY, PARENTS_KEY, PROGRAM_KEY, THREAD_KEY


class CallObserver(Protocol):
    """What the router reports about the engine requests of one call."""

    def engine_request_started(self, request_id: str, engine: int, prompt_tokens: int) -> None: ...

    def engine_request_progressed(self, request_id: str, new_tokens: int) -> None: ...

    def engine_request_ended(self, request_id: str, finish_reason: str | None) -> None: ...


@dataclass
class CallTag:
    program_id: int  # the core's program id (contract.CLIENT range)
    thread_id: int | None = None
    # Engine request ids of earlier calls of the same program this one depends on (ATLAS).
    parents: Sequence[str] = ()
    observer: CallObserver | None = field(default=None, compare=False)
    # The calls its program will still make, this one included, as the client said.
    calls_left: int | None = None

    def tag(self, params: Any) -> Any:
        """A copy of `params` (vllm.SamplingParams) carrying this call's program for the plug-in.
        Overrides whatever a client put under the same keys: the program is the front end's."""
        params = params.clone()
        extra = dict(params.extra_args or {})
        extra[PROGRAM_KEY] = self.program_id
        extra.pop(THREAD_KEY, None)
        extra.pop(PARENTS_KEY, None)
        if self.thread_id is not None:
            extra[THREAD_KEY] = self.thread_id
        if self.parents:
            extra[PARENTS_KEY] = list(self.parents)
        if self.calls_left is not None:
            extra[CALLS_LEFT_KEY] = self.calls_left
        params.extra_args = extra
        return params


CURRENT_CALL: ContextVar[CallTag | None] = ContextVar("autellix_current_call", default=None)
