"""GET /v1/models and GET /v1/models/{model}: vLLM's model list (the served name, its context
length)."""

from __future__ import annotations

from aiohttp import web

from autellix.server.errors import ApiError
from autellix.server.state import SERVING


async def _models(request: web.Request) -> list[dict]:
    listing = await request.app[SERVING].models.show_available_models()
    return [card.model_dump() for card in listing.data]


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": await _models(request)})


async def get_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    models = await _models(request)
    for model in models:
        if model["id"] == name:
            return web.json_response(model)
    served = ", ".join(repr(m["id"]) for m in models)
    raise ApiError(404, f"the model {name!r} does not exist: this server serves {served}", param="model", code="model_not_found")
