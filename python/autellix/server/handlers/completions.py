"""POST /v1/completions"""

from __future__ import annotations

from aiohttp import web

from autellix.server.handlers.generation import check_model, serve_call
from autellix.server.prompts import completion_prompt_ids
from autellix.server.protocol import parse_completion, read_json
from autellix.server.state import DRIVER

# OpenAI's default for the legacy completions endpoint.
DEFAULT_MAX_TOKENS = 16


async def completions(request: web.Request) -> web.StreamResponse:
    parsed = parse_completion(await read_json(request), request.headers)
    driver = request.app[DRIVER]
    check_model(parsed.model, driver.served_model_name)
    token_ids = completion_prompt_ids(driver.tokenizer, parsed.prompt)
    return await serve_call(request, parsed, token_ids, default_max_tokens=DEFAULT_MAX_TOKENS)
