"""JSON Schemas a generation request carries (tool parameters, `response_format`), checked
against the JSON Schema meta-schema before any work is done: vLLM compiles them into a grammar
only when a call is forced (tool_choice "required" or named, structured outputs), and a broken one
must be a 400 naming the field, not a silent free-text answer or a grammar error at run time.

The check takes about a millisecond per schema (jsonschema walks the 2020-12 meta-schema's dynamic refs)
and agents send the same tools with every call, so each schema's verdict is cached by its
canonical JSON."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any

from autellix.server.errors import bad_request


def _schemas(body: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(field path, schema) for every schema in the body, in the shapes of OpenAI's chat and
    Responses APIs and Anthropic's Messages API."""
    tools = body.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                continue
            function = tool.get("function")
            if isinstance(function, dict) and "parameters" in function:  # chat: nested
                yield f"tools[{i}].function.parameters", function["parameters"]
            elif "parameters" in tool:  # Responses: flat
                yield f"tools[{i}].parameters", tool["parameters"]
            elif "input_schema" in tool:  # Anthropic Messages
                yield f"tools[{i}].input_schema", tool["input_schema"]
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and isinstance(response_format.get("json_schema"), dict):
        yield "response_format.json_schema.schema", response_format["json_schema"].get("schema")
    text = body.get("text")
    if isinstance(text, dict) and isinstance(text.get("format"), dict) and "schema" in text["format"]:
        yield "text.format.schema", text["format"]["schema"]


def check_json_schemas(body: Mapping[str, Any]) -> None:
    for where, schema in _schemas(body):
        if schema is None:
            continue
        problem = _schema_problem(json.dumps(schema, sort_keys=True))
        if problem is not None:
            raise bad_request(f"'{where}' is not a valid JSON Schema: {problem}", param=where)


@functools.lru_cache(maxsize=1024)
def _schema_problem(schema_json: str) -> str | None:
    """Why the schema (as canonical JSON) is not a valid JSON Schema, or None if it is."""
    import jsonschema  # ~60 ms to import: only once a body carries a schema

    schema = json.loads(schema_json)
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as e:
        path = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in e.path)
        return f"{e.message} (at {path or 'the top'})"
    except Exception as e:  # a schema so broken the validator cannot even be chosen
        return str(e)
    return None
