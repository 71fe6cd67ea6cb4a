"""The aiohttp application: routes, middlewares, and the engines' life cycle in `cleanup_ctx`.

`make_app(settings, options)` starts its own EngineDriver when the app starts and shuts it down
when it stops; `make_app(settings, driver=...)` serves an already started driver and leaves its
life cycle to the caller (tests, benches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from autellix.engine import EngineDriver, EngineOptions
from autellix.server.calls import CallService
from autellix.server.metrics import FrontEndMetrics
from autellix.server.middlewares import auth_middleware, error_middleware
from autellix.server.routes import setup_routes
from autellix.server.settings import ServerSettings
from autellix.server.state import CALLS, DRIVER, METRICS, SERVING, SETTINGS
from autellix.server.vllm_serving import build_serving_layer, frontend_args

log = logging.getLogger("autellix.server")


def make_app(
    settings: ServerSettings,
    options: EngineOptions | None = None,
    *,
    driver: EngineDriver | None = None,
) -> web.Application:
    if (options is None) == (driver is None):
        raise ValueError("give either engine options (the app starts its engines) or a started driver")
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = FrontEndMetrics()
    if driver is None:
        assert options is not None
        driver = EngineDriver(options)  # cheap: the engines start with the app
        app.cleanup_ctx.append(_engines)
    app[DRIVER] = driver
    app[CALLS] = CallService(driver, settings, app[METRICS])
    app.cleanup_ctx.append(_serving_layer)
    app.cleanup_ctx.append(_program_reaper)
    setup_routes(app)
    return app


async def _engines(app: web.Application) -> AsyncIterator[None]:
    """Start the replicas before the server listens; stop them (and their engine-core
    processes) when it stops."""
    driver = app[DRIVER]
    try:
        await driver.start()
        yield
    finally:
        await app[CALLS].close()
        await driver.shutdown()


async def _serving_layer(app: web.Application) -> AsyncIterator[None]:
    """vLLM's serving classes over the started engines (they read the model's config)."""
    driver = app[DRIVER]
    assert driver.model_path is not None
    args = frontend_args(str(driver.model_path), driver.served_model_name, app[SETTINGS].vllm_frontend_args)
    app[SERVING] = await build_serving_layer(driver.client, args)
    yield


async def _program_reaper(app: web.Application) -> AsyncIterator[None]:
    """End programs idle for longer than the TTL, so forgotten programs do not pile up."""
    ttl = app[SETTINGS].program_ttl
    interval = min(max(ttl / 4, 0.05), 30.0)

    async def reap_forever() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await app[CALLS].reap_idle()
            except Exception:
                log.exception("ending idle programs failed")

    task = asyncio.get_running_loop().create_task(reap_forever())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
