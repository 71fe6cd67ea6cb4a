"""Exceptions raised by the Autellix clients.

Every HTTP error the server answers becomes an :class:`APIError` carrying the status and the
server's own ``code`` and ``message`` (from its OpenAI-style ``{"error": {...}}`` body), so callers
can branch on ``err.code`` (``"program_not_found"``, ...) rather than parse text. The subclass picks
by status lets ``except NotFoundError`` read naturally.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ClientError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "error_from_response",
]


class ClientError(Exception):
    """Base of everything the Autellix client raises on purpose."""


class APIConnectionError(ClientError):
    """The server could not be reached, or the connection broke before an answer came."""


class APIError(ClientError):
    """The server answered with an error status (4xx/5xx) or sent an error inside a stream."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        *,
        type: str | None = None,  # noqa: A002 - the OpenAI field name
        param: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"HTTP {status} {code or type or 'error'}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.type = type
        self.param = param
        self.body = body
        self.retry_after = retry_after


class BadRequestError(APIError):
    """400 or 422: the request itself is wrong (unknown parameter, prompt too long, ...)."""


class AuthenticationError(APIError):
    """401: missing or wrong API key."""


class PermissionDeniedError(APIError):
    """403."""


class NotFoundError(APIError):
    """404: unknown route, model or program (``code == "program_not_found"``)."""


class RateLimitError(APIError):
    """429: the server is shedding load; retried automatically up to ``max_retries`` times."""


class InternalServerError(APIError):
    """5xx other than 503."""


class ServiceUnavailableError(APIError):
    """503: no engine can take the call right now (starting, draining); retried like 429."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: BadRequestError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def _error_class(status: int) -> type[APIError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return InternalServerError if status >= 500 else APIError


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form; an HTTP date is not honoured)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_response(status: int, body: bytes | str, retry_after: str | None = None) -> APIError:
    """Builds the right :class:`APIError` from an error response, tolerating non-JSON bodies."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        decoded: Any = json.loads(text) if text else None
    except ValueError:
        decoded = None
    err = decoded.get("error") if isinstance(decoded, dict) else None
    if isinstance(err, dict):
        message = str(err.get("message") or text)
        code = err.get("code")
        return _error_class(status)(
            status,
            None if code is None else str(code),
            message,
            type=err.get("type"),
            param=err.get("param"),
            body=decoded,
            retry_after=parse_retry_after(retry_after),
        )
    return _error_class(status)(
        status, None, text.strip() or f"HTTP {status}", body=decoded if decoded is not None else text,
        retry_after=parse_retry_after(retry_after),
    )


def error_from_stream_event(event: dict[str, Any]) -> APIError:
    """An error object the server sent as an SSE event after the 200 status line was already out."""
    raw = event.get("error")
    err: dict[str, Any] = raw if isinstance(raw, dict) else {}
    status = err.get("status")
    if not isinstance(status, int):
        status = 500
    code = err.get("code")
    return _error_class(status)(
        status,
        None if code is None else str(code),
        str(err.get("message") or "error in stream"),
        type=err.get("type"),
        param=err.get("param"),
        body=event,
    )
