"""GET /v1/models"""

from __future__ import annotations

from aiohttp import web

from autellix.server.state import DRIVER, STARTED


async def list_models(request: web.Request) -> web.Response:
    driver = request.app[DRIVER]
    model = {
        "id": driver.served_model_name,
        "object": "model",
        "created": request.app[STARTED],
        "owned_by": "autellix",
        "max_model_len": driver.max_model_len,
    }
    return web.json_response({"object": "list", "data": [model]})
