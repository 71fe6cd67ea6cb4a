"""GET /health: 200 while every engine can take calls, 503 otherwise (load balancers poll it)."""

from __future__ import annotations

from aiohttp import web

from autellix.server.state import DRIVER, SETTINGS


async def health(request: web.Request) -> web.Response:
    driver = request.app[DRIVER]
    if driver.ready():
        return web.json_response({"status": "ok"})
    dead = driver.dead_engines()
    return web.json_response(
        {"status": "unavailable", "dead_engines": dead},
        status=503,
        headers={"Retry-After": str(request.app[SETTINGS].retry_after)},
    )
