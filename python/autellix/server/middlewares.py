"""Middlewares: errors as OpenAI JSON (never an HTML page), and the optional API key check."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from autellix.server.errors import ApiError, error_body, error_response
from autellix.server.settings import key_hash
from autellix.server.state import OWNER, SETTINGS

log = logging.getLogger("autellix.server")

# Routes anyone may call, also when an API key is set.
OPEN_PATHS = frozenset({"/health"})
# Routes whose clients expect Anthropic's error shape.
ANTHROPIC_PATHS = frozenset({"/v1/messages"})


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    anthropic = request.path in ANTHROPIC_PATHS
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error, anthropic=anthropic)
    except web.HTTPException as http:
        if http.status < 400:
            raise  # redirects and the like are not errors
        headers = {k: v for k, v in http.headers.items() if k in ("Allow", "Retry-After")}
        message = _http_message(request, http)
        body = error_body(http.status, message, _http_code(http.status), anthropic=anthropic)
        return web.json_response(body, status=http.status, headers=headers)
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        body = error_body(500, "the server hit an unexpected error; it has been logged", "internal_error", anthropic=anthropic)
        return web.json_response(body, status=500)


def _http_message(request: web.Request, http: web.HTTPException) -> str:
    if http.status == 404:
        return f"no route {request.method} {request.path}"
    if http.status == 405:
        allowed = http.headers.get("Allow", "")
        return f"method {request.method} is not allowed on {request.path} (allowed: {allowed})"
    if http.status == 413:
        limit = request.app[SETTINGS].max_body_bytes
        return f"the request body is larger than the limit of {limit} bytes"
    return http.reason or "request failed"


def _http_code(status: int) -> str | None:
    return {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(status)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    if not settings.key_hashes or request.path in OPEN_PATHS:
        return await handler(request)
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    digest = key_hash(key.strip()) if scheme.lower() == "bearer" and key.strip() else None
    if digest is None or not any(hmac.compare_digest(digest, known) for known in settings.key_hashes):
        raise ApiError(
            401,
            "a valid API key is required: send 'Authorization: Bearer <key>'",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request[OWNER] = digest
    return await handler(request)
