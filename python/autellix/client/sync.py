"""The blocking client: :class:`Client` and its :class:`Program`."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, cast

import openai

from autellix.client._base import BaseClient, BaseProgram, retrying_transports

__all__ = ["Client", "Program"]


class Client(BaseClient[openai.OpenAI]):
    """An Autellix server, and the ``openai.OpenAI`` client that talks to it.

    >>> client = Client("http://127.0.0.1:8000")
    >>> with client.program() as program:               # POST /v1/programs ... DELETE on exit
    ...     r = program.openai.chat.completions.create(model=..., messages=[...])
    ...     program.openai_for(thread=1, parents=[r]).completions.create(model=..., prompt=...)

    ``client.openai`` is untagged: each of its calls is a program of its own. ``max_retries``
    is the openai SDK's (0 here: the SDK would also retry a call that timed out or lost its
    connection, which may have run); ``refusal_retries`` resends only a 429 or 503 that carries
    ``Retry-After`` (the server refused the call before starting it), after that pause, unless
    it is longer than ``max_retry_wait``. Errors are the openai SDK's (``openai.BadRequestError``,
    ``openai.NotFoundError``, ...: ``.status_code``, ``.code``, ``.param``, ``.message``).
    """

    _openai_class = openai.OpenAI

    def _http_client(self) -> Any:
        transport, _ = retrying_transports(self.refusal_retry)
        return _HttpClient(transport=transport())

    def program(self, program_id: str | None = None, *, metadata: Mapping[str, Any] | None = None) -> Program:
        """A program handle. Without an id, the server picks one when it starts (``with``, or
        ``start()``); with one, nothing is sent until its first call starts it."""
        return Program(self, program_id, metadata)

    def start_program(self, metadata: Mapping[str, Any] | None = None) -> Program:
        """A started program with a server-chosen id; call ``end()`` when done."""
        return Program(self, None, metadata).start()

    def program_info(self, program_id: str) -> dict[str, Any]:
        """``GET /v1/programs/{id}``: calls, attained service, waiting time, ..."""
        return cast("dict[str, Any]", self.openai.get(self._program_path(program_id), cast_to=object))

    def end_program(self, program_id: str) -> dict[str, Any]:
        """``DELETE /v1/programs/{id}``: aborts its running calls and forgets it."""
        return cast("dict[str, Any]", self.openai.delete(self._program_path(program_id), cast_to=object))

    def close(self) -> None:
        self.openai.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _HttpClient(openai.DefaultHttpxClient):  # type: ignore[misc, valid-type]
    """Closed when dropped, as the openai SDK's own default client is."""

    def __del__(self) -> None:
        if not self.is_closed:
            try:
                self.close()
            except Exception:
                pass


class Program(BaseProgram[Client, openai.OpenAI]):
    """One program. ``with`` ends it (``DELETE``) even when the block raises."""

    def start(self) -> Program:
        if self._id is None:
            self._created(self.client.openai.post("/programs", body=self._create_body(), cast_to=object))
        return self

    def info(self) -> dict[str, Any]:
        return self.client.program_info(self.id)

    def end(self) -> dict[str, Any] | None:
        """Ends the program once. Returns the server's answer, or None if the server did not
        know it (a chosen id never used, an ended or expired program)."""
        if self._id is None or self._done:
            return self.ended
        try:
            self.ended = self.client.end_program(self._id)
        except openai.NotFoundError:
            self.ended = None
        self._done = True
        return self.ended

    def __enter__(self) -> Program:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.end()
            return
        try:
            self.end()
        except openai.OpenAIError:
            pass  # the block's own exception matters more than a failed clean-up
