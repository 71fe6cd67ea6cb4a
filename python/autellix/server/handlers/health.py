"""GET /health: 200 while every engine can take calls, 503 otherwise (load balancers poll it).

With Ray replicas (`--ray`), one that Ray is restarting makes it 200 "degraded" with
`unavailable_engines`: the others take the calls meanwhile."""

from __future__ import annotations

from aiohttp import web

from autellix.server.state import DRIVER, SETTINGS


async def health(request: web.Request) -> web.Response:
    driver = request.app[DRIVER]
    # Ray replicas that are down while Ray restarts them: the others serve meanwhile.
    unavailable = driver.unavailable_engines()
    if driver.ready():
        if unavailable:
            return web.json_response({"status": "degraded", "unavailable_engines": unavailable})
        return web.json_response({"status": "ok"})
    dead = driver.dead_engines()
    body: dict[str, object] = {"status": "unavailable", "dead_engines": dead}
    if unavailable:
        body["unavailable_engines"] = unavailable
    return web.json_response(
        body,
        status=503,
        headers={"Retry-After": str(request.app[SETTINGS].retry_after)},
    )
