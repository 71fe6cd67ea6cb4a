"""Limits and failure modes of `autellix serve`: overload (429), idle programs ended after the
TTL, vanilla vLLM's scheduler behind the same API, and an engine that dies (503)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from server_helpers import group_members, health, running_server, server_process

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.timeout(900),  # the first test also waits for the engine to start
]

MODEL = "tiny"
# A stream the client does not read holds its call open: ~15 MB of chunks (8 choices of 1,000
# tokens with 20 logprobs each) fill the socket buffers, and the server waits to write the rest.
# The call ends when the test closes the stream, not when the engine is done.
HELD_STREAM = {
    "model": MODEL, "messages": [{"role": "user", "content": "long"}], "max_tokens": 1000, "ignore_eos": True,
    "n": 8, "logprobs": True, "top_logprobs": 20, "stream": True,
}
SHORT = {"model": MODEL, "prompt": "short", "max_tokens": 2}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_server(extra_args=["--max-queued-calls", "1", "--program-ttl", "1", "--policy", "vllm"]) as url:
        yield url


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=120) as client:
        yield client


def wait_for(predicate, what: str, timeout: float = 120.0):
    """Poll until `predicate()` is truthy; not a speed check."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def metric(http: httpx.Client, sample: str, default: float | None = None) -> float:
    """One sample's value from /metrics, by its name and labels as printed
    (`autellix:calls_total{status="rejected"}`); `default` if it is not there (yet)."""
    for line in http.get("/metrics").text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    if default is not None:
        return default
    raise AssertionError(f"no {sample} in /metrics")


def outstanding(http: httpx.Client) -> float:
    return metric(http, "autellix:calls_outstanding")


CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
RESPONSES = {"model": MODEL, "input": "x", "max_output_tokens": 2}
MESSAGES = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}


def assert_refused(response: httpx.Response, status: int, openai_type: str, code: str, anthropic_type: str | None = None) -> None:
    """A refusal to retry: the status, Retry-After, and the route's error shape."""
    assert response.status_code == status, response.text
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    if anthropic_type is not None:
        assert body["type"] == "error" and body["error"]["type"] == anthropic_type, body
    else:
        assert body["error"]["type"] == openai_type and body["error"]["code"] == code, body


def test_overload_is_429_with_retry_after(base_url: str, http: httpx.Client) -> None:
    rejected_before = metric(http, 'autellix:calls_total{status="rejected"}', default=0.0)
    with httpx.Client(base_url=base_url, timeout=120) as own:
        with own.stream("POST", "/v1/chat/completions", json=HELD_STREAM) as running:
            lines = running.iter_lines()  # kept: dropping it would close the connection
            assert next(lines).startswith("data: ")
            assert outstanding(http) == 1.0  # the one slot (--max-queued-calls 1) is taken
            for path, body in [("/v1/completions", SHORT), ("/v1/chat/completions", CHAT), ("/v1/responses", RESPONSES)]:
                assert_refused(http.post(path, json=body), 429, "rate_limit_error", "overloaded")
            assert_refused(http.post("/v1/messages", json=MESSAGES), 429, "", "", anthropic_type="rate_limit_error")
            # Refused calls start nothing: a client-named program is not created by a 429.
            refused = http.post("/v1/completions", json=SHORT, headers={"X-Autellix-Program": "prog-limits-refused"})
            assert_refused(refused, 429, "rate_limit_error", "overloaded")
            assert http.get("/v1/programs/prog-limits-refused").status_code == 404
            assert outstanding(http) == 1.0, "the held stream ended by itself: the socket buffers took it all"
    wait_for(lambda: outstanding(http) == 0, "the closed stream's call to end")
    assert http.post("/v1/completions", json=SHORT).status_code == 200
    assert metric(http, 'autellix:calls_total{status="rejected"}') == rejected_before + 5
    assert metric(http, 'autellix:calls_total{status="aborted"}') >= 1  # the stream we hung up on


def test_idle_programs_are_ended_after_the_ttl(http: httpx.Client) -> None:
    program = http.post("/v1/programs").json()["id"]
    first = http.post("/v1/completions", json=SHORT, headers={"X-Autellix-Program": program})
    assert first.status_code == 200
    wait_for(lambda: http.get(f"/v1/programs/{program}").status_code == 404, "the idle program to be ended")
    # The ended program is forgotten: its calls can no longer be parents...
    orphan = http.post(
        "/v1/completions", json={**SHORT, "parent_ids": [first.headers["X-Autellix-Call-Id"]]},
        headers={"X-Autellix-Program": program},
    )
    assert orphan.status_code == 400 and orphan.json()["error"]["param"] == "parent_ids", orphan.text
    # ...and a later call by the same id starts a new program of that name (first use again).
    late = http.post("/v1/completions", json=SHORT, headers={"X-Autellix-Program": program})
    assert late.status_code == 200, late.text
    info = http.get(f"/v1/programs/{program}").json()
    assert [c["id"] for c in info["calls"]] == [late.headers["X-Autellix-Call-Id"]]
    assert http.delete(f"/v1/programs/{program}").status_code == 200


def test_vanilla_vllm_scheduler_behind_the_same_api(http: httpx.Client) -> None:
    program = http.post("/v1/programs").json()["id"]
    first = http.post("/v1/completions", json={**SHORT, "ignore_eos": True}, headers={"X-Autellix-Program": program})
    assert first.status_code == 200, first.text
    parent = first.headers["X-Autellix-Call-Id"]
    second = http.post("/v1/completions", json={**SHORT, "parent_ids": [parent]}, headers={"X-Autellix-Program": program})
    assert second.status_code == 200, second.text
    # Every generation route runs on vanilla vLLM's scheduler too.
    for path, body in [("/v1/chat/completions", CHAT), ("/v1/responses", RESPONSES), ("/v1/messages", MESSAGES)]:
        assert http.post(path, json=body).status_code == 200, path
    info = http.get(f"/v1/programs/{program}").json()
    call_ids = [first.headers["X-Autellix-Call-Id"], second.headers["X-Autellix-Call-Id"]]
    assert [c["id"] for c in info["calls"]] == call_ids
    assert info["calls"][1]["parent_ids"] == [parent]
    assert all(c["state"] == "finished" and c["completion_tokens"] == 2 for c in info["calls"]), info["calls"]
    # No Autellix scheduler in the engine: nothing to report from it.
    assert info["attained_service"] == 0.0 and info["critical_path"] == 0.0 and info["waiting_time"] == 0.0
    metrics = http.get("/metrics").text
    assert "autellix:queue_depth{" not in metrics
    assert 'autellix:running_calls{engine="0"} 0.0' in metrics.splitlines()
    http.delete(f"/v1/programs/{program}")


def health_retry_after(base_url: str) -> str:
    response = httpx.get(f"{base_url}/health", timeout=30)
    assert response.status_code == 503
    return response.headers["Retry-After"]


def test_a_dead_engine_makes_the_server_unavailable(base_url: str, http: httpx.Client) -> None:
    server = server_process(base_url)
    engine_processes = [pid for pid in group_members(server.pid) if pid != server.pid]
    assert engine_processes, "the engine core runs in a child process"
    for pid in engine_processes:
        os.kill(pid, signal.SIGKILL)
    status, body = wait_for(lambda: (h := health(base_url))[0] == 503 and h, "/health to report the dead engine")
    assert body["status"] == "unavailable" and body["dead_engines"] == [0]
    assert int(health_retry_after(base_url)) >= 1
    for path, request in [("/v1/chat/completions", CHAT), ("/v1/completions", SHORT), ("/v1/responses", RESPONSES)]:
        assert_refused(http.post(path, json=request), 503, "service_unavailable_error", "engine_unavailable")
    assert_refused(http.post("/v1/messages", json=MESSAGES), 503, "", "", anthropic_type="overloaded_error")
    assert_refused(http.post("/v1/programs"), 503, "service_unavailable_error", "engine_unavailable")
    assert metric(http, "autellix:calls_outstanding") == 0.0
    assert http.get("/metrics").status_code == 200  # still scrapeable
    assert json.loads(http.get("/v1/models").text)["data"][0]["id"] == MODEL
