"""The asyncio client, on aiohttp: the same surface as :mod:`autellix.client.sync`, awaited.

Parallel calls of one program are plain ``asyncio.gather`` over ``p.chat(...)`` with distinct
``thread_id`` values and the shared parent's call id in ``parents``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from autellix.client._common import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_WAIT,
    DEFAULT_TIMEOUT,
    PATHS,
    CallKind,
    CallResult,
    RetryPolicy,
    StreamAccumulator,
    StreamView,
    base_headers,
    call_body,
    call_headers,
    normalize_base_url,
    parse_result,
    pick_model,
    resolve_api_key,
    sse_data,
)
from autellix.client.errors import APIConnectionError, ClientError, NotFoundError, error_from_response

__all__ = ["AsyncCallStream", "AsyncClient", "AsyncProgram"]


class AsyncClient:
    """Asyncio Autellix client. Use ``async with AsyncClient(...) as client`` (or ``await
    client.close()``) so its connection pool is closed.

    >>> async with AsyncClient("http://127.0.0.1:8000") as client:
    ...     async with client.program() as p:
    ...         root = await p.chat("Propose three ideas.", max_tokens=64)
    ...         kids = await asyncio.gather(*(
    ...             p.chat(f"Expand idea {i}.", parents=[root.call_id], thread_id=i) for i in (1, 2, 3)))
    ...         await p.chat("Pick the best.", parents=[k.call_id for k in kids])
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        max_connections: int = 100,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.api_key = resolve_api_key(api_key)
        self.timeout = timeout
        self.retry = RetryPolicy(max_retries=max_retries, max_wait=max_retry_wait)
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._model: str | None = None
        self._model_lock: asyncio.Lock | None = None

    # -- server ------------------------------------------------------------------------------

    async def models(self) -> list[dict[str, Any]]:
        data = await self._json("GET", "/v1/models")
        return list(data.get("data") or [])

    async def default_model(self) -> str:
        """The server's only model, asked once (even under concurrent first calls) and cached."""
        if self._model is None:
            if self._model_lock is None:
                self._model_lock = asyncio.Lock()
            async with self._model_lock:
                if self._model is None:
                    self._model = pick_model(await self.models())
        return self._model

    async def health(self) -> dict[str, Any]:
        body = await self._request("GET", "/health", retry=False)
        try:
            data = json.loads(body)
        except ValueError:
            return {"status": body.decode("utf-8", "replace").strip()}
        return data if isinstance(data, dict) else {"status": data}

    async def metrics(self) -> str:
        return (await self._request("GET", "/metrics")).decode("utf-8")

    # -- programs ----------------------------------------------------------------------------

    def program(self, metadata: dict[str, Any] | None = None) -> AsyncProgram:
        """A program handle, started by ``async with`` (or ``await p.start()``)."""
        return AsyncProgram(self, metadata)

    async def start_program(self, metadata: dict[str, Any] | None = None) -> AsyncProgram:
        return await AsyncProgram(self, metadata).start()

    async def program_info(self, program_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/v1/programs/{quote(program_id, safe='')}")

    async def end_program(self, program_id: str) -> dict[str, Any]:
        return await self._json("DELETE", f"/v1/programs/{quote(program_id, safe='')}")

    async def chat(self, messages: Any, **kwargs: Any) -> Any:
        return await self._call("chat", messages, None, **kwargs)

    async def complete(self, prompt: Any, **kwargs: Any) -> Any:
        return await self._call("completion", prompt, None, **kwargs)

    # -- plumbing ----------------------------------------------------------------------------

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _get_session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop that will own it.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=base_headers(self.api_key),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout),
                connector=aiohttp.TCPConnector(limit=self.max_connections),
            )
        return self._session

    async def _call(
        self,
        kind: CallKind,
        payload: Any,
        program_id: str | None,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        thread_id: int | None = None,
        parents: Iterable[Any] = (),
        stream: bool = False,
        **sampling: Any,
    ) -> CallResult | AsyncCallStream:
        body = call_body(
            kind,
            payload,
            model=model or await self.default_model(),
            program_id=program_id,
            max_tokens=max_tokens,
            thread_id=thread_id,
            parents=parents,
            stream=stream,
            sampling=sampling,
        )
        resp = await self._open("POST", PATHS[kind], body, call_headers(program_id))
        if stream:
            return AsyncCallStream(kind, resp)
        try:
            raw = await resp.read()
        except (aiohttp.ClientError, OSError) as e:
            raise APIConnectionError(f"reading the answer from {self.base_url} failed: {e}") from e
        finally:
            resp.release()
        return parse_result(kind, json.loads(raw), resp.headers)

    async def _json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        return json.loads(await self._request(method, path, body))

    async def _request(self, method: str, path: str, body: Any = None, *, retry: bool = True) -> bytes:
        resp = await self._open(method, path, body, {}, retry=retry)
        try:
            return await resp.read()
        except (aiohttp.ClientError, OSError) as e:
            raise APIConnectionError(f"reading the answer from {self.base_url} failed: {e}") from e
        finally:
            resp.release()

    async def _open(
        self, method: str, path: str, body: Any, headers: dict[str, str], *, retry: bool = True
    ) -> aiohttp.ClientResponse:
        """Sends one request, retrying 429/503; returns a 2xx/3xx response still to be read."""
        session = self._get_session()
        url = self.base_url + path
        attempt = 0
        while True:
            try:
                resp = await session.request(method, url, json=body, headers=headers)
            except (aiohttp.ClientError, OSError) as e:
                raise APIConnectionError(f"{method} {url} failed: {e}") from e
            if resp.status < 400:
                return resp
            try:
                raw = await resp.read()
            except (aiohttp.ClientError, OSError):
                raw = b""
            finally:
                resp.release()
            error = error_from_response(resp.status, raw, resp.headers.get("Retry-After"))
            if not (retry and self.retry.should_retry(resp.status, attempt)):
                raise error
            await asyncio.sleep(self.retry.wait(attempt, error.retry_after))
            attempt += 1


class AsyncProgram:
    """One Autellix program for the async client; ``async with`` ends it even on exceptions."""

    def __init__(self, client: AsyncClient, metadata: dict[str, Any] | None = None) -> None:
        self.client = client
        self.metadata = metadata
        self._id: str | None = None
        self.created: int | None = None
        self.ended: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        if self._id is None:
            raise RuntimeError("the program is not started: use `async with client.program() as p`")
        return self._id

    @property
    def started(self) -> bool:
        return self._id is not None

    async def start(self) -> AsyncProgram:
        if self._id is None:
            body = {"metadata": self.metadata} if self.metadata is not None else {}
            data = await self.client._json("POST", "/v1/programs", body)
            self._id = str(data["id"])
            self.created = data.get("created")
        return self

    async def end(self) -> dict[str, Any] | None:
        if self._id is None or self.ended is not None:
            return self.ended
        try:
            self.ended = await self.client.end_program(self._id)
        except NotFoundError:
            self.ended = {"id": self._id, "object": "program.deleted", "deleted": False, "aborted_calls": 0}
        return self.ended

    async def info(self) -> dict[str, Any]:
        return await self.client.program_info(self.id)

    async def chat(
        self,
        messages: Any,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        thread_id: int | None = None,
        parents: Iterable[Any] = (),
        stream: bool = False,
        **sampling: Any,
    ) -> Any:
        """As :meth:`autellix.client.Program.chat`; ``stream=True`` gives an :class:`AsyncCallStream`
        once the server has accepted the call."""
        return await self.client._call(
            "chat", messages, self.id, model=model, max_tokens=max_tokens, thread_id=thread_id,
            parents=parents, stream=stream, **sampling,
        )

    async def complete(
        self,
        prompt: Any,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        thread_id: int | None = None,
        parents: Iterable[Any] = (),
        stream: bool = False,
        **sampling: Any,
    ) -> Any:
        """A text completion call of this program; arguments as for :meth:`chat`."""
        return await self.client._call(
            "completion", prompt, self.id, model=model, max_tokens=max_tokens, thread_id=thread_id,
            parents=parents, stream=stream, **sampling,
        )

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
        except ClientError:
            pass  # keep the block's own exception


class AsyncCallStream(StreamView):
    """``async for delta in stream`` yields text deltas; then ``stream.result`` holds the
    :class:`CallResult` (``await stream.collect()`` drains and returns it). ``await stream.close()``
    drops the connection, which aborts the call on the server."""

    def __init__(self, kind: CallKind, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self._acc = StreamAccumulator(kind, resp.headers)
        self._iterating = False

    def __aiter__(self) -> AsyncIterator[str]:
        if self._iterating:
            raise RuntimeError("an AsyncCallStream can be iterated only once")
        self._iterating = True
        return self._deltas()

    async def _deltas(self) -> AsyncIterator[str]:
        try:
            while not self._acc.done:
                try:
                    line = await self._resp.content.readline()
                except (aiohttp.ClientError, OSError) as e:
                    raise APIConnectionError(f"the stream broke: {e}") from e
                if not line:
                    raise APIConnectionError("the stream ended before data: [DONE]")
                payload = sse_data(line)
                if payload is None:
                    continue
                delta = self._acc.feed(payload)
                if delta:
                    yield delta
        finally:
            await self.close()

    @property
    def result(self) -> CallResult:
        if not self._acc.done:
            raise RuntimeError("the stream has not finished: iterate it or `await stream.collect()`")
        return self._acc.result()

    async def collect(self) -> CallResult:
        if not self._acc.done and not self._iterating:
            async for _ in self:
                pass
        return self.result

    async def close(self) -> None:
        if self._acc.done:
            self._resp.release()  # finished cleanly: the connection can be reused
        else:
            self._resp.close()  # mid-stream: drop the connection so the server aborts the call

    async def __aenter__(self) -> AsyncCallStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
