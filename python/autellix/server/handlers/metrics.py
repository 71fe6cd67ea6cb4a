"""GET /metrics: the front end's counters, what each engine's scheduler reports, and vLLM's own
`vllm:*` metrics (see autellix/server/metrics.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

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
    body, content_type = request.app[METRICS].render(
        snapshots,
        driver.loads(),
        programs_active=len(calls.programs),
        calls_outstanding=calls.outstanding,
        engines_down=[*driver.dead_engines(), *driver.unavailable_engines()],
    )
    return web.Response(body=body, headers={"Content-Type": content_type})
