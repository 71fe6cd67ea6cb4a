"""Replay programs against an EngineDriver in real time and time every program.

Each program starts at its arrival time; each call is issued once all its parents finished plus
its delay, with its parents' request ids passed to the driver (ATLAS uses them). Calls ask for
exactly their output tokens (``ignore_eos``), so every scheduler serves the same work. When a
program's last call finishes the program is ended in the engine (the session end), which drops
it from Autellix's table. With `tell_calls_left` each call also says how many calls its program
will still make, itself included, as an agent that knows its step budget would.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autellix.engine.driver import EngineDriver
from autellix.sim.trace import Call, Program

from engine.prompts import PromptBuilder

# Program ids are unique over the whole process, so no engine ever confuses two runs' programs.
_program_ids = itertools.count(1)


@dataclass
class ProgramRecord:
    program: Program
    engine_id: int
    arrival: float  # seconds since the point's start
    finish: float = -1.0
    tokens: int = 0
    calls_issued: int = 0
    calls_done: int = 0
    short_calls: list[str] = field(default_factory=list)  # calls that got fewer tokens than asked


@dataclass
class Busy:
    """Time during which at least one call was outstanding: the engine was stepping."""

    outstanding: int = 0
    since: float = 0.0
    seconds: float = 0.0

    def enter(self) -> None:
        if self.outstanding == 0:
            self.since = time.monotonic()
        self.outstanding += 1

    def leave(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self.seconds += time.monotonic() - self.since


@dataclass
class PointRun:
    records: list[ProgramRecord]
    wall: float
    busy_seconds: float
    aborted_calls: int
    stopped_early: bool
    call_seconds: list[float]  # issue -> finish of every finished call
    occupancy: list[tuple[int, int]] = field(default_factory=list)


async def replay(
    driver: EngineDriver,
    programs: list[Program],
    prompts: PromptBuilder,
    *,
    tag: str,
    wall_limit: float,
    on_progress: Callable[[int, int, int], None] | None = None,
    tell_calls_left: bool = False,
) -> PointRun:
    from vllm import SamplingParams

    t0 = time.monotonic()
    busy = Busy()
    live: set[str] = set()
    call_seconds: list[float] = []
    records = [ProgramRecord(p, next(_program_ids), p.arrival) for p in programs]

    async def run_call(rec: ProgramRecord, call: Call, done: dict[str, asyncio.Event]) -> None:
        await asyncio.gather(*(done[p].wait() for p in call.parents))
        await asyncio.sleep(call.delay)
        request_id = f"{tag}-{rec.engine_id}-{call.call_id}"
        params = SamplingParams(max_tokens=call.output_tokens, ignore_eos=True, temperature=0.0, detokenize=False)
        parents = [f"{tag}-{rec.engine_id}-{p}" for p in call.parents]
        calls_left = len(rec.program.calls) - rec.calls_issued if tell_calls_left else None
        rec.calls_issued += 1
        issued = time.monotonic()
        got = 0
        live.add(request_id)
        busy.enter()
        try:
            async for chunk in driver.generate(
                request_id, prompts.prompt(rec.program, call), params,
                program_id=rec.engine_id, thread_id=int(call.call_id.lstrip("c") or 0), parents=parents,
                calls_left=calls_left,
            ):
                got = chunk.completion_tokens
        finally:
            busy.leave()
            live.discard(request_id)
        now = time.monotonic()
        call_seconds.append(now - issued)
        rec.tokens += got
        rec.calls_done += 1
        if got != call.output_tokens:
            rec.short_calls.append(call.call_id)
        if rec.calls_done == len(rec.program.calls):
            rec.finish = now - t0
        done[call.call_id].set()

    async def run_program(rec: ProgramRecord) -> None:
        await asyncio.sleep(max(0.0, t0 + rec.arrival - time.monotonic()))
        done = {c.call_id: asyncio.Event() for c in rec.program.calls}
        await asyncio.gather(*(run_call(rec, c, done) for c in rec.program.calls))
        await driver.end_program(rec.engine_id)
        prompts.forget(rec.program)

    async def report() -> None:
        while True:
            await asyncio.sleep(3.0)
            if on_progress is not None:
                on_progress(sum(r.finish >= 0 for r in records), len(records), len(live))

    occupancy: list[tuple[int, int]] = []  # (running, waiting) as the Autellix core counts them

    async def sample() -> None:
        # Is the batch ever short of calls while some wait? (vanilla vLLM has no such snapshot)
        while driver.options.scheduler != "vllm":
            await asyncio.sleep(0.25)
            for snap in await driver.snapshots():
                if snap is not None and busy.outstanding:
                    occupancy.append((snap["num_running"], snap["num_waiting"]))

    reporter = asyncio.create_task(report())
    sampler = asyncio.create_task(sample())
    tasks = [asyncio.create_task(run_program(r)) for r in records]
    _, pending = await asyncio.wait(tasks, timeout=wall_limit)
    aborted = len(live)
    if pending:
        # Overloaded past the point's wall limit: stop waiting, abort what is still in the engine.
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await driver.abort(sorted(live))
        for rec in records:
            if rec.finish < 0:
                await driver.end_program(rec.engine_id)
    reporter.cancel()
    sampler.cancel()
    await asyncio.gather(reporter, sampler, return_exceptions=True)
    await _drain(driver)
    return PointRun(records, time.monotonic() - t0, busy.seconds, aborted, bool(pending), call_seconds, occupancy)


async def _drain(driver: EngineDriver, timeout: float = 30.0) -> None:
    """Wait until the balancer counts no outstanding call, so the next point starts idle."""
    deadline = time.monotonic() + timeout
    while any(driver.loads()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def snapshot_counters(snapshots: list[dict[str, Any] | None]) -> dict[str, float]:
    """The plug-in's cumulative counters summed over engines (empty for vanilla vLLM)."""
    total: dict[str, float] = {}
    for snap in snapshots:
        if snap is None:
            continue
        for key, value in snap.get("plugin", {}).items():
            total[key] = total.get(key, 0.0) + float(value)
        for key, value in snap.get("stats", {}).items():
            total[f"core_{key}"] = total.get(f"core_{key}", 0.0) + float(value)
    return total
