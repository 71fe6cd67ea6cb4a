"""OpenAI-style errors: one exception type the handlers raise, one JSON shape the client sees."""

from __future__ import annotations

from typing import Any

from aiohttp import web

# HTTP status -> the OpenAI error `type` a client SDK expects for it.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


# HTTP status -> the Anthropic error `type` (Messages API clients).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


class ApiError(Exception):
    """An error the client caused or must wait out; rendered by the error middleware."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def error_body(
    status: int, message: str, code: str | None = None, param: str | None = None, *, anthropic: bool = False
) -> dict[str, Any]:
    """OpenAI's error shape, or Anthropic's for Messages API routes (which has no param: the
    field is named in the message)."""
    if anthropic:
        kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        text = f"{param}: {message}" if param and param not in message else message
        return {"type": "error", "error": {"type": kind, "message": text}}
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(error: ApiError, *, anthropic: bool = False) -> web.Response:
    return web.json_response(
        error_body(error.status, error.message, error.code, error.param, anthropic=anthropic),
        status=error.status,
        headers=error.headers,
    )
