"""POST /v1/chat/completions"""

from __future__ import annotations

from aiohttp import web

from autellix.server.handlers.generation import check_model, serve_call
from autellix.server.prompts import chat_prompt_ids
from autellix.server.protocol import parse_chat, read_json
from autellix.server.state import DRIVER


async def chat_completions(request: web.Request) -> web.StreamResponse:
    parsed = parse_chat(await read_json(request), request.headers)
    driver = request.app[DRIVER]
    check_model(parsed.model, driver.served_model_name)
    token_ids = chat_prompt_ids(driver.tokenizer, parsed.messages)
    return await serve_call(request, parsed, token_ids, default_max_tokens=None)
