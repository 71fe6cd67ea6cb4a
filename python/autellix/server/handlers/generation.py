"""What chat and text completions share: validate, admit, run, then answer whole or as SSE."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from autellix.server.calls import CallStream
from autellix.server.errors import ApiError
from autellix.server.protocol import ChatRequest, CompletionRequest
from autellix.server.responses import DONE, ObjectShapes, call_headers, error_event, event, open_event_stream
from autellix.server.sampling import check_context, sampling_params
from autellix.server.state import CALLS, DRIVER, owner_of

log = logging.getLogger("autellix.server")


def check_model(name: str, served: str) -> None:
    if name != served:
        raise ApiError(
            404, f"the model {name!r} does not exist: this server serves {served!r}", param="model", code="model_not_found"
        )


async def serve_call(
    request: web.Request,
    parsed: ChatRequest | CompletionRequest,
    token_ids: Sequence[int],
    default_max_tokens: int | None,
) -> web.StreamResponse:
    driver = request.app[DRIVER]
    chat = isinstance(parsed, ChatRequest)
    max_tokens = check_context(len(token_ids), parsed.sampling.max_tokens or default_max_tokens, driver.max_model_len)
    params = sampling_params(parsed.sampling, max_tokens)
    calls = request.app[CALLS]
    call = calls.admit(parsed.tags, owner_of(request))
    shapes = ObjectShapes(call.id, driver.served_model_name, chat=chat)
    headers = call_headers(call.id, call.program.id)
    async with calls.run(call, token_ids, params) as stream:
        if parsed.stream:
            return await _answer_streaming(request, stream, shapes, headers, parsed.include_usage)
        return await _answer_whole(stream, shapes, headers)


async def _answer_whole(stream: CallStream, shapes: ObjectShapes, headers: dict[str, str]) -> web.Response:
    texts = [chunk.text async for chunk in stream]
    record = stream.record
    body = shapes.complete("".join(texts), stream.finish_reason or "abort", record.prompt_tokens, record.completion_tokens)
    return web.json_response(body, headers=headers)


async def _answer_streaming(
    request: web.Request, stream: CallStream, shapes: ObjectShapes, headers: dict[str, str], include_usage: bool
) -> web.StreamResponse:
    # Wait for the first output before sending headers, so that a call the engine refuses still
    # gets a proper error status.
    first: Any = await stream.__anext__()
    response = await open_event_stream(request, headers)
    try:
        if shapes.chat:
            await response.write(event(shapes.chunk("", first=True)))
        chunk = first
        while True:
            if chunk.text:
                await response.write(event(shapes.chunk(chunk.text)))
            if chunk.finished:
                break
            try:
                chunk = await stream.__anext__()
            except StopAsyncIteration:
                break
        await response.write(event(shapes.chunk(None if shapes.chat else "", stream.finish_reason or "abort")))
        if include_usage:
            record = stream.record
            await response.write(event(shapes.usage_chunk(record.prompt_tokens, record.completion_tokens)))
        await response.write(DONE)
        await response.write_eof()
    except ConnectionError:
        log.info("client went away during call %s: aborting it", shapes.call_id)
    except ApiError as error:
        await _try_write(response, error_event(error) + DONE)
    return response


async def _try_write(response: web.StreamResponse, data: bytes) -> None:
    try:
        await response.write(data)
        await response.write_eof()
    except ConnectionError:
        pass
