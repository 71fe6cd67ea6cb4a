"""Typed keys for what the application and each request carry."""

from __future__ import annotations

from aiohttp import web

from autellix.engine import EngineDriver
from autellix.server.calls import CallService
from autellix.server.metrics import FrontEndMetrics
from autellix.server.settings import ServerSettings
from autellix.server.vllm_serving import ServingLayer

SETTINGS = web.AppKey("settings", ServerSettings)
DRIVER = web.AppKey("driver", EngineDriver)
CALLS = web.AppKey("calls", CallService)
METRICS = web.AppKey("metrics", FrontEndMetrics)
SERVING = web.AppKey("serving", ServingLayer)  # vLLM's serving classes, once the engines run

# The hash of the API key a request came with (None without authentication): it owns programs.
OWNER = web.RequestKey("owner", object)


def owner_of(request: web.Request) -> str | None:
    owner = request.get(OWNER)
    return owner if isinstance(owner, str) else None
