"""Every path the server answers, in one place."""

from __future__ import annotations

from aiohttp import web

from autellix.server.handlers.generation import chat_completions, completions, messages, responses
from autellix.server.handlers.health import health
from autellix.server.handlers.metrics import metrics
from autellix.server.handlers.models import get_model, list_models
from autellix.server.handlers.programs import create_program, delete_program, get_program


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/v1/models", list_models, allow_head=False)
    app.router.add_get("/v1/models/{model}", get_model, allow_head=False)
    app.router.add_post("/v1/programs", create_program)
    app.router.add_get("/v1/programs/{program_id}", get_program, allow_head=False)
    app.router.add_delete("/v1/programs/{program_id}", delete_program)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics, allow_head=False)
