"""DELETE of a program and a client that goes away abort the call in the engine, under load.

The server runs in this process (its own event loop in a thread) over an engine the test
controls: after a call's first token the test pauses the engine with its calls kept
(`pause_generation(mode="keep")`), so the call cannot finish before the test acts, whatever the
machine's speed. While paused, the engine's own count of running calls shows what an abort did.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from server_helpers import ThreadedServer

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.timeout(600),
]

MODEL = "tiny"
BUSY = 3  # other programs running while the test aborts one


class InProcessServer(ThreadedServer):
    """`autellix serve`'s app on a loop in a thread, and a handle on its engines."""

    async def _make_app(self) -> Any:
        from autellix.engine import EngineDriver, EngineOptions
        from autellix.server import ServerSettings, make_app

        options = EngineOptions(
            model=MODEL, max_num_seqs=8, max_model_len=1024, kv_cache_memory_bytes=64 << 20,
            engine_args={"enforce_eager": True},
        )
        self.driver = EngineDriver(options)
        await self.driver.start()
        return make_app(ServerSettings(), driver=self.driver)

    # What the test controls and observes in the engine.
    def pause(self) -> None:
        self.run(lambda: self.driver.client.pause_generation(mode="keep", clear_cache=False))

    def resume(self) -> None:
        self.run(self.driver.client.resume_generation)

    def engine_requests(self) -> int:
        """Unfinished requests in vLLM's scheduler, in the engine-core process."""

        async def unfinished() -> int:
            (snapshot,) = await self.driver.snapshots()
            return int(snapshot["engine_requests"])

        return int(self.run(unfinished))


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    with InProcessServer() as started:
        yield started


@pytest.fixture()
def http(server: InProcessServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        yield client


def _long_call(program: str) -> dict[str, Any]:
    return {"model": MODEL, "prompt": f"long call of {program}", "max_tokens": 900, "ignore_eos": True, "stream": True}


def _events(response: httpx.Response) -> Iterator[str]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield line[len("data: ") :]


class Streams:
    """Streaming calls held open: each has produced its first token when `open` returns."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=120)
        self.open: dict[str, tuple[Any, httpx.Response, Iterator[str]]] = {}

    def start(self, program: str) -> None:
        context = self.client.stream("POST", "/v1/completions", json=_long_call(program), headers={"X-Autellix-Program": program})
        response = context.__enter__()
        assert response.status_code == 200, response.read()
        events = _events(response)
        json.loads(next(events))  # the first token: the call runs in the engine
        self.open[program] = (context, response, events)

    def rest(self, program: str) -> list[dict[str, Any]]:
        context, _, events = self.open.pop(program)
        try:
            items = list(events)
        finally:
            context.__exit__(None, None, None)
        assert items[-1] == "[DONE]"
        return [json.loads(e) for e in items[:-1]]

    def hang_up(self, program: str) -> None:
        context, response, _ = self.open.pop(program)
        response.close()
        context.__exit__(None, None, None)

    def close(self) -> None:
        for program in list(self.open):
            self.hang_up(program)
        self.client.close()


def _wait_for_call_state(http: httpx.Client, program: str, state: str) -> dict[str, Any]:
    """The server records the end of a call when its handler unwinds, right after the hang-up
    reaches it; poll for that event (no speed is asserted)."""
    for _ in range(600):
        calls = http.get(f"/v1/programs/{program}").json()["calls"]
        if calls and calls[0]["state"] == state:
            return calls[0]
        time.sleep(0.1)
    raise AssertionError(f"the call of {program} never became {state!r}")


@pytest.mark.parametrize("how", ["delete", "disconnect"])
def test_an_abort_stops_the_call_in_the_engine_and_spares_the_others(server: InProcessServer, http: httpx.Client, how: str) -> None:
    streams = Streams(server.base_url)
    busy = [f"{how}-busy-{i}" for i in range(BUSY)]
    target = f"{how}-target"
    try:
        for program in [*busy, target]:
            streams.start(program)
        server.pause()
        try:
            assert server.engine_requests() == BUSY + 1  # all frozen mid-call: none can finish now
            if how == "delete":
                deleted = http.delete(f"/v1/programs/{target}").json()
                assert deleted["deleted"] is True and deleted["aborted_calls"] == 1
                chunks = streams.rest(target)
                assert chunks[-1]["choices"][0]["finish_reason"] == "abort"
            else:
                streams.hang_up(target)
                call = _wait_for_call_state(http, target, "aborted")
                assert call["completion_tokens"] < 900
            # The engine itself dropped the call (it could not have finished while paused).
            for _ in range(600):
                if server.engine_requests() == BUSY:
                    break
                time.sleep(0.1)
            assert server.engine_requests() == BUSY
        finally:
            server.resume()
        for program in busy:  # the others carry on to their full length
            chunks = streams.rest(program)
            assert chunks[-1]["choices"][0]["finish_reason"] == "length"
            info = http.get(f"/v1/programs/{program}").json()
            assert info["calls"][0]["state"] == "finished" and info["calls"][0]["completion_tokens"] == 900
    finally:
        streams.close()
        for program in [*busy, target]:
            http.delete(f"/v1/programs/{program}")
    assert server.engine_requests() == 0
