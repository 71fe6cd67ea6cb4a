"""Autellix's OpenAI-compatible HTTP server (aiohttp on uvloop) with program-aware endpoints.

    autellix serve --model tiny --port 8000

Layout: `app` (application, engine life cycle), `routes`, `handlers/` (one module per endpoint
group), `vllm_serving` (vLLM's own OpenAI/Anthropic serving classes, which parse, render and
format every generation call), `identity` (which program a call names), `calls` (admission and
call bookkeeping), `programs` (the program table), `middlewares` (errors as OpenAI JSON, API
keys), `metrics` (Prometheus), `command` (the `serve` subcommand).
"""

from autellix.server.app import make_app
from autellix.server.settings import ServerSettings

__all__ = ["ServerSettings", "make_app"]
