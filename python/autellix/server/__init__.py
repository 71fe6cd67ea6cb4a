"""Autellix's OpenAI-compatible HTTP server (aiohttp on uvloop) with program-aware endpoints.

    autellix serve --model tiny --port 8000

Layout: `app` (application, engine life cycle), `routes`, `handlers/` (one module per endpoint
group), `middlewares` (errors as OpenAI JSON, API keys), `protocol` (request validation),
`calls` (admission and call bookkeeping), `programs` (the program table), `metrics`
(Prometheus text), `command` (the `serve` subcommand).
"""

from autellix.server.app import make_app
from autellix.server.settings import ServerSettings

__all__ = ["ServerSettings", "make_app"]
