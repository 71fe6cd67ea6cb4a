"""The front end's program table: string ids for clients, int ids for the core, and per-call
records (state, tokens, time to first token and decode time as the front end measures them).

A program id belongs to the API key that used it first: each key is its own namespace, so two
keys using the same session id never see or end each other's program.

Ended programs are forgotten at once, so memory is bounded by the live programs; each keeps at
most `MAX_CALL_RECORDS` call records (the oldest finished ones go first).
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from autellix.contract import SESSION_PROGRAMS

MAX_CALL_RECORDS = 4096


def new_program_id() -> str:
    return f"prog-{secrets.token_hex(12)}"


def new_call_id() -> str:
    # 24 hex digits: never mistaken for the "-<8 hex>" suffix vLLM appends to request ids.
    return f"call-{secrets.token_hex(12)}"


@dataclass
class CallRecord:
    id: str
    thread_id: int | None
    parent_ids: list[str]
    arrival: float  # time.monotonic()
    state: str = "running"  # running | finished | aborted
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_output: float | None = None
    finished_at: float | None = None
    engine: int | None = None
    # The ids vLLM's serving layer gave the engine for this call (one per prompt or turn).
    engine_requests: list[str] = field(default_factory=list)
    live_requests: set[str] = field(default_factory=set)
    aliases: list[str] = field(default_factory=list)  # its other names in the program's index

    @property
    def time_to_first_token(self) -> float:
        """Arrival to first output: queueing plus prefill (the scheduler's own waiting time is
        the program's `waiting_time`)."""
        end = self.first_output if self.first_output is not None else (self.finished_at or time.monotonic())
        return max(end - self.arrival, 0.0)

    @property
    def decode_time(self) -> float:
        """First output to finish (or to now, while it runs)."""
        if self.first_output is None:
            return 0.0
        return max((self.finished_at or time.monotonic()) - self.first_output, 0.0)

    @property
    def latency(self) -> float:
        return max((self.finished_at or time.monotonic()) - self.arrival, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "thread_id": self.thread_id,
            "parent_ids": self.parent_ids,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "time_to_first_token": self.time_to_first_token,
            "decode_time": self.decode_time,
        }


@dataclass
class Program:
    id: str
    internal_id: int
    created: int  # unix seconds
    owner: str | None  # hash of the API key that started it
    solo: bool  # a one-call program made for a call without a program id
    metadata: dict[str, Any] = field(default_factory=dict)
    calls: OrderedDict[str, CallRecord] = field(default_factory=OrderedDict)
    active: set[str] = field(default_factory=set)
    # Response and engine request ids -> call id, so a client can name a parent by `response.id`.
    aliases: dict[str, str] = field(default_factory=dict)
    last_activity: float = field(default_factory=time.monotonic)
    # Totals over every call, also those whose records were dropped.
    waiting_total: float = 0.0
    service_total: float = 0.0
    first_arrival: float | None = None
    last_finish: float | None = None

    def add_call(self, record: CallRecord) -> None:
        self.calls[record.id] = record
        self.active.add(record.id)
        self.last_activity = record.arrival
        if self.first_arrival is None:
            self.first_arrival = record.arrival
        if len(self.calls) > MAX_CALL_RECORDS:
            # The oldest finished record goes: records are in arrival order, so only calls still
            # running stand before it (a long program's call costs O(1), not O(records)).
            oldest = next((call_id for call_id in self.calls if call_id not in self.active), None)
            if oldest is not None:
                self._forget(self.calls.pop(oldest))

    def _forget(self, record: CallRecord) -> None:
        for name in record.aliases:
            self.aliases.pop(name, None)

    def alias(self, name: str, call_id: str) -> None:
        self.aliases[name] = call_id
        record = self.calls.get(call_id)
        if record is not None:
            record.aliases.append(name)

    def find_call(self, name: str) -> CallRecord | None:
        """A call of this program by its call id, response id or engine request id."""
        record = self.calls.get(name)
        if record is None and name in self.aliases:
            record = self.calls.get(self.aliases[name])
        return record

    def drop_call(self, record: CallRecord) -> None:
        """Forget a call that never reached an engine (refused by vLLM's validation)."""
        self.active.discard(record.id)
        if self.calls.pop(record.id, None) is not None:
            self._forget(record)
        if not self.calls:
            self.first_arrival = None

    def finish_call(self, record: CallRecord) -> None:
        self.active.discard(record.id)
        self.last_activity = time.monotonic()
        self.waiting_total += record.time_to_first_token
        self.service_total += record.decode_time
        self.last_finish = record.finished_at

    def latency(self) -> float | None:
        if self.first_arrival is None or self.last_finish is None:
            return None
        return max(self.last_finish - self.first_arrival, 0.0)


class ProgramTable:
    """Live programs by (owner, id). Not thread-safe: used from the event loop only."""

    def __init__(self) -> None:
        self._programs: dict[tuple[str | None, str], Program] = {}
        self._internal_ids = itertools.count(1)
        self.started = 0

    def __len__(self) -> int:
        return len(self._programs)

    def __iter__(self) -> Iterator[Program]:
        return iter(list(self._programs.values()))

    def create(
        self,
        owner: str | None,
        program_id: str | None = None,
        *,
        solo: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> Program:
        """A new program; `program_id` is the client's choice, or None to have one made up.
        Raises KeyError if this owner has a live program by that id."""
        program_id = program_id or new_program_id()
        if (owner, program_id) in self._programs:
            raise KeyError(program_id)
        internal = next(self._internal_ids)
        if internal >= SESSION_PROGRAMS:  # unreachable in practice; never hand the core a bad id
            raise OverflowError("program id space exhausted")
        program = Program(
            id=program_id,
            internal_id=internal,
            created=int(time.time()),
            owner=owner,
            solo=solo,
            metadata=dict(metadata or {}),
        )
        self._programs[(owner, program_id)] = program
        self.started += 1
        return program

    def get(self, program_id: str, owner: str | None) -> Program | None:
        """The live program this owner knows by that id (other owners' programs are invisible)."""
        return self._programs.get((owner, program_id))

    def remove(self, program: Program) -> None:
        self._programs.pop((program.owner, program.id), None)

    def idle_since(self, cutoff: float) -> list[Program]:
        """Programs with no running call and no activity since `cutoff` (monotonic seconds)."""
        return [p for p in self._programs.values() if not p.active and p.last_activity < cutoff and not p.solo]
