"""POST /v1/chat/completions, /v1/completions, /v1/responses and /v1/messages: the program layer
around vLLM's serving classes.

Each handler reads the body, takes the program identity out of it, lets vLLM's request model
validate the rest, admits the call (429/503, programs started on first use), and runs vLLM's
serving class with the call current for the engine router. vLLM renders, samples, parses tools
and formats every response, stream chunk and error; this module only moves them to aiohttp.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from autellix.contract import CALL_HEADER, PROGRAM_HEADER, REQUEST_ID_HEADER
from autellix.server.bodies import read_json
from autellix.server.errors import ApiError, error_body
from autellix.server.identity import call_identity
from autellix.server.schemas import check_json_schemas
from autellix.server.state import CALLS, SERVING, owner_of
from autellix.server.vllm_serving import ServingLayer

if TYPE_CHECKING:  # vLLM is loaded once the engines start
    from vllm.entrypoints.serve.engine.protocol import ErrorResponse
    from vllm.exceptions import VLLMValidationError

log = logging.getLogger("autellix.server")


@dataclass(frozen=True)
class Route:
    """What differs between the generation routes."""

    request_model: Callable[[], type[BaseModel]]  # vLLM's pydantic request class (lazy: vLLM is heavy)
    create: Callable[[ServingLayer, Any, Any], Any]  # serving call -> response, stream or ErrorResponse
    # The body's `request_id` made from the call id when the client gives none; None where the
    # request model has no such field (vLLM then picks the response id).
    request_id: Callable[[str], str] | None
    # vLLM's response id is this prefix and the request id: clients name parents by it.
    response_prefix: str
    dump: Callable[[BaseModel], bytes]
    sse: Callable[[Any], str]  # one stream item as server-sent events
    anthropic: bool = False


def _vllm_model(module: str, name: str) -> Callable[[], type[BaseModel]]:
    """One of vLLM's request models, imported on first use (vLLM is heavy), then cached."""
    return functools.cache(lambda: getattr(importlib.import_module(module), name))


_chat_model = _vllm_model("vllm.entrypoints.openai.chat_completion.protocol", "ChatCompletionRequest")
_completion_model = _vllm_model("vllm.entrypoints.openai.completion.protocol", "CompletionRequest")
_responses_model = _vllm_model("vllm.entrypoints.openai.responses.protocol", "ResponsesRequest")
_messages_model = _vllm_model("vllm.entrypoints.anthropic.protocol", "AnthropicMessagesRequest")


def _as_is(item: Any) -> str:
    return str(item)


def _responses_event(event: Any) -> str:
    return f"event: {getattr(event, 'type', 'unknown')}\ndata: {event.model_dump_json(indent=None, by_alias=True)}\n\n"


CHAT = Route(
    _chat_model,
    lambda layer, request, raw: layer.chat.create_chat_completion(request, raw),
    request_id=lambda call_id: call_id,
    response_prefix="chatcmpl-",
    dump=lambda r: r.model_dump_json().encode(),
    sse=_as_is,
)
COMPLETION = Route(
    _completion_model,
    lambda layer, request, raw: layer.completion.create_completion(request, raw),
    request_id=lambda call_id: call_id,
    response_prefix="cmpl-",
    dump=lambda r: r.model_dump_json().encode(),
    sse=_as_is,
)
RESPONSES = Route(
    _responses_model,
    lambda layer, request, raw: layer.responses.create_responses(request, raw),
    request_id=lambda call_id: f"resp_{call_id}",
    response_prefix="",
    dump=lambda r: r.model_dump_json(by_alias=True).encode(),
    sse=_responses_event,
)
MESSAGES = Route(
    _messages_model,
    lambda layer, request, raw: layer.messages.create_messages(request, raw),
    request_id=None,
    response_prefix="",
    dump=lambda r: r.model_dump_json(exclude_none=True).encode(),
    sse=_as_is,
    anthropic=True,
)


def validation_error(error: ValidationError) -> ApiError:
    """A 400 naming the first offending field, as vLLM's own server words it."""
    from vllm.entrypoints.serve.exception_handling.handlers.validation import clean_loc_for_param
    from vllm.exceptions import VLLMValidationError

    errors = error.errors(include_url=False)
    first = errors[0] if errors else {}
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, VLLMValidationError):
        return ApiError(400, str(cause), param=cause.parameter)
    param = clean_loc_for_param(tuple(first.get("loc") or ())) or None
    return ApiError(400, f"{param}: {first.get('msg', 'invalid value')}" if param else str(first.get("msg")), param=param)


@functools.cache
def _vllm_errors() -> tuple[type[VLLMValidationError], type[ErrorResponse]]:
    """vLLM's VLLMValidationError and ErrorResponse, imported on first use."""
    from vllm.entrypoints.serve.engine.protocol import ErrorResponse
    from vllm.exceptions import VLLMValidationError

    return VLLMValidationError, ErrorResponse


def _validate(route: Route, body: dict[str, Any]) -> Any:
    vllm_validation_error, _ = _vllm_errors()
    try:
        return route.request_model().model_validate(body)
    except ValidationError as e:
        raise validation_error(e) from None
    except vllm_validation_error as e:  # raised by vLLM's model validators as they are
        raise ApiError(400, str(e), param=e.parameter) from None
    except (ValueError, TypeError) as e:
        raise ApiError(400, str(e)) from None


def _raw_request(request: web.Request) -> Any:
    """What vLLM's serving classes read of the HTTP request: its headers and a state to write."""
    return SimpleNamespace(headers=request.headers, state=SimpleNamespace())


def _error_response(error: Any, route: Route, headers: dict[str, str]) -> web.Response:
    """vLLM's ErrorResponse (its code is the HTTP status) in the shape of our own errors, so a
    client sees one error style: OpenAI's, or Anthropic's on the Messages route."""
    info = error.error
    body = error_body(info.code, info.message, param=info.param, anthropic=route.anthropic)
    return web.json_response(body, status=info.code, headers=headers)


async def _serve(request: web.Request, route: Route) -> web.StreamResponse:
    body = await read_json(request)
    identity = call_identity(body, request.headers)
    check_json_schemas(body)
    parsed = _validate(route, body)
    calls = request.app[CALLS]
    call = calls.admit(identity, owner_of(request))
    headers = {CALL_HEADER: call.id, PROGRAM_HEADER: call.program.id}
    with calls.run(call) as run:
        if route.request_id is not None:
            # Unless the client named the request itself, its response id is made from the call id.
            given = request.headers.get(REQUEST_ID_HEADER) or body.get("request_id")
            if not given:
                parsed.request_id = given = route.request_id(call.id)  # type: ignore[attr-defined]
            run.alias(f"{route.response_prefix}{given}")
        try:
            result = await route.create(request.app[SERVING], parsed, _raw_request(request))
        except Exception as e:
            result = _engine_error(calls, e)
        if _is_error(result):
            run.refused = True
            return _error_response(result, route, headers)
        if isinstance(result, BaseModel):
            return web.Response(body=route.dump(result), content_type="application/json", headers=headers)
        if not calls.driver.ready():  # every replica went down while vLLM rendered the call: 503, not a 200 stream
            run.refused = True
            raise calls.unavailable("the engine is not ready (an engine died or every replica is down): retry later")
        return await _stream(request, result, route, headers)


def _is_error(result: Any) -> bool:
    return isinstance(result, _vllm_errors()[1])


def _engine_error(calls: Any, error: Exception) -> Any:
    """An exception out of vLLM's layer, as vLLM's own server would answer it; 503 while an
    engine is down (the call may be retried once it is back)."""
    from vllm.entrypoints.serve import create_error_response

    if not calls.driver.ready():
        raise calls.unavailable(f"the engine failed: {error}") from error
    response = create_error_response(error)
    if response.error.code >= 500:
        log.error("call failed in vLLM's serving layer", exc_info=error)
    return response


async def _stream(request: web.Request, items: Any, route: Route, headers: dict[str, str]) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers}
    )
    await response.prepare(request)
    # Closing vLLM's generator (also when the client goes away and aiohttp cancels this handler)
    # aborts the call in the engine.
    async with contextlib.aclosing(items):
        try:
            async for item in items:
                await response.write(route.sse(item).encode())
            await response.write_eof()
        except ConnectionError:
            log.info("client went away mid-stream: aborting the call")
    return response


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, CHAT)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, COMPLETION)


async def responses(request: web.Request) -> web.StreamResponse:
    return await _serve(request, RESPONSES)


async def messages(request: web.Request) -> web.StreamResponse:
    return await _serve(request, MESSAGES)
