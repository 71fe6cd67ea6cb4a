"""The blocking client, on the standard library's ``http.client`` (no extra dependency).

Each request opens its own connection, which keeps the client safe to share between threads and
makes "close the stream" mean "drop the connection", which is how the server learns to abort a call.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

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

__all__ = ["CallStream", "Client", "Program"]


class Client:
    """Blocking Autellix client.

    >>> client = Client("http://127.0.0.1:8000")
    >>> with client.program() as p:
    ...     first = p.chat("Plan the trip.", max_tokens=64)
    ...     second = p.chat("Now the budget.", parents=[first.call_id])

    ``timeout`` bounds each wait for the server (connecting, or the next bytes of an answer).
    429 and 503 answers are retried up to ``max_retries`` times, pausing for the server's
    ``Retry-After`` (capped at ``max_retry_wait`` seconds).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.api_key = resolve_api_key(api_key)
        self.timeout = timeout
        self.retry = RetryPolicy(max_retries=max_retries, max_wait=max_retry_wait)
        parts = urlsplit(self.base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._model: str | None = None

    # -- server ------------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """The ``data`` list of ``GET /v1/models``."""
        data = self._json("GET", "/v1/models")
        return list(data.get("data") or [])

    def default_model(self) -> str:
        """The server's only model, asked once and cached."""
        if self._model is None:
            self._model = pick_model(self.models())
        return self._model

    def health(self) -> dict[str, Any]:
        """``GET /health``; raises :class:`APIError` unless the server is healthy."""
        return _json_or_text(self._request("GET", "/health", retry=False)[2])

    def metrics(self) -> str:
        """The Prometheus text of ``GET /metrics``."""
        return self._request("GET", "/metrics")[2].decode("utf-8")

    # -- programs ----------------------------------------------------------------------------

    def program(self, metadata: dict[str, Any] | None = None) -> Program:
        """A program handle, started when its ``with`` block is entered (or by ``start()``)."""
        return Program(self, metadata)

    def start_program(self, metadata: dict[str, Any] | None = None) -> Program:
        """A started program; call ``end()`` when done (or prefer ``with client.program()``)."""
        return Program(self, metadata).start()

    def program_info(self, program_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/programs/{quote(program_id, safe='')}")

    def end_program(self, program_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/v1/programs/{quote(program_id, safe='')}")

    # -- calls outside any program (each one a program of its own on the server) ---------------

    def chat(self, messages: Any, **kwargs: Any) -> Any:
        return self._call("chat", messages, None, **kwargs)

    def complete(self, prompt: Any, **kwargs: Any) -> Any:
        return self._call("completion", prompt, None, **kwargs)

    # -- plumbing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Nothing is pooled; present so both clients read the same."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
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
    ) -> CallResult | CallStream:
        body = call_body(
            kind,
            payload,
            model=model or self.default_model(),
            program_id=program_id,
            max_tokens=max_tokens,
            thread_id=thread_id,
            parents=parents,
            stream=stream,
            sampling=sampling,
        )
        conn, resp = self._open("POST", PATHS[kind], body, call_headers(program_id))
        if stream:
            return CallStream(kind, conn, resp)
        try:
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise APIConnectionError(f"reading the answer from {self.base_url} failed: {e}") from e
        finally:
            conn.close()
        return parse_result(kind, json.loads(raw), resp.headers)

    def _json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        return json.loads(self._request(method, path, body)[2])

    def _request(
        self, method: str, path: str, body: Any = None, *, retry: bool = True
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn, resp = self._open(method, path, body, {}, retry=retry)
        try:
            return resp.status, resp.headers, resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise APIConnectionError(f"reading the answer from {self.base_url} failed: {e}") from e
        finally:
            conn.close()

    def _open(
        self, method: str, path: str, body: Any, extra_headers: dict[str, str], *, retry: bool = True
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Sends one request, retrying 429/503; returns the open connection and a 2xx/3xx response."""
        headers = base_headers(self.api_key) | extra_headers
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            conn = self._connection()
            try:
                conn.request(method, self._prefix + path, body=data, headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise APIConnectionError(f"{method} {self.base_url}{path} failed: {e}") from e
            if resp.status < 400:
                return conn, resp
            try:
                raw = resp.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                conn.close()
            error = error_from_response(resp.status, raw, resp.getheader("Retry-After"))
            if not (retry and self.retry.should_retry(resp.status, attempt)):
                raise error
            time.sleep(self.retry.wait(attempt, error.retry_after))
            attempt += 1

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.timeout)


class Program:
    """One Autellix program: every call made through it is scheduled as part of the same program.

    Use it as a context manager so the program is ended (``DELETE``) even when the block raises;
    ending it aborts whatever of its calls are still running and frees its scheduler state.
    """

    def __init__(self, client: Client, metadata: dict[str, Any] | None = None) -> None:
        self.client = client
        self.metadata = metadata
        self._id: str | None = None
        self.created: int | None = None
        self.ended: dict[str, Any] | None = None  # the DELETE answer, once ended

    @property
    def id(self) -> str:
        if self._id is None:
            raise RuntimeError("the program is not started: use `with client.program() as p` or p.start()")
        return self._id

    @property
    def started(self) -> bool:
        return self._id is not None

    def start(self) -> Program:
        if self._id is None:
            body = {"metadata": self.metadata} if self.metadata is not None else {}
            data = self.client._json("POST", "/v1/programs", body)
            self._id = str(data["id"])
            self.created = data.get("created")
        return self

    def end(self) -> dict[str, Any] | None:
        """Ends the program once; later calls (or a program the server already forgot) are no-ops."""
        if self._id is None or self.ended is not None:
            return self.ended
        try:
            self.ended = self.client.end_program(self._id)
        except NotFoundError:
            self.ended = {"id": self._id, "object": "program.deleted", "deleted": False, "aborted_calls": 0}
        return self.ended

    def info(self) -> dict[str, Any]:
        """The server's view: calls, attained service, critical path, waiting time, ..."""
        return self.client.program_info(self.id)

    def chat(
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
        """A chat call of this program. ``messages``: a list of ``{"role", "content"}`` dicts or
        one string (a single user turn). ``model`` defaults to the server's only model;
        ``parents`` are the call ids (or results) this call depends on; ``thread_id`` tells
        parallel branches apart; ``sampling`` is any OpenAI/vLLM field (``temperature``, ``seed``,
        ``stop``, ``ignore_eos``, ...). Returns a :class:`CallResult`, or a :class:`CallStream`
        when ``stream=True``."""
        return self.client._call(
            "chat", messages, self.id, model=model, max_tokens=max_tokens, thread_id=thread_id,
            parents=parents, stream=stream, **sampling,
        )

    def complete(
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
        """A text completion call of this program (``/v1/completions``); arguments as for :meth:`chat`."""
        return self.client._call(
            "completion", prompt, self.id, model=model, max_tokens=max_tokens, thread_id=thread_id,
            parents=parents, stream=stream, **sampling,
        )

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
        except ClientError:
            pass  # the block's own exception matters more than a failed clean-up


class CallStream(StreamView):
    """A streamed call: iterate for text deltas; ``result`` is the finished :class:`CallResult`.

    Reading ``result`` early drains the rest of the stream; ``close()`` (or leaving a ``with``
    block) drops the connection, which aborts the call on the server.
    """

    def __init__(self, kind: CallKind, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse):
        self._conn = conn
        self._resp = resp
        self._acc = StreamAccumulator(kind, resp.headers)
        self._iterating = False

    def __iter__(self) -> Iterator[str]:
        if self._iterating:
            raise RuntimeError("a CallStream can be iterated only once")
        self._iterating = True
        return self._deltas()

    def _deltas(self) -> Iterator[str]:
        try:
            while not self._acc.done:
                try:
                    line = self._resp.readline()
                except (OSError, http.client.HTTPException) as e:
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
            self.close()

    @property
    def result(self) -> CallResult:
        if not self._acc.done:
            if self._iterating:
                raise RuntimeError("the stream has not finished (it is being read, or was closed early)")
            for _ in self:
                pass
        return self._acc.result()

    def collect(self) -> CallResult:
        """Reads the stream to its end and returns the result (same as ``result``)."""
        return self.result

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> CallStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json_or_text(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {"status": body.decode("utf-8", "replace").strip()}
    return data if isinstance(data, dict) else {"status": data}

