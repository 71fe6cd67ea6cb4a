"""What the sync and async clients share: configuration, program tags, the refusal-retry policy.

The blocking :mod:`autellix.client.sync` and asyncio :mod:`autellix.client.aio` classes differ
only where they do I/O (``def`` against ``async def``), as in openai-python.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit

import anyio
import openai

from autellix.contract import CALLS_LEFT_HEADER, CALLS_LEFT_LIMIT, PARENTS_HEADER, PROGRAM_HEADER, THREAD_HEADER

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 600.0
# openai's own default for its connection pool (openai._constants.DEFAULT_CONNECTION_LIMITS).
MAX_CONNECTIONS, MAX_KEEPALIVE = 1000, 100
# The api key the openai SDK sends when none is given: it insists on one, a server without
# --api-key ignores it. Never OPENAI_API_KEY: a real OpenAI key has no business going here.
NO_API_KEY = "EMPTY"

OpenAIT = TypeVar("OpenAIT", openai.OpenAI, openai.AsyncOpenAI)


def normalize_base_url(base_url: str | None) -> str:
    """``http://host:port`` (no trailing slash, no ``/v1``); ``AUTELLIX_BASE_URL`` when None."""
    url = (base_url or os.environ.get("AUTELLIX_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must look like http://host:port, got {base_url!r}")
    return url


def parent_ids(parents: Iterable[Any]) -> list[str]:
    """Call ids from strings or from SDK objects with an ``id`` (ChatCompletion, Completion,
    Response, a stream chunk): what a later call names as its parents."""
    ids = []
    for parent in parents:
        value = parent if isinstance(parent, str) else getattr(parent, "id", None)
        if not isinstance(value, str) or not value or "," in value:
            raise ValueError(f"a parent must be a call id or an object with an id, got {parent!r}")
        ids.append(value)
    return list(dict.fromkeys(ids))


def _header_int(name: str, value: int, low: int, high: int | None = None) -> str:
    """An int header's value, checked as the server checks it (bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value >= high):
        bound = f">= {low}" + ("" if high is None else f" and < {high}")
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")
    return str(value)


def tag_headers(
    program_id: str, thread: int | None = None, parents: Iterable[Any] = (), calls_left: int | None = None
) -> dict[str, str]:
    """The headers that tag a call with its program (and thread, parents and calls left)."""
    headers = {PROGRAM_HEADER: program_id}
    if thread is not None:
        headers[THREAD_HEADER] = _header_int("thread", thread, 0)
    ids = parent_ids(parents)
    if ids:
        headers[PARENTS_HEADER] = ",".join(ids)
    if calls_left is not None:
        headers[CALLS_LEFT_HEADER] = _header_int("calls_left", calls_left, 1, CALLS_LEFT_LIMIT)
    return headers


# -- retries ---------------------------------------------------------------------------------
#
# The openai SDK retries timeouts, connection errors, 408, 409, 429 and 5xx when max_retries > 0;
# for an LLM call most of those can mean "it ran" (or is still running), so a retry runs it twice.
# The clients here set max_retries=0 and retry only what Autellix's server sends for a call it
# refused before starting it: 429 or 503 *with* a Retry-After header. They do it in the HTTP
# transport under the SDK, the one place that can tell those answers apart.


@dataclass(frozen=True)
class RefusalRetry:
    retries: int = 2
    max_wait: float = 30.0  # a server asking for a longer pause is effectively down

    STATUSES = frozenset({429, 503})

    def pause(self, response: Any, attempt: int) -> float | None:
        """Seconds to wait before sending the request again, or None to hand the answer on."""
        if attempt >= self.retries or response.status_code not in self.STATUSES:
            return None
        try:
            seconds = float(response.headers.get("retry-after", ""))
        except ValueError:  # absent, or an HTTP date: not the server's "not started" refusal
            return None
        if not math.isfinite(seconds) or not 0 <= seconds <= self.max_wait:
            return None
        return seconds


def _replayable(request: Any) -> bool:
    try:
        request.content  # noqa: B018 - raises for a streamed upload, which cannot be sent twice
    except Exception:
        return False
    return True


def sdk_http() -> ModuleType:
    """The HTTP library this openai SDK is built on: ``httpx2`` (openai >= 3) or ``httpx``."""
    for cls in openai.DefaultHttpxClient.__mro__:
        if cls.__name__ == "Client" and cls.__module__.split(".")[0] != "openai":
            return sys.modules[cls.__module__.split(".")[0]]
    raise RuntimeError("cannot tell which HTTP library the openai SDK uses")


def sleep(seconds: float) -> None:
    time.sleep(seconds)


async def async_sleep(seconds: float) -> None:
    await anyio.sleep(seconds)  # anyio (an openai dependency): asyncio or trio alike


def retrying_transports(policy: RefusalRetry) -> tuple[Any, Any]:
    """(sync, async) transport classes that resend a refused request per ``policy``."""
    http = sdk_http()

    class RetryRefusedTransport(http.BaseTransport):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self.inner = http.HTTPTransport(limits=http.Limits(max_connections=MAX_CONNECTIONS,
                                                               max_keepalive_connections=MAX_KEEPALIVE))

        def handle_request(self, request: Any) -> Any:
            attempt = 0
            while True:
                response = self.inner.handle_request(request)
                wait = policy.pause(response, attempt) if _replayable(request) else None
                if wait is None:
                    return response
                response.close()
                sleep(wait)  # looked up at call time, so tests can record the pauses
                attempt += 1

        def close(self) -> None:
            self.inner.close()

    class AsyncRetryRefusedTransport(http.AsyncBaseTransport):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self.inner = http.AsyncHTTPTransport(limits=http.Limits(max_connections=MAX_CONNECTIONS,
                                                                    max_keepalive_connections=MAX_KEEPALIVE))

        async def handle_async_request(self, request: Any) -> Any:
            attempt = 0
            while True:
                response = await self.inner.handle_async_request(request)
                wait = policy.pause(response, attempt) if _replayable(request) else None
                if wait is None:
                    return response
                await response.aclose()
                await async_sleep(wait)
                attempt += 1

        async def aclose(self) -> None:
            await self.inner.aclose()

    return RetryRefusedTransport, AsyncRetryRefusedTransport


# -- the shared client and program -----------------------------------------------------------


class BaseClient(Generic[OpenAIT]):
    """Configuration and the untagged openai client; the subclasses add the program I/O."""

    _openai_class: type[OpenAIT]

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 0,
        refusal_retries: int = 2,
        max_retry_wait: float = 30.0,
        default_headers: Mapping[str, str] | None = None,
        http_client: Any = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.api_key = api_key if api_key is not None else os.environ.get("AUTELLIX_API_KEY") or None
        self.refusal_retry = RefusalRetry(refusal_retries, max_retry_wait)
        if http_client is None and refusal_retries > 0:
            http_client = self._http_client()
        self.openai: OpenAIT = self._openai_class(
            base_url=self.base_url + "/v1",
            api_key=self.api_key or NO_API_KEY,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            http_client=http_client,
        )

    def _http_client(self) -> Any:
        raise NotImplementedError

    @staticmethod
    def _program_path(program_id: str) -> str:
        return f"/programs/{quote(program_id, safe='')}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"


ClientT = TypeVar("ClientT", bound=BaseClient[Any])


class BaseProgram(Generic[ClientT, OpenAIT]):
    """One program: its id, and openai clients whose every call carries it.

    The id is the server's (``POST /v1/programs`` on start) unless the caller chose one, in which
    case nothing is sent on start: the server starts the program on its first call.
    """

    def __init__(self, client: ClientT, program_id: str | None = None, metadata: Mapping[str, Any] | None = None):
        if program_id is not None and (not isinstance(program_id, str) or not program_id.strip()):
            raise ValueError(f"a program id must be a non-empty string, got {program_id!r}")
        self.client = client
        self.metadata = dict(metadata) if metadata is not None else None
        self.chosen_id = program_id is not None  # by the caller: no POST on start
        self._id = program_id
        self._openai: OpenAIT | None = None
        self.created: dict[str, Any] | None = None  # the POST answer, when the server chose the id
        self.ended: dict[str, Any] | None = None  # the DELETE answer, once ended
        self._done = False

    @property
    def id(self) -> str:
        if self._id is None:
            raise RuntimeError("the program is not started: use `with client.program() as p` or p.start()")
        return self._id

    @property
    def started(self) -> bool:
        return self._id is not None

    def headers(
        self, thread: int | None = None, parents: Iterable[Any] = (), calls_left: int | None = None
    ) -> dict[str, str]:
        """The headers naming this program (and a thread, parents and the calls it will still
        make, this one included), for any HTTP client or agent framework: pass them as its
        ``default_headers`` / ``extra_headers``."""
        return tag_headers(self.id, thread, parents, calls_left)

    @property
    def openai(self) -> OpenAIT:
        """The client's openai SDK client with this program's header on every call."""
        if self._openai is None:
            self._openai = self.client.openai.with_options(default_headers=self.headers())
        return self._openai

    def openai_for(
        self, thread: int | None = None, parents: Iterable[Any] = (), calls_left: int | None = None
    ) -> OpenAIT:
        """The same, also naming a thread (parallel branches tell themselves apart by it), the
        earlier calls this one depends on (ids, or the SDK's response objects) and how many calls
        the program will still make, this one included (an agent's step budget less the steps
        taken: plas and atlas then rank it by the work that leaves)."""
        return self.client.openai.with_options(default_headers=self.headers(thread, parents, calls_left))

    def _create_body(self) -> dict[str, Any]:
        return {"metadata": self.metadata} if self.metadata is not None else {}

    def _created(self, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise ValueError(f"POST /v1/programs answered {data!r}, not a program")
        self.created = data
        self._id = data["id"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._id!r})"
