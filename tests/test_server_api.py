"""`autellix serve` over real HTTP with the official openai SDK: chat, completions, streaming,
programs end to end (client-chosen ids, session ids), API keys and their namespaces, /metrics.
Aborts (program deletion, client disconnect) are in test_server_aborts.py, on an engine the test
controls.

One real server (tiny random-weight model, so texts are gibberish: assert ids, counts, shapes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import openai
import pytest

from server_helpers import running_server

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.timeout(900),  # the first test also waits for the engine to start
]

KEY = "sk-test-one"
OTHER_KEY = "sk-test-two"
MODEL = "tiny"
CALL_ID = re.compile(r"^call-[0-9a-f]{24}$")
# vLLM's response ids, made from the call id.
CHAT_ID = re.compile(r"^chatcmpl-call-[0-9a-f]{24}$")
COMPLETION_ID = re.compile(r"^cmpl-call-[0-9a-f]{24}$")
PROGRAM_ID = re.compile(r"^prog-[0-9a-f]{24}$")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_server(extra_args=["--api-key", KEY, "--api-key", OTHER_KEY]) as url:
        yield url


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as client:
        yield client


_CLIENTS: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Every SDK client a test made is closed after it (no socket left to the garbage collector)."""
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def sdk(base_url: str, key: str = KEY, **headers: str) -> openai.OpenAI:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, default_headers=headers or None, max_retries=0)
    _CLIENTS.append(client)
    return client


def new_program(http: httpx.Client) -> str:
    response = http.post("/v1/programs", json={"metadata": {"test": "api"}})
    assert response.status_code == 201, response.text
    body = response.json()
    assert PROGRAM_ID.match(body["id"]) and body["object"] == "program" and body["created"] > 0
    return body["id"]


def sse_events(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        if line.startswith("data: "):
            yield line[len("data: ") :]


# -- OpenAI surface ---------------------------------------------------------------------------


def test_models_lists_the_served_model(base_url: str) -> None:
    client = sdk(base_url)
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as error:
        client.models.retrieve("gpt-4")
    assert error.value.code == "model_not_found"


def test_chat_completion(base_url: str) -> None:
    client = sdk(base_url)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
        max_tokens=12,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    completion = raw.parse()
    assert CHAT_ID.match(completion.id)
    assert completion.object == "chat.completion" and completion.model == MODEL
    assert completion.id == f"chatcmpl-{raw.headers['X-Autellix-Call-Id']}"
    assert PROGRAM_ID.match(raw.headers["X-Autellix-Program"])
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason == "length"
    assert completion.usage.completion_tokens == 12
    assert completion.usage.prompt_tokens > 5
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 12


def test_chat_text_parts_render_like_a_string(base_url: str) -> None:
    client = sdk(base_url)
    as_parts = client.chat.completions.create(
        model=MODEL, max_tokens=1, messages=[{"role": "user", "content": [{"type": "text", "text": "ab"}, {"type": "text", "text": "cd"}]}]
    )
    # vLLM's renderer joins text parts with newlines.
    as_text = client.chat.completions.create(model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "ab\ncd"}])
    assert as_parts.usage.prompt_tokens == as_text.usage.prompt_tokens


def test_greedy_is_deterministic_and_sampling_fields_are_accepted(base_url: str) -> None:
    client = sdk(base_url)
    first, second = (
        client.completions.create(model=MODEL, prompt="def main():", max_tokens=8, temperature=0) for _ in range(2)
    )
    assert first.choices[0].text == second.choices[0].text
    sampled = client.completions.create(
        model=MODEL, prompt="x", max_tokens=6, temperature=0.8, top_p=0.9, seed=7, presence_penalty=0.5,
        frequency_penalty=0.5, stop=["\n\n"], user="someone",
        extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1},
    )
    assert sampled.usage.completion_tokens <= 6


def test_completion_from_text_and_from_token_ids(base_url: str) -> None:
    client = sdk(base_url)
    text = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=5, extra_body={"ignore_eos": True})
    assert COMPLETION_ID.match(text.id) and text.object == "text_completion"
    assert text.usage.completion_tokens == 5 and text.choices[0].finish_reason == "length"
    ids = client.completions.create(model=MODEL, prompt=[5, 6, 7, 8, 9, 10], max_tokens=3, extra_body={"ignore_eos": True})
    assert ids.usage.prompt_tokens == 6 and ids.usage.completion_tokens == 3


def test_chat_stream_with_usage(base_url: str) -> None:
    stream = sdk(base_url).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count"}],
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1 and CHAT_ID.match(chunks[0].id)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    with_choices = [c for c in chunks if c.choices]
    assert [c.choices[0].finish_reason for c in with_choices][-1] == "length"
    assert all(c.choices[0].finish_reason is None for c in with_choices[:-1])
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage.completion_tokens == 10
    assert "".join(c.choices[0].delta.content or "" for c in with_choices)  # some text came


def test_completion_stream_is_sse_ending_in_done(http: httpx.Client) -> None:
    body = {"model": MODEL, "prompt": "a", "max_tokens": 4, "ignore_eos": True, "stream": True}
    with http.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert CALL_ID.match(response.headers["X-Autellix-Call-Id"])
        raw = response.read().decode()
    assert raw.endswith("data: [DONE]\n\n")
    events = [e for e in sse_events(iter(raw.split("\n"))) if e != "[DONE]"]
    chunks = [json.loads(e) for e in events]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1].get("usage") is None  # not asked for


# -- programs ---------------------------------------------------------------------------------


def call_id(raw) -> str:
    """The call id the server gave a call (`with_raw_response`)."""
    value = raw.headers["X-Autellix-Call-Id"]
    assert CALL_ID.match(value)
    return value


def test_program_end_to_end(base_url: str, http: httpx.Client) -> None:
    program = new_program(http)
    client = sdk(base_url, **{"X-Autellix-Program": program})
    raw_first = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "plan"}], max_tokens=30, extra_body={"ignore_eos": True}
    )
    first = raw_first.parse()
    # A parent is named by its response id (or its call id).
    raw = client.with_options(default_headers={"X-Autellix-Program": program, "X-Autellix-Thread": "2"}).completions.with_raw_response.create(
        model=MODEL, prompt="act", max_tokens=20, extra_body={"ignore_eos": True, "parent_ids": [first.id]}
    )
    assert raw.headers["X-Autellix-Program"] == program
    # The body field names the program as well as the header does.
    raw_third = sdk(base_url).completions.with_raw_response.create(
        model=MODEL, prompt="x", max_tokens=2, extra_body={"program_id": program, "thread_id": 5}
    )
    ids = [call_id(raw_first), call_id(raw), call_id(raw_third)]

    info = http.get(f"/v1/programs/{program}").json()
    assert info["id"] == program and info["object"] == "program" and info["state"] == "active"
    assert info["metadata"] == {"test": "api"}
    calls = {c["id"]: c for c in info["calls"]}
    assert list(calls) == ids
    assert all(c["state"] == "finished" for c in calls.values())
    assert calls[ids[0]]["completion_tokens"] == 30 and calls[ids[1]]["completion_tokens"] == 20
    assert calls[ids[1]]["parent_ids"] == [ids[0]] and calls[ids[1]]["thread_id"] == 2
    assert calls[ids[2]]["thread_id"] == 5
    assert all(c["decode_time"] > 0 and c["time_to_first_token"] >= 0 for c in list(calls.values())[:2])
    assert info["attained_service"] > 0 and info["critical_path"] > 0
    assert info["active_calls"] == 0

    deleted = http.delete(f"/v1/programs/{program}").json()
    assert deleted == {"id": program, "object": "program.deleted", "deleted": True, "aborted_calls": 0}
    assert http.get(f"/v1/programs/{program}").status_code == 404
    # The id is free again: a call naming it starts a new program under it.
    client.completions.create(model=MODEL, prompt="late", max_tokens=2)
    assert len(http.get(f"/v1/programs/{program}").json()["calls"]) == 1
    http.delete(f"/v1/programs/{program}")


@pytest.mark.parametrize(
    "how",
    [
        {"headers": {"X-Autellix-Program": "agent-run-1"}},
        {"headers": {"X-Session-ID": "agent-run-1"}},
        {"body": {"session_id": "agent-run-1"}},
        {"body": {"vllm_xargs": {"session_id": "agent-run-1"}}},
        {"body": {"vllm_xargs": {"agentic_context": {"program_id": "agent-run-1"}}}},
    ],
    ids=["autellix-header", "session-header", "session-field", "xargs-session", "agentic-context"],
)
def test_a_session_id_the_client_chooses_is_a_program(base_url: str, http: httpx.Client, how: dict) -> None:
    client = sdk(base_url, **how.get("headers", {}))
    raws = [
        client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": f"step {i}"}], max_tokens=3, extra_body=how.get("body")
        )
        for i in range(2)
    ]
    assert {r.headers["X-Autellix-Program"] for r in raws} == {"agent-run-1"}
    info = http.get("/v1/programs/agent-run-1").json()
    assert [c["id"] for c in info["calls"]] == [call_id(r) for r in raws]
    assert http.delete("/v1/programs/agent-run-1").json()["deleted"] is True


def test_our_header_wins_over_the_session_id(base_url: str, http: httpx.Client) -> None:
    client = sdk(base_url, **{"X-Autellix-Program": "ours", "X-Session-ID": "theirs"})
    raw = client.completions.with_raw_response.create(model=MODEL, prompt="x", max_tokens=1)
    assert raw.headers["X-Autellix-Program"] == "ours"
    assert http.get("/v1/programs/theirs").status_code == 404
    http.delete("/v1/programs/ours")


def test_parents_must_be_earlier_calls_of_the_program(base_url: str, http: httpx.Client) -> None:
    program, other = new_program(http), new_program(http)
    earlier = sdk(base_url, **{"X-Autellix-Program": other}).completions.create(model=MODEL, prompt="a", max_tokens=1)
    client = sdk(base_url, **{"X-Autellix-Program": program})
    for parents in ([earlier.id], ["call-000000000000000000000000"]):
        with pytest.raises(openai.BadRequestError) as error:
            client.completions.create(model=MODEL, prompt="b", max_tokens=1, extra_body={"parent_ids": parents})
        assert error.value.status_code == 400 and "parent" in error.value.message
    response = http.post(
        "/v1/completions",
        json={"model": MODEL, "prompt": "b", "max_tokens": 1},
        headers={"X-Autellix-Program": program, "X-Autellix-Parents": earlier.id},
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "parent_ids"


# -- API keys ---------------------------------------------------------------------------------


def test_every_route_but_health_needs_the_key(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as anonymous:
        assert anonymous.get("/health").status_code == 200
        for method, path in [("GET", "/v1/models"), ("GET", "/metrics"), ("POST", "/v1/programs"), ("POST", "/v1/chat/completions")]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
                response = anonymous.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                error = response.json()["error"]
                assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        sdk(base_url, key="wrong").models.list()


def test_a_program_belongs_to_the_key_that_started_it(base_url: str, http: httpx.Client) -> None:
    program = new_program(http)
    mine = sdk(base_url, **{"X-Autellix-Program": program}).completions.with_raw_response.create(model=MODEL, prompt="x", max_tokens=1)
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {OTHER_KEY}"}, timeout=30) as other:
        assert other.get("/v1/models").status_code == 200  # a valid key
        assert other.get(f"/v1/programs/{program}").status_code == 404
        assert other.delete(f"/v1/programs/{program}").status_code == 404
        # The same id under another key is another program: it never sees or ends this one.
        theirs = other.post(
            "/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 1}, headers={"X-Autellix-Program": program}
        )
        assert theirs.status_code == 200
        assert [c["id"] for c in other.get(f"/v1/programs/{program}").json()["calls"]] == [theirs.headers["X-Autellix-Call-Id"]]
        assert other.delete(f"/v1/programs/{program}").json()["deleted"] is True
    assert [c["id"] for c in http.get(f"/v1/programs/{program}").json()["calls"]] == [call_id(mine)]
    assert http.delete(f"/v1/programs/{program}").json()["deleted"] is True


# -- /metrics ---------------------------------------------------------------------------------


def _samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics(base_url: str, http: httpx.Client) -> None:
    program = new_program(http)
    sdk(base_url, **{"X-Autellix-Program": program}).completions.create(model=MODEL, prompt="m", max_tokens=4)
    http.delete(f"/v1/programs/{program}")
    response = http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    for family, kind in [
        ("autellix:queue_depth", "gauge"),
        ("autellix:running_calls", "gauge"),
        ("autellix:programs_active", "gauge"),
        ("autellix:programs_started_total", "counter"),
        ("autellix:calls_total", "counter"),
        ("autellix:preemptions_total", "counter"),
        ("autellix:starvation_promotions_total", "counter"),
        ("autellix:placements_total", "counter"),
        ("autellix:program_waiting_seconds", "histogram"),
        ("autellix:program_service_seconds", "histogram"),
        ("autellix:program_latency_seconds", "histogram"),
        ("autellix:call_latency_seconds", "histogram"),
    ]:
        assert f"# TYPE {family} {kind}\n" in text, family
    samples = _samples(text)
    assert samples['autellix:queue_depth{engine="0",queue="0"}'] >= 0
    assert 'autellix:running_calls{engine="0"}' in samples
    assert samples['autellix:calls_total{status="finished"}'] >= 1
    assert samples['autellix:placements_total{engine="0"}'] >= 1
    assert samples["autellix:programs_started_total"] >= 1
    assert samples["autellix:program_latency_seconds_count"] >= 1
    buckets = [v for k, v in samples.items() if k.startswith("autellix:call_latency_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == samples["autellix:call_latency_seconds_count"]
    # vLLM's own engine metrics come along.
    assert "vllm:" in text
