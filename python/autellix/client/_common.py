"""What the sync and async clients share: request bodies, result types, SSE decoding, retries.

Neither client does any I/O here, so both speak exactly the same protocol.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from autellix.client.errors import error_from_stream_event

CallKind = Literal["chat", "completion"]


class Headers(Protocol):
    """Case-insensitive response headers: http.client's HTTPMessage or aiohttp's CIMultiDictProxy."""

    def get(self, key: str, /) -> Any: ...

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 600.0
DEFAULT_MAX_RETRIES = 2
# A server asking for a longer pause than this is effectively down; do not hang the caller on it.
DEFAULT_MAX_RETRY_WAIT = 30.0

PROGRAM_HEADER = "X-Autellix-Program"
CALL_ID_HEADER = "X-Autellix-Call-Id"

PATHS: dict[CallKind, str] = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}


def normalize_base_url(base_url: str | None) -> str:
    """``http://host:port`` without a trailing slash; an OpenAI-style ``.../v1`` suffix is accepted."""
    url = (base_url or os.environ.get("AUTELLIX_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must look like http://host:port, got {base_url!r}")
    return url


def base_headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": "autellix-client"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def resolve_api_key(api_key: str | None) -> str | None:
    return api_key if api_key is not None else os.environ.get("AUTELLIX_API_KEY") or None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def from_dict(cls, data: Any) -> Usage | None:
        if not isinstance(data, Mapping):
            return None
        prompt = int(data.get("prompt_tokens") or 0)
        completion = int(data.get("completion_tokens") or 0)
        return cls(prompt, completion, int(data.get("total_tokens") or prompt + completion))


@dataclass(frozen=True)
class CallResult:
    """One finished LLM call. ``call_id`` is what later calls name in ``parents``."""

    call_id: str
    text: str
    finish_reason: str | None
    usage: Usage | None
    model: str | None = None
    program_id: str | None = None
    # The decoded response body; for a stream, the list of decoded chunks.
    raw: Any = field(default=None, repr=False, compare=False)


# The two endpoints return the same shape of result; the aliases keep call sites readable.
ChatResult = CallResult
CompletionResult = CallResult


@dataclass(frozen=True)
class RetryPolicy:
    """429 and 503 mean the server refused the call before running it, so a retry is safe."""

    max_retries: int = DEFAULT_MAX_RETRIES
    max_wait: float = DEFAULT_MAX_RETRY_WAIT
    backoff: float = 0.5  # first pause when the server gives no Retry-After; doubles each time

    RETRY_STATUSES = frozenset({429, 503})

    def should_retry(self, status: int, attempt: int) -> bool:
        return status in self.RETRY_STATUSES and attempt < self.max_retries

    def wait(self, attempt: int, retry_after: float | None) -> float:
        pause = retry_after if retry_after is not None else self.backoff * (2**attempt)
        return max(0.0, min(pause, self.max_wait))


def call_body(
    kind: CallKind,
    payload: Any,
    *,
    model: str,
    program_id: str | None,
    max_tokens: int | None,
    thread_id: int | None,
    parents: Iterable[str],
    stream: bool,
    sampling: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON body of a chat or completion request tagged with its program, thread and parents."""
    body: dict[str, Any] = {"model": model}
    if kind == "chat":
        body["messages"] = _messages(payload)
    else:
        body["prompt"] = payload
    if max_tokens is not None:
        body["max_tokens"] = int(max_tokens)
    if program_id is not None:
        body["program_id"] = program_id
    if thread_id is not None:
        body["thread_id"] = int(thread_id)
    parent_ids = [str(p.call_id if isinstance(p, CallResult) else p) for p in parents]
    if parent_ids:
        body["parent_ids"] = parent_ids
    if stream:
        body["stream"] = True
        # Without this an OpenAI-style stream carries no token counts.
        body.setdefault("stream_options", {"include_usage": True})
    body.update(sampling)
    return body


def _messages(messages: Any) -> list[dict[str, Any]]:
    if isinstance(messages, str):  # a bare string is one user turn
        return [{"role": "user", "content": messages}]
    return [dict(m) for m in messages]


def call_headers(program_id: str | None) -> dict[str, str]:
    return {PROGRAM_HEADER: program_id} if program_id else {}


def parse_result(kind: CallKind, data: Any, headers: Headers) -> CallResult:
    """A non-streamed response body -> :class:`CallResult` (first choice only)."""
    if not isinstance(data, dict):
        raise ValueError(f"unexpected response body: {data!r}")
    choices = data.get("choices") or [{}]
    first = choices[0] if isinstance(choices[0], dict) else {}
    if kind == "chat":
        message = first.get("message") or {}
        text = message.get("content") or ""
    else:
        text = first.get("text") or ""
    return CallResult(
        call_id=str(data.get("id") or headers.get(CALL_ID_HEADER) or ""),
        text=text,
        finish_reason=first.get("finish_reason"),
        usage=Usage.from_dict(data.get("usage")),
        model=data.get("model"),
        program_id=headers.get(PROGRAM_HEADER),
        raw=data,
    )


def sse_data(line: bytes | str) -> str | None:
    """The payload of a ``data:`` line of a server-sent-event stream, else None."""
    if isinstance(line, bytes):
        line = line.decode("utf-8")
    line = line.rstrip("\r\n")
    if not line.startswith("data:"):
        return None  # blank separators, comments (": ping") and other fields
    return line[5:].lstrip(" ")


class StreamAccumulator:
    """Folds decoded SSE chunks into text deltas and, at the end, one :class:`CallResult`."""

    def __init__(self, kind: CallKind, headers: Headers) -> None:
        self.kind = kind
        self.call_id: str = headers.get(CALL_ID_HEADER) or ""
        self.program_id = headers.get(PROGRAM_HEADER)
        self.parts: list[str] = []
        self.chunks: list[dict[str, Any]] = []
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.done = False

    def feed(self, payload: str) -> str | None:
        """Takes one ``data:`` payload; returns its text delta (None when it has none)."""
        if payload.strip() == "[DONE]":
            self.done = True
            return None
        chunk = json.loads(payload)
        if not isinstance(chunk, dict):
            return None
        if "error" in chunk:
            raise error_from_stream_event(chunk)
        self.chunks.append(chunk)
        self.call_id = self.call_id or str(chunk.get("id") or "")
        self.model = self.model or chunk.get("model")
        if chunk.get("usage"):
            self.usage = Usage.from_dict(chunk["usage"])
        delta_text: str | None = None
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if self.kind == "chat":
                delta_text = (choice.get("delta") or {}).get("content")
            else:
                delta_text = choice.get("text")
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if delta_text:
            self.parts.append(delta_text)
            return delta_text
        return None

    def result(self) -> CallResult:
        return CallResult(
            call_id=self.call_id,
            text="".join(self.parts),
            finish_reason=self.finish_reason,
            usage=self.usage,
            model=self.model,
            program_id=self.program_id,
            raw=self.chunks,
        )


def pick_model(models: Sequence[Mapping[str, Any]]) -> str:
    """The model to use when the caller names none: the server's only one."""
    ids = [str(m.get("id")) for m in models if m.get("id")]
    if len(ids) == 1:
        return ids[0]
    if not ids:
        raise ValueError("the server lists no models at /v1/models")
    raise ValueError(f"the server serves several models ({', '.join(ids)}); pass model=...")


class StreamView:
    """What the sync and async call streams show while they are read (their `_acc`)."""

    _acc: StreamAccumulator

    @property
    def call_id(self) -> str:
        return self._acc.call_id

    @property
    def finished(self) -> bool:
        return self._acc.done

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._acc.parts)
