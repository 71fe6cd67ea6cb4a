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
LONG_STREAM = {"model": MODEL, "prompt": "long", "max_tokens": 900, "ignore_eos": True, "stream": True}
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


def outstanding(http: httpx.Client) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("autellix_calls_outstanding "):
            return float(line.split()[1])
    raise AssertionError("no autellix_calls_outstanding in /metrics")


def test_overload_is_429_with_retry_after(base_url: str, http: httpx.Client) -> None:
    with httpx.Client(base_url=base_url, timeout=120) as own:
        with own.stream("POST", "/v1/completions", json=LONG_STREAM) as running:
            lines = running.iter_lines()  # kept: dropping it would close the connection
            assert next(lines).startswith("data: ")
            for path, body in [("/v1/completions", SHORT), ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}]})]:
                refused = http.post(path, json=body)
                assert refused.status_code == 429, refused.text
                assert int(refused.headers["Retry-After"]) >= 1
                error = refused.json()["error"]
                assert error["type"] == "rate_limit_error" and error["code"] == "overloaded"
    wait_for(lambda: outstanding(http) == 0, "the closed stream's call to end")
    assert http.post("/v1/completions", json=SHORT).status_code == 200
    rejected = [line for line in http.get("/metrics").text.splitlines() if line.startswith('autellix_calls_total{status="rejected"}')]
    assert rejected and float(rejected[0].split()[1]) >= 2


def test_idle_programs_are_ended_after_the_ttl(http: httpx.Client) -> None:
    program = http.post("/v1/programs").json()["id"]
    assert http.post("/v1/completions", json=SHORT, headers={"X-Autellix-Program": program}).status_code == 200
    wait_for(lambda: http.get(f"/v1/programs/{program}").status_code == 404, "the idle program to be ended")
    late = http.post("/v1/completions", json=SHORT, headers={"X-Autellix-Program": program})
    assert late.status_code == 404 and late.json()["error"]["code"] == "program_not_found"


def test_vanilla_vllm_scheduler_behind_the_same_api(http: httpx.Client) -> None:
    program = http.post("/v1/programs").json()["id"]
    first = http.post("/v1/completions", json={**SHORT, "ignore_eos": True}, headers={"X-Autellix-Program": program}).json()
    second = http.post(
        "/v1/completions", json={**SHORT, "parent_ids": [first["id"]]}, headers={"X-Autellix-Program": program}
    )
    assert second.status_code == 200
    info = http.get(f"/v1/programs/{program}").json()
    assert [c["id"] for c in info["calls"]] == [first["id"], second.json()["id"]]
    # No Autellix scheduler in the engine: nothing to report from it.
    assert info["attained_service"] == 0.0 and info["critical_path"] == 0.0 and info["waiting_time"] == 0.0
    metrics = http.get("/metrics").text
    assert "autellix_queue_depth{" not in metrics
    assert 'autellix_running_calls{engine="0"} 0' in metrics
    http.delete(f"/v1/programs/{program}")


def test_a_dead_engine_makes_the_server_unavailable(base_url: str, http: httpx.Client) -> None:
    server = server_process(base_url)
    engine_processes = [pid for pid in group_members(server.pid) if pid != server.pid]
    assert engine_processes, "the engine core runs in a child process"
    for pid in engine_processes:
        os.kill(pid, signal.SIGKILL)
    status, body = wait_for(lambda: (h := health(base_url))[0] == 503 and h, "/health to report the dead engine")
    assert body["status"] == "unavailable" and body["dead_engines"] == [0]
    refused = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["type"] == "service_unavailable_error"
    assert http.get("/metrics").status_code == 200  # still scrapeable
    assert json.loads(http.get("/v1/models").text)["data"][0]["id"] == MODEL
