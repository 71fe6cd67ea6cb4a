"""The trace format: JSON Lines, one program per line, with import, export and validation.

A line looks like::

    {"program_id": "p17", "arrival": 3.25, "system_tokens": 0,
     "calls": [{"call_id": "c1", "parents": [], "prompt_tokens": 812, "output_tokens": 40,
                "delay": 0.0, "prefix_tokens": 0},
               {"call_id": "c2", "parents": ["c1"], "prompt_tokens": 900, "output_tokens": 35,
                "delay": 1.5, "prefix_tokens": 852}]}

Required: ``program_id`` (string or int), ``arrival`` (seconds, >= 0), ``calls`` (non-empty list);
per call ``call_id``, ``prompt_tokens`` (>= 1), ``output_tokens`` (>= 1). Optional: ``parents``
(ids of earlier calls of the same program; default none), ``delay`` (seconds, default 0),
``prefix_tokens`` (leading prompt tokens shared with the program's earlier calls, which the
engine can serve from its prefix cache; default 0, at most ``prompt_tokens``) and, per program,
``system_tokens`` (leading prompt tokens shared by all programs, a system prompt; default 0).

A call is issued once all its parents have finished and then ``delay`` seconds have passed; a root
call is issued ``delay`` seconds after the program arrives. Parents must be listed before their
children, which also rules out cycles. Errors raise :class:`TraceError` naming the line and field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["Call", "Program", "TraceError", "dump_trace", "load_trace", "parse_program", "program_to_dict"]


class TraceError(ValueError):
    """A trace that does not follow the format; the message names the line and the field."""

    def __init__(self, message: str, line: int | None = None, field_name: str | None = None):
        where = []
        if line is not None:
            where.append(f"line {line}")
        if field_name is not None:
            where.append(f"field '{field_name}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.line = line
        self.field = field_name


@dataclass(slots=True)
class Call:
    """One LLM call of a program (a node of its DAG)."""

    call_id: str
    prompt_tokens: int
    output_tokens: int
    parents: tuple[str, ...] = ()
    delay: float = 0.0
    prefix_tokens: int = 0


@dataclass(slots=True)
class Program:
    """One agent program: a DAG of calls arriving at ``arrival`` seconds."""

    program_id: str
    arrival: float
    calls: list[Call]
    system_tokens: int = 0
    workload: str | None = field(default=None, compare=False)

    @property
    def output_tokens(self) -> int:
        return sum(c.output_tokens for c in self.calls)

    @property
    def prompt_tokens(self) -> int:
        return sum(c.prompt_tokens for c in self.calls)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and v == v and v not in (float("inf"), float("-inf"))


def _ident(v: Any, line: int | None, name: str) -> str:
    if isinstance(v, str) and v:
        return v
    if _is_int(v):
        return str(v)
    raise TraceError(f"must be a non-empty string or an integer, got {v!r}", line, name)


def _count(obj: dict, key: str, line: int | None, name: str, minimum: int, default: int | None = None) -> int:
    if key not in obj:
        if default is None:
            raise TraceError("is missing", line, name)
        return default
    v = obj[key]
    if not _is_int(v) or v < minimum:
        raise TraceError(f"must be an integer >= {minimum}, got {v!r}", line, name)
    return v


def _seconds(obj: dict, key: str, line: int | None, name: str, default: float | None = None) -> float:
    if key not in obj:
        if default is None:
            raise TraceError("is missing", line, name)
        return default
    v = obj[key]
    if not _is_number(v) or v < 0:
        raise TraceError(f"must be a finite number of seconds >= 0, got {v!r}", line, name)
    return float(v)


_PROGRAM_KEYS = {"program_id", "arrival", "calls", "system_tokens", "workload"}
_CALL_KEYS = {"call_id", "parents", "prompt_tokens", "output_tokens", "delay", "prefix_tokens"}


def parse_program(obj: Any, line: int | None = None) -> Program:
    """Validates one decoded JSON object and builds a :class:`Program` (``line`` is for messages)."""
    if not isinstance(obj, dict):
        raise TraceError(f"a program must be a JSON object, got {type(obj).__name__}", line)
    unknown = sorted(set(obj) - _PROGRAM_KEYS)
    if unknown:
        raise TraceError("unknown field", line, unknown[0])
    if "program_id" not in obj:
        raise TraceError("is missing", line, "program_id")
    pid = _ident(obj["program_id"], line, "program_id")
    arrival = _seconds(obj, "arrival", line, "arrival")
    system_tokens = _count(obj, "system_tokens", line, "system_tokens", 0, default=0)
    workload = obj.get("workload")
    if workload is not None and not isinstance(workload, str):
        raise TraceError(f"must be a string, got {workload!r}", line, "workload")
    raw_calls = obj.get("calls")
    if raw_calls is None:
        raise TraceError("is missing", line, "calls")
    if not isinstance(raw_calls, list) or not raw_calls:
        raise TraceError("must be a non-empty list of calls", line, "calls")
    calls: list[Call] = []
    seen: set[str] = set()
    for i, rc in enumerate(raw_calls):
        at = f"calls[{i}]"
        if not isinstance(rc, dict):
            raise TraceError(f"must be a JSON object, got {type(rc).__name__}", line, at)
        unknown = sorted(set(rc) - _CALL_KEYS)
        if unknown:
            raise TraceError("unknown field", line, f"{at}.{unknown[0]}")
        if "call_id" not in rc:
            raise TraceError("is missing", line, f"{at}.call_id")
        cid = _ident(rc["call_id"], line, f"{at}.call_id")
        if cid in seen:
            raise TraceError(f"duplicate call id {cid!r}", line, f"{at}.call_id")
        prompt = _count(rc, "prompt_tokens", line, f"{at}.prompt_tokens", 1)
        output = _count(rc, "output_tokens", line, f"{at}.output_tokens", 1)
        delay = _seconds(rc, "delay", line, f"{at}.delay", default=0.0)
        prefix = _count(rc, "prefix_tokens", line, f"{at}.prefix_tokens", 0, default=0)
        if prefix > prompt:
            raise TraceError(f"{prefix} exceeds prompt_tokens {prompt}", line, f"{at}.prefix_tokens")
        raw_parents = rc.get("parents", [])
        if not isinstance(raw_parents, list):
            raise TraceError(f"must be a list of call ids, got {raw_parents!r}", line, f"{at}.parents")
        parents = []
        for p in raw_parents:
            pcid = _ident(p, line, f"{at}.parents")
            if pcid not in seen:
                raise TraceError(
                    f"parent {pcid!r} is not an earlier call of this program (parents must come first)",
                    line,
                    f"{at}.parents",
                )
            if pcid in parents:
                raise TraceError(f"parent {pcid!r} listed twice", line, f"{at}.parents")
            parents.append(pcid)
        seen.add(cid)
        calls.append(Call(cid, prompt, output, tuple(parents), delay, prefix))
    return Program(pid, arrival, calls, system_tokens, workload)


def program_to_dict(p: Program) -> dict[str, Any]:
    d: dict[str, Any] = {"program_id": p.program_id, "arrival": round(p.arrival, 6)}
    if p.workload is not None:
        d["workload"] = p.workload
    if p.system_tokens:
        d["system_tokens"] = p.system_tokens
    calls = []
    for c in p.calls:
        cd: dict[str, Any] = {
            "call_id": c.call_id,
            "parents": list(c.parents),
            "prompt_tokens": c.prompt_tokens,
            "output_tokens": c.output_tokens,
            "delay": round(c.delay, 6),
        }
        if c.prefix_tokens:
            cd["prefix_tokens"] = c.prefix_tokens
        calls.append(cd)
    d["calls"] = calls
    return d


def iter_trace(lines: Iterable[str]) -> Iterator[Program]:
    """Parses JSONL text line by line; blank lines are skipped. Program ids must be unique."""
    ids: set[str] = set()
    for n, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise TraceError(f"invalid JSON: {e.msg} (column {e.colno})", n) from None
        prog = parse_program(obj, n)
        if prog.program_id in ids:
            raise TraceError(f"duplicate program id {prog.program_id!r}", n, "program_id")
        ids.add(prog.program_id)
        yield prog


def load_trace(source: str | Path | IO[str]) -> list[Program]:
    """Reads a JSONL trace from a path or an open text file; programs are sorted by arrival."""
    if isinstance(source, (str, Path)):
        with open(source, encoding="utf-8") as f:
            programs = list(iter_trace(f))
    else:
        programs = list(iter_trace(source))
    programs.sort(key=lambda p: p.arrival)
    return programs


def dump_trace(programs: Iterable[Program], dest: str | Path | IO[str]) -> None:
    """Writes programs as JSONL (one compact object a line)."""
    if isinstance(dest, (str, Path)):
        with open(dest, "w", encoding="utf-8") as f:
            dump_trace(programs, f)
        return
    for p in programs:
        dest.write(json.dumps(program_to_dict(p), separators=(",", ":")))
        dest.write("\n")
