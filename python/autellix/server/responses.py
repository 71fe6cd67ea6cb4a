"""OpenAI response objects (chat.completion, text_completion and their stream chunks) and the
server-sent-events writer."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from autellix.server.errors import ApiError, error_body
from autellix.server.protocol import CALL_HEADER, PROGRAM_HEADER

DONE = b"data: [DONE]\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def call_headers(call_id: str, program_id: str) -> dict[str, str]:
    return {CALL_HEADER: call_id, PROGRAM_HEADER: program_id}


class ObjectShapes:
    """Builds the objects of one call: chat (`chat=True`) or text completion."""

    def __init__(self, call_id: str, model: str, *, chat: bool) -> None:
        self.call_id = call_id
        self.model = model
        self.chat = chat
        self.created = int(time.time())

    def _base(self, kind: str) -> dict[str, Any]:
        return {"id": self.call_id, "object": kind, "created": self.created, "model": self.model}

    def complete(self, text: str, finish_reason: str | None, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
            body = self._base("chat.completion")
        else:
            choice = {"index": 0, "text": text}
            body = self._base("text_completion")
        choice["logprobs"] = None
        choice["finish_reason"] = finish_reason
        body["choices"] = [choice]
        body["usage"] = usage(prompt_tokens, completion_tokens)
        return body

    def chunk(self, text: str | None, finish_reason: str | None = None, *, first: bool = False) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta}
            body = self._base("chat.completion.chunk")
        else:
            choice = {"index": 0, "text": text or ""}
            body = self._base("text_completion")
        choice["logprobs"] = None
        choice["finish_reason"] = finish_reason
        body["choices"] = [choice]
        return body

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        body = self._base("chat.completion.chunk" if self.chat else "text_completion")
        body["choices"] = []
        body["usage"] = usage(prompt_tokens, completion_tokens)
        return body


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


async def open_event_stream(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            **headers,
        },
    )
    await response.prepare(request)
    return response


def error_event(error: ApiError) -> bytes:
    """An error after the stream began: the status is already sent, so it travels as an event."""
    return event(error_body(error.status, error.message, error.code, error.param))
