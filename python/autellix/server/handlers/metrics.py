"""GET /metrics: the front end's counters plus what each engine's scheduler reports."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from autellix.server.metrics import CONTENT_TYPE, Family, Sample, Snapshot, render
from autellix.server.state import CALLS, DRIVER, METRICS

log = logging.getLogger("autellix.server")

SNAPSHOT_TIMEOUT = 10.0


async def metrics(request: web.Request) -> web.Response:
    driver = request.app[DRIVER]
    calls = request.app[CALLS]
    try:
        snapshots: list[Any] = await asyncio.wait_for(driver.snapshots(), SNAPSHOT_TIMEOUT)
    except Exception:  # a dead or stuck engine must not take /metrics down with it
        log.warning("scheduler snapshots failed", exc_info=True)
        snapshots = [None] * driver.num_engines
    loads = driver.loads()
    families: list[Family] = engine_families(snapshots, loads)
    families.append(
        Snapshot("autellix_programs_active", "gauge", "Programs started and not yet ended.", [Sample((), len(calls.programs))])
    )
    families.append(
        Snapshot("autellix_calls_outstanding", "gauge", "Calls admitted and not yet finished.", [Sample((), calls.outstanding)])
    )
    families.extend(request.app[METRICS].families())
    return web.Response(text=render(families), headers={"Content-Type": CONTENT_TYPE})


def engine_families(snapshots: list[Any], loads: list[int]) -> list[Family]:
    queue_depth, running, preemptions, promotions = [], [], [], []
    for index, snapshot in enumerate(snapshots):
        engine = (("engine", str(index)),)
        if not snapshot:  # vLLM's own scheduler (or unreachable): only the balancer's count
            running.append(Sample(engine, loads[index] if index < len(loads) else 0))
            preemptions.append(Sample(engine, 0))
            promotions.append(Sample(engine, 0))
            continue
        for queue, depth in enumerate(snapshot.get("queue_lengths") or ()):
            queue_depth.append(Sample((*engine, ("queue", str(queue))), depth))
        running.append(Sample(engine, snapshot.get("num_running", 0)))
        stats = snapshot.get("stats") or {}
        preemptions.append(Sample(engine, stats.get("preemptions", 0)))
        promotions.append(Sample(engine, stats.get("promotions", 0)))
    return [
        Snapshot("autellix_queue_depth", "gauge", "Calls waiting in each scheduler queue.", queue_depth),
        Snapshot("autellix_running_calls", "gauge", "Calls running on each engine.", running),
        Snapshot("autellix_preemptions_total", "counter", "Priority preemptions the scheduler decided.", preemptions),
        Snapshot(
            "autellix_starvation_promotions_total", "counter", "Calls promoted by the anti-starvation rule.", promotions
        ),
    ]
