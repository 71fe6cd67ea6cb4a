"""Which program, thread and parents a call names: from Autellix's headers and body fields, or
from the session-id conventions agent frameworks already use (contract.py gives the order).

`call_identity(body, headers)` also removes Autellix's own body fields, so that vLLM's request
models see only what they know. Every failure is a 400 naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from autellix.contract import (
    AGENTIC_CONTEXT,
    CALLS_LEFT_FIELD,
    CALLS_LEFT_HEADER,
    CALLS_LEFT_KEY,
    CALLS_LEFT_LIMIT,
    PARENTS_FIELD,
    PARENTS_HEADER,
    PARENTS_KEY,
    PROGRAM_FIELD,
    PROGRAM_HEADER,
    PROGRAM_KEY,
    SESSION_FIELD,
    SESSION_HEADER,
    SESSION_KEY,
    THREAD_FIELD,
    THREAD_HEADER,
    THREAD_ID_LIMIT,
    THREAD_KEY,
    XARGS_FIELD,
)
from autellix.server.errors import bad_request

MAX_PROGRAM_ID_CHARS = 256
MAX_PARENTS = 256


@dataclass(frozen=True)
class CallIdentity:
    program_id: str | None  # None: the call is a program of its own
    thread_id: int | None
    parent_ids: tuple[str, ...]
    calls_left: int | None = None  # its program's calls still to make, this one included


# Where each value was found, as error messages name it.
_WHERE_PROGRAM = (
    f"the {PROGRAM_HEADER} header", PROGRAM_FIELD, f"{XARGS_FIELD}.{PROGRAM_KEY}",
    f"the {SESSION_HEADER} header", SESSION_FIELD, f"{XARGS_FIELD}.{SESSION_KEY}",
    f"{XARGS_FIELD}.{AGENTIC_CONTEXT}.program_id",
)
_WHERE_THREAD = (f"the {THREAD_HEADER} header", THREAD_FIELD, f"{XARGS_FIELD}.{THREAD_KEY}")
_WHERE_PARENTS = (PARENTS_FIELD, f"{XARGS_FIELD}.{PARENTS_KEY}")
_WHERE_CALLS_LEFT = (f"the {CALLS_LEFT_HEADER} header", CALLS_LEFT_FIELD, f"{XARGS_FIELD}.{CALLS_LEFT_KEY}")


def _xargs(body: Mapping[str, Any]) -> dict[str, Any]:
    xargs = body.get(XARGS_FIELD)
    if xargs is None:
        return {}
    if not isinstance(xargs, dict):
        raise bad_request(f"'{XARGS_FIELD}' must be an object", param=XARGS_FIELD)
    return xargs


def _agentic_context(xargs: Mapping[str, Any]) -> Any:
    """vLLM Router's context: an object, or the same as a JSON string (vLLM's own request models
    take only scalars and lists in vllm_xargs)."""
    context = xargs.get(AGENTIC_CONTEXT)
    if isinstance(context, str):
        try:
            context = json.loads(context)
        except ValueError:
            raise bad_request(f"'{XARGS_FIELD}.{AGENTIC_CONTEXT}' must be an object or its JSON", param=XARGS_FIELD) from None
    return context


def _program_candidates(body: Mapping[str, Any], xargs: Mapping[str, Any], headers: Mapping[str, str]) -> list[Any]:
    """The values in the order the contract gives (where each is from: `_WHERE_PROGRAM`)."""
    context = _agentic_context(xargs)
    return [
        headers.get(PROGRAM_HEADER),
        body.get(PROGRAM_FIELD),
        xargs.get(PROGRAM_KEY),
        headers.get(SESSION_HEADER),
        body.get(SESSION_FIELD),
        xargs.get(SESSION_KEY),
        context.get("program_id") if isinstance(context, dict) else None,
    ]


def _program_id(body: Mapping[str, Any], xargs: Mapping[str, Any], headers: Mapping[str, str]) -> str | None:
    """The first value given wins."""
    for where, value in zip(_WHERE_PROGRAM, _program_candidates(body, xargs, headers)):
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise bad_request(f"{where} must be a string program id", param=PROGRAM_FIELD)
        value = value.strip()
        if not value:
            continue
        if len(value) > MAX_PROGRAM_ID_CHARS or not value.isprintable():
            raise bad_request(
                f"{where} must be at most {MAX_PROGRAM_ID_CHARS} printable characters", param=PROGRAM_FIELD
            )
        return value
    return None


def _bounded_int(
    given: tuple[Any, ...], wheres: tuple[str, ...], low: int, limit: int, bounds: str, param: str
) -> int | None:
    """The first value given (a header's text, or a JSON integer) as an int in [low, limit)."""
    for where, value in zip(wheres, given):
        if value is None:
            continue
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise bad_request(f"{where} must be an integer, got {value!r}", param=param) from None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value < limit:
            raise bad_request(f"{where} must be an integer in {bounds}", param=param)
        return value
    return None


def _thread_id(body: Mapping[str, Any], xargs: Mapping[str, Any], headers: Mapping[str, str]) -> int | None:
    given = (headers.get(THREAD_HEADER), body.get(THREAD_FIELD), xargs.get(THREAD_KEY))
    return _bounded_int(given, _WHERE_THREAD, 0, THREAD_ID_LIMIT, "[0, 2**63)", THREAD_FIELD)


def _calls_left(body: Mapping[str, Any], xargs: Mapping[str, Any], headers: Mapping[str, str]) -> int | None:
    given = (headers.get(CALLS_LEFT_HEADER), body.get(CALLS_LEFT_FIELD), xargs.get(CALLS_LEFT_KEY))
    return _bounded_int(given, _WHERE_CALLS_LEFT, 1, CALLS_LEFT_LIMIT, "[1, 2**32)", CALLS_LEFT_FIELD)


def _parent_ids(body: Mapping[str, Any], xargs: Mapping[str, Any], headers: Mapping[str, str]) -> tuple[str, ...]:
    parents: list[str] = []
    for where, value in zip(_WHERE_PARENTS, (body.get(PARENTS_FIELD), xargs.get(PARENTS_KEY))):
        if value is None:
            continue
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise bad_request(f"'{where}' must be an array of call ids", param=PARENTS_FIELD)
        parents.extend(value)
    header = headers.get(PARENTS_HEADER)
    if header is not None:
        parents.extend(p.strip() for p in header.split(",") if p.strip())
    if len(parents) > MAX_PARENTS:
        raise bad_request(f"at most {MAX_PARENTS} parent ids, got {len(parents)}", param=PARENTS_FIELD)
    return tuple(dict.fromkeys(parents))


def call_identity(body: MutableMapping[str, Any], headers: Mapping[str, str]) -> CallIdentity:
    xargs = _xargs(body)
    identity = CallIdentity(
        _program_id(body, xargs, headers),
        _thread_id(body, xargs, headers),
        _parent_ids(body, xargs, headers),
        _calls_left(body, xargs, headers),
    )
    for name in (PROGRAM_FIELD, THREAD_FIELD, PARENTS_FIELD, CALLS_LEFT_FIELD):
        body.pop(name, None)
    if isinstance(xargs.get(AGENTIC_CONTEXT), dict):
        del xargs[AGENTIC_CONTEXT]  # read here; vLLM's models would refuse an object value
    return identity
