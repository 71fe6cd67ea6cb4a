"""Bad input never hurts anyone: every malformed request gets a 4xx OpenAI error body naming the
problem, and the server keeps serving. Ends with a hypothesis fuzz over every route."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with running_server() as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client


def assert_error(response: httpx.Response, status: int, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error


def with_fields(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = dict(base)
    for name, value in changes.items():
        if value is ...:
            body.pop(name, None)
        else:
            body[name] = value
    return body


BAD_BODIES = [
    # (path, body, status, param, code)
    ("/v1/chat/completions", with_fields(CHAT, model="gpt-4"), 404, "model", "model_not_found"),
    ("/v1/completions", with_fields(COMPLETION, model="nope"), 404, "model", "model_not_found"),
    ("/v1/chat/completions", with_fields(CHAT, model=...), 400, "model", None),
    ("/v1/chat/completions", with_fields(CHAT, model=7), 400, "model", None),
    ("/v1/chat/completions", with_fields(CHAT, messages=...), 400, "messages", None),
    ("/v1/chat/completions", with_fields(CHAT, messages=[]), 400, "messages", None),
    ("/v1/chat/completions", with_fields(CHAT, messages="hi"), 400, "messages", None),
    ("/v1/chat/completions", with_fields(CHAT, messages=[{"role": "wizard", "content": "x"}]), 400, "messages[0].role", None),
    ("/v1/chat/completions", with_fields(CHAT, messages=[{"role": "user", "content": 5}]), 400, "messages[0].content", None),
    ("/v1/chat/completions", with_fields(CHAT, messages=[{"role": "user", "content": [{"type": "image_url"}]}]), 400, "messages[0].content", None),
    ("/v1/chat/completions", with_fields(CHAT, max_tokens=0), 400, "max_tokens", None),
    ("/v1/chat/completions", with_fields(CHAT, max_tokens=-5), 400, "max_tokens", None),
    ("/v1/chat/completions", with_fields(CHAT, max_tokens="10"), 400, "max_tokens", None),
    ("/v1/chat/completions", with_fields(CHAT, max_tokens=10**30), 400, "max_tokens", None),
    ("/v1/chat/completions", with_fields(CHAT, max_tokens=True), 400, "max_tokens", None),
    ("/v1/chat/completions", with_fields(CHAT, max_completion_tokens=0), 400, "max_completion_tokens", None),
    ("/v1/chat/completions", with_fields(CHAT, n=2), 400, "n", None),
    ("/v1/chat/completions", with_fields(CHAT, temperature=-1), 400, "temperature", None),
    ("/v1/chat/completions", with_fields(CHAT, temperature="hot"), 400, "temperature", None),
    ("/v1/chat/completions", with_fields(CHAT, top_p=0), 400, "top_p", None),
    ("/v1/chat/completions", with_fields(CHAT, top_k=-2), 400, "top_k", None),
    ("/v1/chat/completions", with_fields(CHAT, stop=[1, 2]), 400, "stop", None),
    ("/v1/chat/completions", with_fields(CHAT, stream="yes"), 400, "stream", None),
    ("/v1/chat/completions", with_fields(CHAT, stream_options=[]), 400, "stream_options", None),
    ("/v1/chat/completions", with_fields(CHAT, logit_bias={"1": 5}), 400, "logit_bias", "unsupported_parameter"),
    ("/v1/chat/completions", with_fields(CHAT, tools=[{"type": "function"}]), 400, "tools", "unsupported_parameter"),
    ("/v1/chat/completions", with_fields(CHAT, program_id=12), 400, "program_id", None),
    ("/v1/chat/completions", with_fields(CHAT, program_id="prog-unknown"), 404, "program_id", "program_not_found"),
    ("/v1/chat/completions", with_fields(CHAT, thread_id="a"), 400, "thread_id", None),
    ("/v1/chat/completions", with_fields(CHAT, parent_ids="call-1"), 400, "parent_ids", None),
    ("/v1/chat/completions", with_fields(CHAT, parent_ids=["call-1"]), 400, "parent_ids", None),
    ("/v1/completions", with_fields(COMPLETION, prompt=...), 400, "prompt", None),
    ("/v1/completions", with_fields(COMPLETION, prompt=""), 400, "prompt", None),
    ("/v1/completions", with_fields(COMPLETION, prompt=[]), 400, "prompt", None),
    ("/v1/completions", with_fields(COMPLETION, prompt=["a", "b"]), 400, "prompt", None),
    ("/v1/completions", with_fields(COMPLETION, prompt=[1, -1]), 400, "prompt", None),
    ("/v1/completions", with_fields(COMPLETION, prompt=[1, 10**9]), 400, "prompt", None),
    ("/v1/completions", with_fields(COMPLETION, prompt={"text": "x"}), 400, "prompt", None),
    ("/v1/completions", with_fields(COMPLETION, echo=True), 400, "echo", "unsupported_parameter"),
    ("/v1/programs", {"metadata": "x"}, 400, "metadata", None),
]


@pytest.mark.parametrize(("path", "body", "status", "param", "code"), BAD_BODIES)
def test_bad_body(http: httpx.Client, path: str, body: dict, status: int, param: str | None, code: str | None) -> None:
    assert_error(http.post(path, json=body), status, param, code)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\"text\"", b"", b"\xff\xfe", b"null"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_body_that_is_not_a_json_object(http: httpx.Client, path: str, raw: bytes) -> None:
    assert_error(http.post(path, content=raw, headers={"Content-Type": "application/json"}), 400)


def test_bad_program_headers(http: httpx.Client) -> None:
    assert_error(http.post("/v1/completions", json=COMPLETION, headers={"X-Autellix-Program": "prog-gone"}), 404, code="program_not_found")
    program = http.post("/v1/programs").json()["id"]
    ok = {"X-Autellix-Program": program}
    assert_error(http.post("/v1/completions", json=COMPLETION, headers={**ok, "X-Autellix-Thread": "two"}), 400, "thread_id")
    assert_error(http.post("/v1/completions", json=COMPLETION, headers={**ok, "X-Autellix-Thread": "-1"}), 400, "thread_id")
    assert_error(http.post("/v1/completions", json=COMPLETION, headers={**ok, "X-Autellix-Parents": "call-x,call-y"}), 400, "parent_ids")
    conflicting = with_fields(COMPLETION, program_id="prog-other")
    assert_error(http.post("/v1/completions", json=conflicting, headers=ok), 400, "program_id")
    assert http.post("/v1/completions", json=COMPLETION, headers={**ok, "X-Autellix-Thread": "1"}).status_code == 200


def test_context_length(http: httpx.Client) -> None:
    prompt = list(range(10, 40))  # 30 token ids
    error = assert_error(http.post("/v1/completions", json=with_fields(COMPLETION, prompt=prompt, max_tokens=1000)), 400, "max_tokens", "context_length_exceeded")
    assert str(MAX_MODEL_LEN) in error["message"] and "30" in error["message"] and "1000" in error["message"]
    too_long = [5] * MAX_MODEL_LEN
    assert_error(http.post("/v1/completions", json=with_fields(COMPLETION, prompt=too_long)), 400, code="context_length_exceeded")
    fits = http.post("/v1/completions", json=with_fields(COMPLETION, prompt=prompt, max_tokens=MAX_MODEL_LEN - 30, stop=None))
    assert fits.status_code == 200


def test_body_over_the_size_limit(http: httpx.Client) -> None:
    huge = with_fields(COMPLETION, prompt="a" * (5 << 20))
    assert_error(http.post("/v1/completions", json=huge), 413, code="request_too_large")


def test_unknown_routes_and_methods(http: httpx.Client) -> None:
    assert_error(http.get("/v1/nothing-here"), 404, code="not_found")
    assert_error(http.get("/"), 404)
    assert_error(http.get("/v1/programs/prog-unknown"), 404, code="program_not_found")
    assert_error(http.delete("/v1/programs/prog-unknown"), 404, code="program_not_found")
    wrong = http.get("/v1/chat/completions")
    assert_error(wrong, 405, code="method_not_allowed")
    assert wrong.headers["Allow"] == "POST"
    assert_error(http.put("/v1/models"), 405)
    assert_error(http.post("/health"), 405)


def test_a_streamed_bad_request_is_still_a_json_error(http: httpx.Client) -> None:
    assert_error(http.post("/v1/chat/completions", json=with_fields(CHAT, stream=True, n=3)), 400, "n")


def test_server_still_serves_after_the_abuse(http: httpx.Client) -> None:
    ok = http.post("/v1/chat/completions", json=CHAT)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] <= 2
    assert http.get("/health").json() == {"status": "ok"}


# -- fuzz -------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
CHAT_FIELDS = [
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "n",
    "stop", "seed", "presence_penalty", "frequency_penalty", "repetition_penalty", "ignore_eos", "logit_bias",
    "stream", "stream_options", "user", "program_id", "thread_id", "parent_ids", "prompt",
]
# Keep accidental valid calls short: a mutated max_tokens is never a large valid count.
short_or_bad_max_tokens = st.integers(max_value=4) | st.integers(min_value=MAX_MODEL_LEN) | json_values.filter(lambda v: not isinstance(v, int) or isinstance(v, bool))


@st.composite
def mutated_body(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    if draw(st.booleans()):
        return draw(json_values)  # anything at all
    body = dict(base)
    for name in draw(st.lists(st.sampled_from(CHAT_FIELDS), min_size=1, max_size=3, unique=True)):
        if name in ("max_tokens", "max_completion_tokens"):
            body[name] = draw(short_or_bad_max_tokens)
        elif draw(st.integers(0, 4)) == 0:
            body.pop(name, None)
        else:
            body[name] = draw(json_values)
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = 2
    return body


ROUTES = [
    ("POST", "/v1/chat/completions", CHAT),
    ("POST", "/v1/completions", COMPLETION),
    ("POST", "/v1/programs", {"metadata": {}}),
    ("GET", "/v1/models", {}),
    ("GET", "/v1/programs/prog-x", {}),
    ("DELETE", "/v1/programs/prog-x", {}),
    ("GET", "/health", {}),
    ("GET", "/metrics", {}),
    ("PATCH", "/v1/completions", {}),
]


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), data=st.data(), headers=st.dictionaries(
    st.sampled_from(["X-Autellix-Program", "X-Autellix-Thread", "X-Autellix-Parents"]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12).map(str.strip), max_size=2,
))
def test_fuzz_every_route(http: httpx.Client, route: tuple[str, str, dict], data: st.DataObject, headers: dict[str, str]) -> None:
    method, path, base = route
    body = data.draw(mutated_body(base))
    if isinstance(body, dict) and body.get("stream") is True:
        body["stream"] = False  # a valid stream is fine too, but keep the fuzz loop simple
    response = http.request(method, path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers})
    assert response.status_code < 500, (method, path, body, response.text)
    if response.status_code >= 400:
        assert_error(response, response.status_code)
    elif path in ("/v1/chat/completions", "/v1/completions"):
        assert response.json()["usage"]["completion_tokens"] <= 4
