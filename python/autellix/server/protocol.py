"""Request bodies parsed and validated into dataclasses. Every failure is a 400 whose message and
`param` name the offending field, so a client can fix its request without reading server logs.

Unknown fields are ignored (SDKs send extras); fields we cannot honour are refused rather than
silently dropped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from autellix.server.errors import ApiError, bad_request

PROGRAM_HEADER = "X-Autellix-Program"
THREAD_HEADER = "X-Autellix-Thread"
PARENTS_HEADER = "X-Autellix-Parents"
CALL_HEADER = "X-Autellix-Call-Id"

MAX_TOKENS_LIMIT = 1 << 31
MAX_STOP_SEQUENCES = 16
MAX_PARENTS = 256
ID_LIMIT = 1 << 63
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}

# Fields an OpenAI client may send that this server cannot honour, with the values that are
# harmless (the defaults).
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "logit_bias": (None, {}),
    "logprobs": (None, False, 0),
    "top_logprobs": (None, 0),
    "tools": (None, []),
    "functions": (None, []),
    "tool_choice": (None, "none"),
    "function_call": (None, "none"),
    "best_of": (None, 1),
    "echo": (None, False),
    "suffix": (None, ""),
}


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (413 if over the size limit, raised by aiohttp)."""
    raw = await request.read()
    if not raw.strip():
        raise bad_request("the request body is empty: expected a JSON object")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise bad_request(f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise bad_request(f"the request body must be a JSON object, got {_kind(data)}")
    return data


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _wrong(name: str, expected: str, value: Any) -> ApiError:
    return bad_request(f"'{name}' must be {expected}, got {_kind(value)}", param=name)


def optional_string(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _wrong(name, "a string", value)
    return value


def required_string(body: Mapping[str, Any], name: str) -> str:
    value = optional_string(body, name)
    if value is None:
        raise bad_request(f"'{name}' is required", param=name)
    return value


def optional_int(body: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong(name, "an integer", value)
    if not low <= value <= high:
        raise bad_request(f"'{name}' must be between {low} and {high}, got {value}", param=name)
    return value


def optional_number(
    body: Mapping[str, Any], name: str, low: float, high: float, *, low_open: bool = False
) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _wrong(name, "a number", value)
    value = float(value)
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise bad_request(f"'{name}' must be in {bracket}{low}, {high}], got {value}", param=name)
    return value


def optional_bool(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _wrong(name, "a boolean", value)
    return value


@dataclass(frozen=True)
class Sampling:
    """The sampling fields shared by chat and completions (None: not given)."""

    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    top_k: int | None
    min_p: float | None
    stop: tuple[str, ...]
    seed: int | None
    presence_penalty: float | None
    frequency_penalty: float | None
    repetition_penalty: float | None
    ignore_eos: bool


@dataclass(frozen=True)
class CallTags:
    """Which program a call belongs to, on which thread, after which earlier calls."""

    program_id: str | None
    thread_id: int | None
    parent_ids: tuple[str, ...]


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[dict[str, str], ...]  # {"role", "content"} with text content
    sampling: Sampling
    stream: bool
    include_usage: bool
    tags: CallTags


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    prompt: str | tuple[int, ...]
    sampling: Sampling
    stream: bool
    include_usage: bool
    tags: CallTags


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for name, harmless in UNSUPPORTED.items():
        if name in body and not any(body[name] == ok and type(body[name]) is type(ok) for ok in harmless):
            raise bad_request(f"'{name}' is not supported by this server", param=name, code="unsupported_parameter")


def parse_sampling(body: Mapping[str, Any]) -> Sampling:
    _refuse_unsupported(body)
    n = optional_int(body, "n", 1, MAX_TOKENS_LIMIT)
    if n is not None and n != 1:
        raise bad_request(f"'n' must be 1: only one choice per call is supported, got {n}", param="n")
    max_tokens = optional_int(body, "max_completion_tokens", 1, MAX_TOKENS_LIMIT)
    if max_tokens is None:
        max_tokens = optional_int(body, "max_tokens", 1, MAX_TOKENS_LIMIT)
    return Sampling(
        max_tokens=max_tokens,
        temperature=optional_number(body, "temperature", 0.0, 2.0),
        top_p=optional_number(body, "top_p", 0.0, 1.0, low_open=True),
        top_k=optional_int(body, "top_k", -1, MAX_TOKENS_LIMIT),
        min_p=optional_number(body, "min_p", 0.0, 1.0),
        stop=_parse_stop(body),
        seed=optional_int(body, "seed", -(1 << 63), (1 << 64) - 1),
        presence_penalty=optional_number(body, "presence_penalty", -2.0, 2.0),
        frequency_penalty=optional_number(body, "frequency_penalty", -2.0, 2.0),
        repetition_penalty=optional_number(body, "repetition_penalty", 0.0, 2.0, low_open=True),
        ignore_eos=bool(optional_bool(body, "ignore_eos")),
    )


def _parse_stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _wrong("stop", "a string or an array of strings", value)
    if len(value) > MAX_STOP_SEQUENCES:
        raise bad_request(f"'stop' has {len(value)} sequences; at most {MAX_STOP_SEQUENCES}", param="stop")
    if any(not s for s in value):
        raise bad_request("'stop' sequences must not be empty", param="stop")
    return tuple(value)


def _parse_stream(body: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = bool(optional_bool(body, "stream"))
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise _wrong("stream_options", "an object", options)
        include_usage = bool(optional_bool(options, "include_usage"))
    return stream, include_usage


def parse_tags(body: Mapping[str, Any], headers: Mapping[str, str]) -> CallTags:
    """Program, thread and parents from the X-Autellix-* headers or the body fields."""
    program = optional_string(body, "program_id")
    header_program = headers.get(PROGRAM_HEADER)
    if header_program is not None:
        header_program = header_program.strip()
        if program is not None and program != header_program:
            raise bad_request(
                f"the {PROGRAM_HEADER} header ({header_program!r}) and 'program_id' ({program!r}) disagree",
                param="program_id",
            )
        program = header_program
    if program == "":
        raise bad_request("'program_id' must not be empty", param="program_id")

    thread = optional_int(body, "thread_id", 0, ID_LIMIT - 1)
    header_thread = headers.get(THREAD_HEADER)
    if header_thread is not None:
        try:
            thread = int(header_thread.strip())
        except ValueError:
            raise bad_request(f"the {THREAD_HEADER} header must be an integer, got {header_thread!r}", param="thread_id") from None
        if not 0 <= thread < ID_LIMIT:
            raise bad_request(f"the {THREAD_HEADER} header must be in [0, 2**63), got {thread}", param="thread_id")

    parents: list[str] = []
    body_parents = body.get("parent_ids")
    if body_parents is not None:
        if not isinstance(body_parents, list) or not all(isinstance(p, str) for p in body_parents):
            raise _wrong("parent_ids", "an array of call id strings", body_parents)
        parents.extend(body_parents)
    header_parents = headers.get(PARENTS_HEADER)
    if header_parents is not None:
        parents.extend(p.strip() for p in header_parents.split(",") if p.strip())
    if len(parents) > MAX_PARENTS:
        raise bad_request(f"at most {MAX_PARENTS} parent ids, got {len(parents)}", param="parent_ids")
    return CallTags(program, thread, tuple(dict.fromkeys(parents)))


def parse_chat(body: Mapping[str, Any], headers: Mapping[str, str]) -> ChatRequest:
    model = required_string(body, "model")
    messages = _parse_messages(body.get("messages"))
    stream, include_usage = _parse_stream(body)
    return ChatRequest(model, messages, parse_sampling(body), stream, include_usage, parse_tags(body, headers))


def _parse_messages(value: Any) -> tuple[dict[str, str], ...]:
    if value is None:
        raise bad_request("'messages' is required", param="messages")
    if not isinstance(value, list):
        raise _wrong("messages", "an array of message objects", value)
    if not value:
        raise bad_request("'messages' must not be empty", param="messages")
    messages = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _wrong(where, "an object with 'role' and 'content'", message)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise bad_request(
                f"'{where}.role' must be one of system, user, assistant, got {role!r}", param=f"{where}.role"
            )
        messages.append({"role": ROLES[role], "content": _message_text(message.get("content"), role, where)})
    return tuple(messages)


def _message_text(content: Any, role: str, where: str) -> str:
    if content is None and role == "assistant":
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise bad_request(
                    f"'{where}.content[{j}]' must be a text part {{\"type\": \"text\", \"text\": ...}}: "
                    "only text content is supported",
                    param=f"{where}.content",
                )
            texts.append(part["text"])
        return "".join(texts)
    raise _wrong(f"{where}.content", "a string or an array of text parts", content)


def parse_completion(body: Mapping[str, Any], headers: Mapping[str, str]) -> CompletionRequest:
    model = required_string(body, "model")
    prompt = _parse_prompt(body.get("prompt"))
    stream, include_usage = _parse_stream(body)
    return CompletionRequest(model, prompt, parse_sampling(body), stream, include_usage, parse_tags(body, headers))


def _parse_prompt(value: Any) -> str | tuple[int, ...]:
    if value is None:
        raise bad_request("'prompt' is required", param="prompt")
    # A batch of exactly one prompt is the same call.
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (str, list)):
        value = value[0]
    if isinstance(value, str):
        if not value:
            raise bad_request("'prompt' must not be empty", param="prompt")
        return value
    if isinstance(value, list):
        if not value:
            raise bad_request("'prompt' must not be empty", param="prompt")
        if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            return tuple(value)
        if all(isinstance(t, (str, list)) for t in value):
            raise bad_request("'prompt' holds several prompts: send one prompt per call", param="prompt")
    raise _wrong("prompt", "a string or an array of token ids", value)


def parse_program_create(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise _wrong("metadata", "an object", metadata)
    if len(json.dumps(metadata)) > 16 << 10:
        raise bad_request("'metadata' is larger than 16 KiB", param="metadata")
    return metadata
