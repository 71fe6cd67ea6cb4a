"""The SRPT oracle (simulator only): the program with the least remaining work runs first.

It knows every program's future: the remaining work of a program is the sum, over its unfinished
calls, of ``output_tokens + prefill_weight * prompt_tokens`` (a decode token costs a whole step of the
call's latency; a prompt token only a share of a chunked-prefill step). `SrptKnowledge` takes some of
that away, to measure what a predictor of remaining work would have to know: only the calls issued
so far (what a predictor of each call's output length sees), and each call's work misestimated by a
log-normal factor; or only the distribution of programs' total work, ranking by the Gittins rank
of the work each program has had (the best a non-clairvoyant ranking can do). Priorities are
refreshed when one of the program's calls finishes. Preemptive: when the batch is full, a running
call whose program has strictly more remaining work than the best waiting call's program is
stopped. Ties keep arrival order. It offers the subset of the core's ``Scheduler`` interface the
engine uses (``step``, ``requeue``, ``end_program``), so the engine drives both the same way.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["SrptDecision", "SrptKnowledge", "SrptScheduler", "call_work"]

PREFILL_WEIGHT = 1.0 / 256.0


def call_work(prompt_tokens: int, output_tokens: int) -> float:
    return output_tokens + PREFILL_WEIGHT * prompt_tokens


@dataclass(frozen=True)
class SrptKnowledge:
    """What the oracle knows (its `scheduler_options`): `knows` "program", every unfinished call of
    the program, "issued", only those already issued, "distribution", only the work its program has
    had and the distribution of all programs' total work, ranking by the Gittins rank
    (`gittins.py`), "distribution by kind", that of the programs of its workload, or "ended
    programs", that of the programs ended so far (what a server could learn online; least attained
    work until `LEARNS_FROM` ended); each call's work times exp(`error` * Z), Z standard normal drawn
    per call from `error_seed`. A Gittins rank with `ladder` (increasing boundaries) is replaced by
    the index of its range, as the core's queues would hold it: ties then keep arrival order."""

    knows: str = "program"
    error: float = 0.0
    error_seed: int = 0
    ladder: tuple[float, ...] = ()

    KNOWS = ("program", "issued", "distribution", "distribution by kind", "ended programs")
    LEARNS_FROM = 16

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SrptKnowledge:
        names = [f.name for f in fields(cls)]
        unknown = set(options) - set(names)
        if unknown:
            raise ValueError(f"srpt takes the options {', '.join(names)}; got {', '.join(sorted(unknown))}")
        knowledge = cls(**options)
        if knowledge.knows not in cls.KNOWS:
            raise ValueError(f"srpt option knows must be one of {', '.join(cls.KNOWS)}, got {knowledge.knows!r}")
        if not (math.isfinite(knowledge.error) and knowledge.error >= 0):
            raise ValueError(f"srpt option error must be a finite number >= 0, got {knowledge.error!r}")
        ladder = knowledge.ladder
        if not isinstance(ladder, (tuple, list)) or (ladder and not knowledge.ranks_by_gittins) or any(
                not isinstance(b, (int, float)) or not b < c for b, c in zip(ladder, [*ladder[1:], math.inf])):  # fmt: skip
            raise ValueError(f"srpt option ladder takes increasing boundaries of a Gittins rank, got {ladder!r}")
        return replace(knowledge, ladder=tuple(ladder))

    @property
    def ranks_by_gittins(self) -> bool:
        return self.knows.startswith("distribution") or self.learns

    @property
    def learns(self) -> bool:
        return self.knows == "ended programs"

    def on_ladder(self, rank: float) -> float:
        return float(bisect.bisect_right(self.ladder, rank)) if self.ladder else rank

    def estimator(self) -> Callable[[float], float]:
        """Each call's work, as the oracle sees it (the calls taken in a fixed order)."""
        if self.error == 0:
            return lambda work: work
        rng = random.Random(self.error_seed)
        return lambda work: work * math.exp(self.error * rng.gauss(0.0, 1.0))


@dataclass(slots=True)
class SrptDecision:
    admit: list[int] = field(default_factory=list)
    preempt: list[int] = field(default_factory=list)


class _Entry:
    __slots__ = ("cid", "program", "order", "version", "running")

    def __init__(self, cid: int, program: int, order: int):
        self.cid = cid
        self.program = program
        self.order = order
        self.version = 0
        self.running = False


class SrptScheduler:
    """``remaining(program_id)`` returns the program's remaining work now (the oracle)."""

    def __init__(self, remaining: Callable[[int], float], refresh_on_arrival: bool = False):
        self.remaining = remaining
        # When an arrival changes what its program has left (an oracle knowing only issued calls),
        # the program's other calls are ranked again, as after a finish.
        self.refresh_on_arrival = refresh_on_arrival
        self.calls: dict[int, _Entry] = {}
        self.by_program: dict[int, set[int]] = {}
        self.waiting: list[tuple[float, int, int, _Entry]] = []  # (work, order, version, entry)
        self.run_heap: list[tuple[float, int, int, _Entry]] = []  # (-work, -order, version, entry)
        self.n_running = 0
        self.n_waiting = 0
        self.next_order = 0
        self.preemptions = 0

    def __len__(self) -> int:
        return len(self.calls)

    def _push(self, e: _Entry) -> None:
        e.version += 1
        w = self.remaining(e.program)
        if e.running:
            heapq.heappush(self.run_heap, (-w, -e.order, e.version, e))
        else:
            heapq.heappush(self.waiting, (w, e.order, e.version, e))

    def add_call(self, call_id: int, program_id: int, now: float, parents: Sequence[int] = ()) -> None:
        if call_id in self.calls:
            raise ValueError(f"duplicate call id {call_id}")
        e = _Entry(call_id, program_id, self.next_order)
        self.next_order += 1
        self.calls[call_id] = e
        siblings = self.by_program.setdefault(program_id, set())
        if self.refresh_on_arrival:
            for cid in siblings:
                self._push(self.calls[cid])
        siblings.add(call_id)
        self.n_waiting += 1
        self._push(e)

    def finish_calls(self, call_ids: Sequence[int], now: float) -> None:
        touched = set()
        for cid in call_ids:
            e = self.calls.pop(cid)
            e.version += 1
            if e.running:
                self.n_running -= 1
            else:
                self.n_waiting -= 1
            live = self.by_program[e.program]
            live.discard(cid)
            touched.add(e.program)
        for p in touched:  # their programs' remaining work went down: refresh priorities
            for cid in self.by_program[p]:
                self._push(self.calls[cid])

    def record_service_each(self, call_ids: Sequence[int], amounts: Sequence[float], now: float) -> None:
        """Service attained is not what the oracle ranks by: ignored."""

    def requeue(self, call_ids: Sequence[int], now: float) -> None:
        for cid in call_ids:
            e = self.calls[cid]
            if not e.running:
                raise ValueError(f"call {cid} is not running")
            e.running = False
            self.n_running -= 1
            self.n_waiting += 1
            self._push(e)

    def end_program(self, program_id: int) -> list[int]:
        live = sorted(self.by_program.pop(program_id, ()))
        for cid in live:
            e = self.calls.pop(cid)
            e.version += 1
            if e.running:
                self.n_running -= 1
            else:
                self.n_waiting -= 1
        return live

    def _top_waiting(self) -> tuple[float, int, int, _Entry] | None:
        h = self.waiting
        while h and (h[0][2] != h[0][3].version or h[0][3].running):
            heapq.heappop(h)
        return h[0] if h else None

    def _worst_running(self) -> tuple[float, int, int, _Entry] | None:
        h = self.run_heap
        while h and (h[0][2] != h[0][3].version or not h[0][3].running):
            heapq.heappop(h)
        return h[0] if h else None

    def _set_running(self, e: _Entry, running: bool) -> None:
        """Move a call (already popped from its heap) between waiting and running."""
        e.running = running
        moved = 1 if running else -1
        self.n_running += moved
        self.n_waiting -= moved
        self._push(e)

    def schedule(self, now: float, capacity: int) -> SrptDecision:
        d = SrptDecision()
        admitted_first: set[int] = set()  # calls whose first move in this decision was an admission
        while self.n_waiting:
            top = self._top_waiting()
            assert top is not None
            if self.n_running >= capacity:
                worst = self._worst_running()
                if worst is None or -worst[0] <= top[0]:
                    break
                heapq.heappop(self.run_heap)
                we = worst[3]
                self._set_running(we, False)
                d.preempt.append(we.cid)
                self.preemptions += 1
                continue
            heapq.heappop(self.waiting)
            e = top[3]
            self._set_running(e, True)
            if e.cid not in d.preempt:  # it was waiting when the decision began
                admitted_first.add(e.cid)
            d.admit.append(e.cid)
        # A call can move more than once in a decision (its estimate may have changed since it was
        # queued): the engine hears only where each one ends up, if that is not where it started.
        if d.preempt and d.admit:
            ran_before = {c for c in d.preempt if c not in admitted_first}
            running = {c for c in (*d.admit, *d.preempt) if self.calls[c].running}
            d.admit = [c for c in dict.fromkeys(d.admit) if c in running and c not in ran_before]
            d.preempt = [c for c in dict.fromkeys(d.preempt) if c in ran_before and c not in running]
        return d

    def step(self, now: float, capacity: int, ran: Sequence[int] = (), ran_seconds: float = 0.0,
             finished: Sequence[int] = (), new_calls: Sequence[int] = (), new_programs: Sequence[int] = (),
             new_parents: Sequence[Sequence[int]] | None = None) -> SrptDecision:
        if finished:
            self.finish_calls(finished, now)
        for cid, pid in zip(new_calls, new_programs, strict=True):
            self.add_call(cid, pid, now)
        return self.schedule(now, capacity)
