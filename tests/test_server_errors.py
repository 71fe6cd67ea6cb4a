"""Bad input never hurts anyone: every malformed request gets a 4xx error body naming the problem
(OpenAI's shape, Anthropic's on /v1/messages), and the server keeps serving. Ends with a
hypothesis fuzz over every route.

What a generation request means is vLLM's request models' and serving classes' to judge, so the
params and messages below are vLLM's wording where vLLM answers (e.g. `max_completion_tokens=0`
is reported as `max_tokens`), Autellix's where the front end answers (identity, JSON Schemas,
bodies that are not JSON objects, routes)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server_helpers import running_server

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.timeout(900),  # the first test also waits for the engine to start
]

MODEL = "tiny"
MAX_MODEL_LEN = 1024
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
COMPLETION = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
RESPONSES = {"model": MODEL, "input": "hi", "max_output_tokens": 2}
MESSAGES = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
GENERATION_PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"]

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CHAT_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}
RESPONSES_TOOL = {"type": "function", "name": "get_weather", "parameters": SCHEMA}
ANTHROPIC_TOOL = {"name": "get_weather", "input_schema": SCHEMA}


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with running_server() as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client


def assert_error(
    response: httpx.Response, status: int, param: str | re.Pattern[str] | None = None, code: Any = None
) -> dict[str, Any]:
    """An OpenAI error body: {"error": {"message", "type", "param", "code"}}. `param` is the exact
    field, or a pattern it must match in full."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    if isinstance(param, re.Pattern):
        assert isinstance(error["param"], str) and param.fullmatch(error["param"]), error
    elif param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error


ANTHROPIC_TYPES = {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large"}


def assert_anthropic_error(response: httpx.Response, status: int, names: str | None = None) -> dict[str, Any]:
    """Anthropic's error body: {"type": "error", "error": {"type", "message"}}; Anthropic has no
    `param`, so the field is named in the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    error = body["error"]
    assert set(error) == {"type", "message"}, error
    assert isinstance(error["message"], str) and error["message"]
    if status in ANTHROPIC_TYPES:
        assert error["type"] == ANTHROPIC_TYPES[status], error
    if names is not None:
        assert names in error["message"], error
    return error


def assert_any_error(path: str, response: httpx.Response) -> None:
    if path == "/v1/messages":
        assert_anthropic_error(response, response.status_code)
    else:
        assert_error(response, response.status_code)


def with_fields(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = dict(base)
    for name, value in changes.items():
        if value is ...:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def schema_format(schema: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def tool_choice(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


# A pydantic union's failing member shows up in vLLM's param ("messages.0.<Member>.content").
def member(prefix: str, suffix: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(prefix)}(\.\w+)?\.{re.escape(suffix)}")


C, P, R = "/v1/chat/completions", "/v1/completions", "/v1/responses"
BAD_BODIES = [
    # (path, body, status, param)
    # -- the model
    (C, with_fields(CHAT, model="gpt-4"), 404, "model"),
    (P, with_fields(COMPLETION, model="nope"), 404, "model"),
    (R, with_fields(RESPONSES, model="nope"), 404, "model"),
    (C, with_fields(CHAT, model=7), 400, "model"),
    # -- messages
    (C, with_fields(CHAT, messages=...), 400, "messages"),
    (C, with_fields(CHAT, messages="hi"), 400, "messages"),
    (C, with_fields(CHAT, messages=[{"role": "user", "content": 5}]), 400, member("messages.0", "content")),
    # -- sampling
    (C, with_fields(CHAT, max_tokens=0), 400, "max_tokens"),
    (C, with_fields(CHAT, max_tokens=-5), 400, "max_tokens"),
    (C, with_fields(CHAT, max_tokens="ten"), 400, "max_tokens"),
    (C, with_fields(CHAT, max_tokens=1.5), 400, "max_tokens"),
    (C, with_fields(CHAT, max_tokens=10**30), 400, "max_tokens"),
    (C, with_fields(CHAT, max_tokens=MAX_MODEL_LEN + 1), 400, "max_tokens"),
    (C, with_fields(CHAT, max_completion_tokens=0), 400, "max_tokens"),  # vLLM's name for both
    (C, with_fields(CHAT, temperature=-1), 400, "temperature"),
    (C, with_fields(CHAT, temperature="hot"), 400, "temperature"),
    (C, with_fields(CHAT, top_p=0), 400, "top_p"),
    (C, with_fields(CHAT, top_p=2), 400, "top_p"),
    (C, with_fields(CHAT, stop=[1, 2]), 400, "stop"),
    (C, with_fields(CHAT, stream_options=[]), 400, "stream_options"),
    (C, with_fields(CHAT, logit_bias={"not-a-token": 5}), 400, "logit_bias"),
    (C, with_fields(CHAT, logprobs=True, top_logprobs=50), 400, "logprobs"),
    # -- tools and tool_choice
    (C, with_fields(CHAT, tools="x"), 400, "tools"),
    (C, with_fields(CHAT, tools=[{"type": "function"}]), 400, "tools.0.function"),
    (C, with_fields(CHAT, tools=[CHAT_TOOL, {"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]), 400, "tools[1].function.parameters"),
    (C, with_fields(CHAT, tools=[{"type": "function", "function": {"name": "f", "parameters": {"properties": 3}}}]), 400, "tools[0].function.parameters"),
    (C, with_fields(CHAT, tools=[{"type": "function", "function": {"name": "f", "parameters": [1]}}]), 400, "tools[0].function.parameters"),
    (C, with_fields(CHAT, tools=[CHAT_TOOL], tool_choice=tool_choice("no_such_tool")), 400, "tool_choice"),
    (C, with_fields(CHAT, tools=[CHAT_TOOL], tool_choice="sometimes"), 400, "tool_choice"),
    (C, with_fields(CHAT, tool_choice="required"), 400, "tool_choice"),
    (C, with_fields(CHAT, tool_choice=tool_choice("get_weather")), 400, "tool_choice"),
    # -- response_format
    (C, with_fields(CHAT, response_format=schema_format({"type": 12})), 400, "response_format.json_schema.schema"),
    (C, with_fields(CHAT, response_format=schema_format({"type": "object", "required": "city"})), 400, "response_format.json_schema.schema"),
    (C, with_fields(CHAT, response_format=schema_format(5)), 400, "response_format.json_schema.schema"),
    (C, with_fields(CHAT, response_format={"type": "xml"}), 400, "response_format.type"),
    (C, with_fields(CHAT, response_format={"type": "json_schema"}), 400, "response_format"),
    # -- vllm_xargs
    (C, with_fields(CHAT, vllm_xargs="x"), 400, "vllm_xargs"),
    (C, with_fields(CHAT, vllm_xargs=[1]), 400, "vllm_xargs"),
    (C, with_fields(CHAT, vllm_xargs={"nested": {"b": 1}}), 400, "vllm_xargs.nested"),
    (C, with_fields(CHAT, vllm_xargs={"agentic_context": "not json"}), 400, "vllm_xargs"),
    (C, with_fields(CHAT, vllm_xargs={"autellix_program_id": [1]}), 400, "program_id"),
    (C, with_fields(CHAT, vllm_xargs={"autellix_thread_id": "x"}), 400, "thread_id"),
    (C, with_fields(CHAT, vllm_xargs={"autellix_parents": 5}), 400, "parent_ids"),
    (C, with_fields(CHAT, vllm_xargs={"session_id": {"a": 1}}), 400, "program_id"),
    # -- program, session, thread and parent ids
    (C, with_fields(CHAT, program_id=12.5), 400, "program_id"),
    (C, with_fields(CHAT, program_id=["p"]), 400, "program_id"),
    (C, with_fields(CHAT, program_id="p" * 257), 400, "program_id"),
    (C, with_fields(CHAT, session_id=12.5), 400, "program_id"),
    (C, with_fields(CHAT, session_id=["a"]), 400, "program_id"),
    (C, with_fields(CHAT, session_id="s" * 300), 400, "program_id"),
    (C, with_fields(CHAT, session_id="line\nbreak"), 400, "program_id"),
    (C, with_fields(CHAT, thread_id="a"), 400, "thread_id"),
    (C, with_fields(CHAT, thread_id=-1), 400, "thread_id"),
    (C, with_fields(CHAT, parent_ids=[1]), 400, "parent_ids"),
    (C, with_fields(CHAT, parent_ids="call-1"), 400, "parent_ids"),  # parents need a program
    (C, with_fields(CHAT, parent_ids=["call-1"]), 400, "parent_ids"),
    (C, with_fields(CHAT, program_id="prog-errors-parents", parent_ids=["call-never"]), 400, "parent_ids"),
    # -- completions
    (P, with_fields(COMPLETION, prompt=...), 400, "prompt"),
    (P, with_fields(COMPLETION, prompt=""), 400, "prompt"),
    (P, with_fields(COMPLETION, prompt=[1, -1]), 400, "prompt.1"),
    (P, with_fields(COMPLETION, prompt={"text": "x"}), 400, "prompt"),
    (P, with_fields(COMPLETION, max_tokens=0), 400, "max_tokens"),
    (P, with_fields(COMPLETION, max_tokens=5000), 400, "max_tokens"),
    (P, with_fields(COMPLETION, session_id={"a": 1}), 400, "program_id"),
    # -- responses
    (R, with_fields(RESPONSES, input=...), 400, "input"),
    (R, with_fields(RESPONSES, input=5), 400, "input"),
    (R, with_fields(RESPONSES, input=[{"role": "wizard", "content": "x"}]), 400, "input"),
    (R, with_fields(RESPONSES, max_output_tokens="x"), 400, "max_output_tokens"),
    (R, with_fields(RESPONSES, max_output_tokens=0), 400, "max_tokens"),  # vLLM's name for it
    (R, with_fields(RESPONSES, temperature="hot"), 400, "temperature"),
    (R, with_fields(RESPONSES, tools=[{"type": "function"}]), 400, member("tools.0", "name")),
    (R, with_fields(RESPONSES, tools=[{"type": "function", "name": "f", "parameters": {"type": "objekt"}}]), 400, "tools[0].parameters"),
    (R, with_fields(RESPONSES, tools=[RESPONSES_TOOL], tool_choice={"type": "function", "name": "no_such_tool"}), 400, "tool_choice"),
    (R, with_fields(RESPONSES, text={"format": {"type": "json_schema", "name": "x", "schema": {"type": 12}}}), 400, "text.format.schema"),
    (R, with_fields(RESPONSES, text={"format": {"type": "xml"}}), 400, member("text.format", "type")),
    (R, with_fields(RESPONSES, previous_response_id="resp_never"), 404, "response_id"),
    (R, with_fields(RESPONSES, vllm_xargs=3), 400, "vllm_xargs"),
    (R, with_fields(RESPONSES, session_id={"a": 1}), 400, "program_id"),
    (R, with_fields(RESPONSES, thread_id="x"), 400, "thread_id"),
    # -- programs
    ("/v1/programs", {"metadata": "x"}, 400, "metadata"),
    ("/v1/programs", {"id": 5}, 400, "id"),
    ("/v1/programs", {"id": " "}, 400, "id"),
]


@pytest.mark.parametrize(("path", "body", "status", "param"), BAD_BODIES)
def test_bad_body(http: httpx.Client, path: str, body: dict, status: int, param: str | re.Pattern[str]) -> None:
    assert_error(http.post(path, json=body), status, param)


# vLLM answers these with a 400 that leaves `param` null; the message still says what is wrong.
UNNAMED_PARAM = [
    # (path, body, words in the message)
    (C, with_fields(CHAT, messages=[]), "at least one message"),
    (C, with_fields(CHAT, n=0), "n must be at least 1"),
    (C, with_fields(CHAT, top_k=-2), "top_k"),
    (C, with_fields(CHAT, messages=[{"role": "user", "content": [{"type": "image_url"}]}]), "image_url"),
    (C, with_fields(CHAT, response_format={"type": "json_schema", "json_schema": {"name": "x"}}), "structured outputs"),
    (P, with_fields(COMPLETION, prompt=[]), "prompt"),
    (P, with_fields(COMPLETION, prompt=[1, 10**9]), "out of vocabulary"),
]


@pytest.mark.parametrize(("path", "body", "words"), UNNAMED_PARAM)
def test_bad_body_vllm_does_not_name_the_param_of(http: httpx.Client, path: str, body: dict, words: str) -> None:
    error = assert_error(http.post(path, json=body), 400)
    assert words in error["message"], error


BAD_MESSAGES = [
    # (body, status, what the message names)
    (with_fields(MESSAGES, max_tokens=...), 400, "max_tokens"),
    (with_fields(MESSAGES, max_tokens="x"), 400, "max_tokens"),
    (with_fields(MESSAGES, max_tokens=0), 400, "max_tokens"),
    (with_fields(MESSAGES, messages=...), 400, "messages"),
    (with_fields(MESSAGES, messages="hi"), 400, "messages"),
    (with_fields(MESSAGES, messages=[{"role": "wizard", "content": "x"}]), 400, "messages.0.role"),
    (with_fields(MESSAGES, messages=[{"role": "user", "content": 5}]), 400, "messages.0.content"),
    (with_fields(MESSAGES, model="nope"), 404, "nope"),
    (with_fields(MESSAGES, temperature="hot"), 400, "temperature"),
    (with_fields(MESSAGES, tools="x"), 400, "tools"),
    (with_fields(MESSAGES, tools=[ANTHROPIC_TOOL], tool_choice={"type": "tool", "name": "no_such_tool"}), 400, "no_such_tool"),
    (with_fields(MESSAGES, vllm_xargs="x"), 400, "vllm_xargs"),
    (with_fields(MESSAGES, session_id=[1]), 400, "session_id"),
    (with_fields(MESSAGES, program_id=[1]), 400, "program_id"),
    (with_fields(MESSAGES, thread_id="x"), 400, "thread_id"),
    (with_fields(MESSAGES, messages=[{"role": "user", "content": "hello " * 2000}]), 400, "maximum context length"),
    (
        with_fields(MESSAGES, tools=[{"name": "f", "input_schema": {"type": "objekt"}}], tool_choice={"type": "tool", "name": "f"}),
        400, "input_schema",
    ),
]


@pytest.mark.parametrize(("body", "status", "names"), BAD_MESSAGES)
def test_bad_messages_body_is_an_anthropic_error(http: httpx.Client, body: dict, status: int, names: str) -> None:
    assert_anthropic_error(http.post("/v1/messages", json=body), status, names)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\"text\"", b"", b"\xff\xfe", b"null"])
@pytest.mark.parametrize("path", GENERATION_PATHS)
def test_body_that_is_not_a_json_object(http: httpx.Client, path: str, raw: bytes) -> None:
    response = http.post(path, content=raw, headers={"Content-Type": "application/json"})
    if path == "/v1/messages":
        assert_anthropic_error(response, 400)
    else:
        assert_error(response, 400)


def test_program_headers(http: httpx.Client) -> None:
    program = "prog-errors-headers"
    ok = {"X-Autellix-Program": program}
    assert_error(http.post(P, json=COMPLETION, headers={**ok, "X-Autellix-Thread": "two"}), 400, "thread_id")
    assert_error(http.post(P, json=COMPLETION, headers={**ok, "X-Autellix-Thread": "-1"}), 400, "thread_id")
    assert_error(http.post(P, json=COMPLETION, headers={**ok, "X-Autellix-Thread": str(2**63)}), 400, "thread_id")
    assert_error(http.post(P, json=COMPLETION, headers={"X-Autellix-Program": "p" * 300}), 400, "program_id")
    assert_error(http.post(P, json=COMPLETION, headers={"X-Session-ID": "s" * 300}), 400, "program_id")
    # None of those started the program: a refused call leaves nothing behind.
    assert_error(http.get(f"/v1/programs/{program}"), 404, "program_id", "program_not_found")
    # A client-chosen id starts its program on first use; the header wins over the body field.
    first = http.post(P, json=with_fields(COMPLETION, program_id="prog-errors-other"), headers={**ok, "X-Autellix-Thread": "1"})
    assert first.status_code == 200, first.text
    assert first.headers["X-Autellix-Program"] == program
    calls = http.get(f"/v1/programs/{program}").json()["calls"]
    assert [c["id"] for c in calls] == [first.headers["X-Autellix-Call-Id"]] and calls[0]["thread_id"] == 1
    assert_error(http.get("/v1/programs/prog-errors-other"), 404)
    assert_error(http.post(P, json=COMPLETION, headers={**ok, "X-Autellix-Parents": "call-x,call-y"}), 400, "parent_ids")
    second = http.post(P, json=COMPLETION, headers={**ok, "X-Autellix-Parents": first.headers["X-Autellix-Call-Id"]})
    assert second.status_code == 200, second.text
    assert http.delete(f"/v1/programs/{program}").status_code == 200


def test_a_call_refused_for_unknown_parents_starts_no_program(http: httpx.Client) -> None:
    headers = {"X-Autellix-Program": "prog-errors-refused-parents", "X-Autellix-Parents": "call-never"}
    assert_error(http.post(P, json=COMPLETION, headers=headers), 400, "parent_ids")
    assert_error(http.get("/v1/programs/prog-errors-refused-parents"), 404, "program_id", "program_not_found")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (P, COMPLETION),
        (C, CHAT),
        (R, RESPONSES),
        ("/v1/messages", MESSAGES),
    ],
)
def test_a_parent_may_be_named_by_its_response_id(http: httpx.Client, path: str, body: dict) -> None:
    headers = {"X-Autellix-Program": "prog-errors-response-ids"}
    first = http.post(path, json=body, headers=headers)
    assert first.status_code == 200, first.text
    child = http.post(P, json=with_fields(COMPLETION, parent_ids=[first.json()["id"]]), headers=headers)
    assert child.status_code == 200, child.text


def test_context_length(http: httpx.Client) -> None:
    too_long = [5] * (MAX_MODEL_LEN + 1)
    error = assert_error(http.post(P, json=with_fields(COMPLETION, prompt=too_long)), 400, "input_tokens")
    assert str(MAX_MODEL_LEN) in error["message"] and str(MAX_MODEL_LEN + 1) in error["message"]
    chat = with_fields(CHAT, messages=[{"role": "user", "content": "hello " * 2000}])
    assert_error(http.post(C, json=chat), 400, "input_tokens")
    assert_error(http.post(R, json=with_fields(RESPONSES, input="hello " * 2000)), 400, "input_tokens")
    # A prompt that fills the context leaves no room for output.
    assert_error(http.post(P, json=with_fields(COMPLETION, prompt=[5] * MAX_MODEL_LEN)), 400, "max_tokens")
    # vLLM clamps an output budget that fits max_model_len but not beside the prompt.
    prompt = [5] * (MAX_MODEL_LEN - 20)
    clamped = http.post(P, json=with_fields(COMPLETION, prompt=prompt, max_tokens=100, ignore_eos=True))
    assert clamped.status_code == 200, clamped.text
    assert clamped.json()["usage"] == {**clamped.json()["usage"], "prompt_tokens": len(prompt), "completion_tokens": 20}


def test_body_over_the_size_limit(http: httpx.Client) -> None:
    assert_error(http.post(P, json=with_fields(COMPLETION, prompt="a" * (5 << 20))), 413, code="request_too_large")
    assert_error(http.post(R, json=with_fields(RESPONSES, input="a" * (5 << 20))), 413, code="request_too_large")
    assert_anthropic_error(http.post("/v1/messages", json=with_fields(MESSAGES, system="a" * (5 << 20))), 413)


def test_unknown_routes_and_methods(http: httpx.Client) -> None:
    assert_error(http.get("/v1/nothing-here"), 404, code="not_found")
    assert_error(http.get("/"), 404)
    assert_error(http.get("/v1/programs/prog-errors-never"), 404, "program_id", "program_not_found")
    assert_error(http.delete("/v1/programs/prog-errors-never"), 404, "program_id", "program_not_found")
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses"):
        wrong = http.get(path)
        assert_error(wrong, 405, code="method_not_allowed")
        assert wrong.headers["Allow"] == "POST"
    wrong = http.get("/v1/messages")
    assert_anthropic_error(wrong, 405)
    assert wrong.headers["Allow"] == "POST"
    assert_error(http.put("/v1/models"), 405)
    assert_error(http.post("/health"), 405)


def test_a_program_id_that_exists_is_a_409(http: httpx.Client) -> None:
    assert http.post("/v1/programs", json={"id": "prog-errors-dup"}).status_code == 201
    assert_error(http.post("/v1/programs", json={"id": "prog-errors-dup"}), 409, "id", "program_exists")
    assert http.delete("/v1/programs/prog-errors-dup").status_code == 200


def test_a_streamed_bad_request_is_still_a_json_error(http: httpx.Client) -> None:
    assert_error(http.post(C, json=with_fields(CHAT, stream=True, max_tokens=0)), 400, "max_tokens")
    assert_error(http.post(P, json=with_fields(COMPLETION, stream=True, prompt=[1, -1])), 400, "prompt.1")
    assert_error(http.post(R, json=with_fields(RESPONSES, stream=True, max_output_tokens=0)), 400, "max_tokens")
    bad_tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}
    assert_error(http.post(C, json=with_fields(CHAT, stream=True, tools=[bad_tool])), 400, "tools[0].function.parameters")
    assert_anthropic_error(http.post("/v1/messages", json=with_fields(MESSAGES, stream=True, max_tokens=0)), 400, "max_tokens")


def test_valid_tool_and_schema_calls_still_work(http: httpx.Client) -> None:
    """The checks above refuse only what is broken: a forced call of a well-formed tool, and a
    well-formed response schema, are served."""
    forced = http.post(C, json=with_fields(CHAT, max_tokens=8, tools=[CHAT_TOOL], tool_choice=tool_choice("get_weather")))
    assert forced.status_code == 200, forced.text
    structured = http.post(C, json=with_fields(CHAT, max_tokens=8, response_format=schema_format(SCHEMA)))
    assert structured.status_code == 200, structured.text
    responses = http.post(R, json=with_fields(RESPONSES, tools=[RESPONSES_TOOL]))
    assert responses.status_code == 200, responses.text
    messages = http.post("/v1/messages", json=with_fields(MESSAGES, tools=[ANTHROPIC_TOOL]))
    assert messages.status_code == 200, messages.text


# -- fuzz -------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = [
    # chat and completions
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "n",
    "stop", "seed", "presence_penalty", "frequency_penalty", "repetition_penalty", "ignore_eos", "logit_bias",
    "stream", "stream_options", "user", "prompt", "echo", "logprobs", "top_logprobs", "tools", "tool_choice",
    "response_format", "min_tokens",
    # Autellix's identity, vLLM's session id and extra args
    "program_id", "thread_id", "parent_ids", "session_id", "vllm_xargs",
    # responses and messages
    "input", "instructions", "max_output_tokens", "text", "previous_response_id", "system", "stop_sequences",
]
# Fields whose valid values make a call long: a mutated one is small or invalid, never large.
COUNTS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "n", "min_tokens")
ROUTE_BUDGET = {"/v1/chat/completions": "max_tokens", "/v1/completions": "max_tokens", "/v1/responses": "max_output_tokens", "/v1/messages": "max_tokens"}


def _large_count(value: Any) -> bool:
    """Would vLLM read this as a count above 4 that fits the model (a long, valid call)?"""
    if value is None:
        return True  # no limit: up to the whole context
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return False
    if isinstance(value, (int, float)):
        return value == int(value) and 4 < value <= MAX_MODEL_LEN
    return False


small_or_bad_counts = st.integers(max_value=4) | st.integers(min_value=MAX_MODEL_LEN + 1) | json_values.filter(lambda v: not _large_count(v))


@st.composite
def mutated_body(draw: st.DrawFn, path: str, base: dict[str, Any]) -> Any:
    if draw(st.booleans()):
        return draw(json_values)  # anything at all
    body = dict(base)
    for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
        if name in COUNTS:
            body[name] = draw(small_or_bad_counts)
        elif draw(st.integers(0, 4)) == 0:
            body.pop(name, None)
        else:
            body[name] = draw(json_values)
    budget = ROUTE_BUDGET.get(path)
    if budget is not None and "max_completion_tokens" not in body and _large_count(body.get(budget)):
        body[budget] = 2
    return body


ROUTES = [
    ("POST", "/v1/chat/completions", CHAT),
    ("POST", "/v1/completions", COMPLETION),
    ("POST", "/v1/responses", RESPONSES),
    ("POST", "/v1/messages", MESSAGES),
    ("POST", "/v1/programs", {"metadata": {}}),
    ("GET", "/v1/models", {}),
    ("GET", "/v1/programs/prog-x", {}),
    ("DELETE", "/v1/programs/prog-x", {}),
    ("GET", "/health", {}),
    ("GET", "/metrics", {}),
    ("PATCH", "/v1/completions", {}),
    ("PUT", "/v1/messages", {}),
]
HEADER_NAMES = ["X-Autellix-Program", "X-Autellix-Thread", "X-Autellix-Parents", "X-Session-ID"]


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), data=st.data(), headers=st.dictionaries(
    st.sampled_from(HEADER_NAMES),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12).map(str.strip), max_size=2,
))
def test_fuzz_every_route(http: httpx.Client, route: tuple[str, str, dict], data: st.DataObject, headers: dict[str, str]) -> None:
    method, path, base = route
    body = data.draw(mutated_body(path, base))
    response = http.request(method, path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers})
    assert response.status_code < 500, (method, path, headers, body, response.text)
    if response.status_code >= 400:
        assert_any_error(path, response)
    elif path in ROUTE_BUDGET and response.headers["content-type"].startswith("application/json"):
        usage = response.json()["usage"]
        produced = usage.get("completion_tokens", usage.get("output_tokens"))
        assert produced is not None and produced <= 4 * 4 * 4, usage  # 4 tokens x n <= 4 x 4 prompts


def test_server_still_serves_after_the_abuse(http: httpx.Client) -> None:
    ok = http.post(C, json=CHAT)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] <= 2
    assert http.post(R, json=RESPONSES).status_code == 200
    assert http.post("/v1/messages", json=MESSAGES).status_code == 200
    assert http.get("/health").json() == {"status": "ok"}
