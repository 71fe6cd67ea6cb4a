"""Request bodies the front end reads itself: the JSON object every POST carries, and the
program-create body. What a generation request means is vLLM's to parse (vllm_serving.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from autellix.server.errors import bad_request

MAX_METADATA_BYTES = 16 << 10


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (413 if over the size limit, raised by aiohttp)."""
    raw = await request.read()
    if not raw or raw.isspace():  # (strip() would copy the whole body)
        raise bad_request("the request body is empty: expected a JSON object")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise bad_request(f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(data).__name__}")
    return data


def parse_program_create(body: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(the id the client wants, or None to have one made up; metadata)."""
    program_id = body.get("id")
    if program_id is not None and (not isinstance(program_id, str) or not program_id.strip()):
        raise bad_request("'id' must be a non-empty string", param="id")
    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise bad_request("'metadata' must be an object", param="metadata")
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        raise bad_request("'metadata' is larger than 16 KiB", param="metadata")
    return (program_id.strip() if program_id else None), metadata
