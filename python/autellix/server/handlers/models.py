"""GET /v1/models and GET /v1/models/{model}: the one model this server serves."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from autellix.server.errors import ApiError
from autellix.server.state import DRIVER, STARTED


def _model(request: web.Request) -> dict[str, Any]:
    driver = request.app[DRIVER]
    return {
        "id": driver.served_model_name,
        "object": "model",
        "created": request.app[STARTED],
        "owned_by": "autellix",
        "max_model_len": driver.max_model_len,
    }


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [_model(request)]})


async def get_model(request: web.Request) -> web.Response:
    model = _model(request)
    name = request.match_info["model"]
    if name != model["id"]:
        raise ApiError(404, f"the model {name!r} does not exist: this server serves {model['id']!r}", param="model", code="model_not_found")
    return web.json_response(model)
