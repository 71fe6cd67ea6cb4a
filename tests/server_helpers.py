"""A real `autellix serve` for tests: a subprocess on a free loopback port, in its own process
group, stopped with every engine process it started.

    with running_server(extra_args=["--api-key", "k"]) as base_url:   # "http://127.0.0.1:PORT"
        ...

Defaults fit any CI box: the tiny model, a 64 MiB KV cache, 1,024-token context, 8 seqs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

# The engine start (vLLM plus a child engine-core process) takes ~20 s on an idle 2-core box and
# several minutes on a busy one; this only bounds a server that never comes up.
STARTUP_TIMEOUT = 600.0
STOP_TIMEOUT = 60.0
# base URL -> the server process, for tests that need to reach under the HTTP surface.
_PROCESSES: dict[str, subprocess.Popen] = {}
BASE_ARGS = ("--model", "tiny", "--kv-cache-memory", "64MiB", "--max-model-len", "1024", "--max-num-seqs", "8")


def server_process(base_url: str) -> subprocess.Popen:
    """The `autellix serve` process behind a URL `running_server` yielded (it leads its group)."""
    return _PROCESSES[base_url]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def health(base_url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _log_tail(log_path: Path, lines: int = 40) -> str:
    """The log's error lines (the root cause of a failed engine start is far from the end),
    then its last lines, and where the whole log is kept."""
    text = log_path.read_text(errors="replace").splitlines()
    errors = [line for line in text if "Error" in line or "ERROR" in line][:20]
    return "\n".join([*errors, "...", *text[-lines:], f"(full log: {log_path})"])


def _wait_healthy(base_url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"autellix serve exited with {process.returncode}:\n{_log_tail(log_path)}")
        with contextlib.suppress(OSError):
            if health(base_url)[0] == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"autellix serve did not become healthy in {STARTUP_TIMEOUT:.0f} s:\n{_log_tail(log_path)}")


def stop_server(process: subprocess.Popen) -> list[int]:
    """SIGTERM the server's process group, then SIGKILL what is left. Returns the processes that
    outlived the server's own exit by the grace period (orphans), after killing them."""
    pgid = process.pid  # start_new_session=True: the server leads its own group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT)
    deadline = time.monotonic() + 30
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    orphans = group_members(pgid)
    for pid in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return orphans


@contextlib.contextmanager
def running_server(tmp_path_factory: Any = None, extra_args: Sequence[str] = ()) -> Iterator[str]:
    """Start `autellix serve` with the test defaults plus `extra_args`; yield its base URL
    (no trailing slash; the OpenAI API is under /v1). On exit, stop it and assert that no engine
    process outlived it.

    `tmp_path_factory` (pytest's, optional) puts the server log under pytest's temp folder, kept
    for inspection; without it the log goes to the system temp folder and is deleted after a
    clean run. `running_server(["--api-key", "k"])` also works (extra args first)."""
    if isinstance(tmp_path_factory, (list, tuple)):
        tmp_path_factory, extra_args = None, tmp_path_factory
    log_dir = tmp_path_factory.mktemp("autellix-serve") if tmp_path_factory is not None else None
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "autellix.cli", "serve", *BASE_ARGS, "--port", str(port), *extra_args]
    log_file = tempfile.NamedTemporaryFile(
        "w", prefix=f"autellix-serve-{port}-", suffix=".log", dir=log_dir, delete=False
    )
    log_path = Path(log_file.name)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )
    _PROCESSES[base_url] = process
    try:
        _wait_healthy(base_url, process, log_path)
        yield base_url
    finally:
        del _PROCESSES[base_url]
        orphans = stop_server(process)
    assert not orphans, f"engine processes {orphans} outlived the server:\n{_log_tail(log_path)}"
    if log_dir is None:
        log_path.unlink(missing_ok=True)


class ThreadedServer:
    """The Autellix app over a driver, served on its own event loop in a thread, so a test can
    act on the server's objects between its steps (`run`). Subclasses build the driver and the
    app (`_make_app`)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.base_url = ""
        self.driver: Any = None
        self.app: Any = None
        self._runner: Any = None

    def run(self, work: Callable[[], Coroutine[Any, Any, Any]], timeout: float = 300) -> Any:
        return asyncio.run_coroutine_threadsafe(work(), self.loop).result(timeout)

    async def _make_app(self) -> Any:
        raise NotImplementedError

    async def _start(self) -> None:
        from aiohttp import web

        self.app = await self._make_app()
        self._runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.base_url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self.driver.shutdown()

    def __enter__(self) -> Any:
        self.thread.start()
        self.run(self._start)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._stop, timeout=120)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            self.loop.close()
