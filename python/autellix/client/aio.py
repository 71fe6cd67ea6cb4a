"""The asyncio client: :class:`AsyncClient` and its :class:`AsyncProgram` (as the blocking ones,
with ``async with`` and ``await``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Any, cast

import openai

from autellix.client._base import BaseClient, BaseProgram, retrying_transports

__all__ = ["AsyncClient", "AsyncProgram"]


class AsyncClient(BaseClient[openai.AsyncOpenAI]):
    """:class:`autellix.Client` for asyncio: ``client.openai`` and ``program.openai`` are
    ``openai.AsyncOpenAI`` clients; program start, info and end are awaited.

    >>> async with AsyncClient("http://127.0.0.1:8000") as client:
    ...     async with client.program() as program:
    ...         r = await program.openai.chat.completions.create(model=..., messages=[...])
    """

    _openai_class = openai.AsyncOpenAI

    def _http_client(self) -> Any:
        _, transport = retrying_transports(self.refusal_retry)
        return _AsyncHttpClient(transport=transport())

    def program(self, program_id: str | None = None, *, metadata: Mapping[str, Any] | None = None) -> AsyncProgram:
        """A program handle (see :meth:`autellix.Client.program`)."""
        return AsyncProgram(self, program_id, metadata)

    async def start_program(self, metadata: Mapping[str, Any] | None = None) -> AsyncProgram:
        return await AsyncProgram(self, None, metadata).start()

    async def program_info(self, program_id: str) -> dict[str, Any]:
        return cast("dict[str, Any]", await self.openai.get(self._program_path(program_id), cast_to=object))

    async def end_program(self, program_id: str) -> dict[str, Any]:
        return cast("dict[str, Any]", await self.openai.delete(self._program_path(program_id), cast_to=object))

    async def close(self) -> None:
        await self.openai.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _AsyncHttpClient(openai.DefaultAsyncHttpxClient):  # type: ignore[misc, valid-type]
    """Closed when dropped inside a running loop, as the openai SDK's own default client is."""

    def __del__(self) -> None:
        if not self.is_closed:
            try:
                asyncio.get_running_loop().create_task(self.aclose())
            except Exception:
                pass


class AsyncProgram(BaseProgram[AsyncClient, openai.AsyncOpenAI]):
    """One program. ``async with`` ends it (``DELETE``) even when the block raises."""

    async def start(self) -> AsyncProgram:
        if self._id is None:
            self._created(await self.client.openai.post("/programs", body=self._create_body(), cast_to=object))
        return self

    async def info(self) -> dict[str, Any]:
        return await self.client.program_info(self.id)

    async def end(self) -> dict[str, Any] | None:
        """Ends the program once; None if the server did not know it (see ``Program.end``)."""
        if self._id is None or self._done:
            return self.ended
        try:
            self.ended = await self.client.end_program(self._id)
        except openai.NotFoundError:
            self.ended = None
        self._done = True
        return self.ended

    async def __aenter__(self) -> AsyncProgram:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.end()
            return
        try:
            await self.end()
        except openai.OpenAIError:
            pass  # the block's own exception matters more than a failed clean-up
