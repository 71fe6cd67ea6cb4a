"""The client's own code (program life cycle, tags, refusal retries, errors) against a small
local aiohttp stub that plays the server's part. No engine: these run in a fraction of a second.
The same client against the real server is covered in test_client_examples.py."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
import pytest
from aiohttp import web

import autellix
from autellix.client import AsyncClient, Client, _base
from autellix.contract import CALL_HEADER, CALLS_LEFT_HEADER, PARENTS_HEADER, PROGRAM_HEADER, THREAD_HEADER

MODEL = "stub-model"
HI = [{"role": "user", "content": "hi"}]


class StubServer:
    """Records requests; answers from a per-path script of (status, headers, body) entries."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any, Any]] = []  # headers: case-insensitive
        self.script: dict[str, list[tuple[int, dict[str, str], Any]]] = {}
        self.raw_paths: list[str] = []  # as sent, percent-encoding and all
        self.programs: set[str] = set()
        self.next_id = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def paths(self, path: str) -> int:
        return [r[1] for r in self.requests].count(path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, request.headers.copy(), body))
        self.raw_paths.append(request.raw_path)
        queued = self.script.get(request.path)
        if queued:
            status, headers, payload = queued.pop(0)
            return web.json_response(payload, status=status, headers=headers)
        if request.path == "/v1/programs" and request.method == "POST":
            self.next_id += 1
            pid = f"prog-{self.next_id:04x}"
            self.programs.add(pid)
            return web.json_response({"id": pid, "object": "program", "created": 1}, status=201)
        if request.path.startswith("/v1/programs/"):
            pid = request.match_info["tail"].split("/", 2)[2]
            if pid not in self.programs:
                return _error(404, "program_not_found", f"no program {pid}", param="program_id")
            if request.method == "DELETE":
                self.programs.discard(pid)
                return web.json_response({"id": pid, "object": "program.deleted", "deleted": True, "aborted_calls": 0})
            return web.json_response({"id": pid, "object": "program", "calls": []})
        if request.path == "/v1/chat/completions":
            program = request.headers.get(PROGRAM_HEADER)
            if program is not None:
                self.programs.add(program)  # a client-chosen id starts its program on first use
            return await self.chat(request, body or {})
        return _error(404, "not_found", "no route")

    async def chat(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        self.next_id += 1
        call_id = f"chatcmpl-{self.next_id:04x}"
        headers = {CALL_HEADER: call_id}
        words = ["alpha ", "beta ", "gamma"]
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": call_id, "object": "chat.completion", "created": 1, "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words)},
                                 "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                },
                headers=headers,
            )
        resp = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, w in enumerate(words):
            chunk = {"id": call_id, "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                     "choices": [{"index": 0, "delta": {"content": w},
                                  "finish_reason": "length" if i == len(words) - 1 else None}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _error(status: int, code: str, message: str, param: str | None = None) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}, status=status
    )


@contextmanager
def stub_server() -> Iterator[tuple[str, StubServer]]:
    """Runs the stub in its own thread and loop, so the blocking client can call it too."""
    stub = StubServer()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(stub.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = runner.addresses[0][1]

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"http://127.0.0.1:{holder['port']}", stub
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def stub() -> Iterator[tuple[str, StubServer]]:
    with stub_server() as s:
        yield s


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The refusal pauses the clients take, recorded instead of slept."""
    taken: list[float] = []

    async def async_sleep(seconds: float) -> None:
        taken.append(seconds)

    monkeypatch.setattr(_base, "sleep", taken.append)
    monkeypatch.setattr(_base, "async_sleep", async_sleep)
    return taken


def _refusal(status: int = 429, retry_after: str | None = "3") -> tuple[int, dict[str, str], Any]:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    code = "overloaded" if status == 429 else "engine_unavailable"
    return (status, headers, {"error": {"message": "busy", "type": "rate_limit", "param": None, "code": code}})


# -- programs and tags -----------------------------------------------------------------------


def test_program_lifecycle_and_tags(stub: tuple[str, StubServer]) -> None:
    url, server = stub
    with Client(url + "/v1/", api_key="sekrit") as client, client.program(metadata={"task": "t"}) as p:
        assert p.created is not None and p.created["id"] == p.id and p.id.startswith("prog-")
        first = p.openai.chat.completions.create(model=MODEL, messages=HI)
        raw = p.openai_for(thread=2, parents=[first, "chatcmpl-x"], calls_left=2).chat.completions.with_raw_response.create(
            model=MODEL, messages=HI, max_tokens=3, temperature=0.0
        )
        second = raw.parse()
        assert raw.headers[CALL_HEADER] == second.id != first.id
        assert p.info() == {"id": p.id, "object": "program", "calls": []}
    create = next(r for r in server.requests if r[1] == "/v1/programs")
    assert create[0] == "POST" and create[3] == {"metadata": {"task": "t"}}
    calls = [r for r in server.requests if r[1] == "/v1/chat/completions"]
    assert [c[2][PROGRAM_HEADER] for c in calls] == [p.id, p.id]
    assert THREAD_HEADER not in calls[0][2] and PARENTS_HEADER not in calls[0][2]
    assert calls[1][2][THREAD_HEADER] == "2" and calls[1][2][PARENTS_HEADER] == f"{first.id},chatcmpl-x"
    assert CALLS_LEFT_HEADER not in calls[0][2] and calls[1][2][CALLS_LEFT_HEADER] == "2"
    assert all(c[2]["Authorization"] == "Bearer sekrit" for c in calls)
    assert calls[1][3] == {"model": MODEL, "messages": HI, "max_tokens": 3, "temperature": 0.0}
    assert ("DELETE", f"/v1/programs/{p.id}") in [(r[0], r[1]) for r in server.requests]
    assert p.ended is not None and p.ended["deleted"] is True and not server.programs
    assert p.end() is p.ended and server.paths(f"/v1/programs/{p.id}") == 2  # GET, DELETE: ends once


def test_client_chosen_id_sends_no_post(stub: tuple[str, StubServer]) -> None:
    url, server = stub
    with Client(url) as client:
        with client.program("run-42") as p:
            assert p.id == "run-42" and p.chosen_id
            p.openai.chat.completions.create(model=MODEL, messages=HI)
        assert server.paths("/v1/programs") == 0
        assert [(r[0], r[1]) for r in server.requests] == [
            ("POST", "/v1/chat/completions"), ("DELETE", "/v1/programs/run-42")
        ]
        assert p.ended is not None and p.ended["deleted"] is True
        # one the server never saw (no call made): end() answers None, it raises nothing
        unused = client.program("never used/1")
        assert unused.end() is None and server.raw_paths[-1] == "/v1/programs/never%20used%2F1"


def test_program_ended_on_exception_and_unknown_program(stub: tuple[str, StubServer]) -> None:
    url, server = stub
    with Client(url) as client:
        with pytest.raises(ZeroDivisionError), client.program() as p:
            1 / 0
        assert not server.programs and p.ended is not None
        with pytest.raises(openai.NotFoundError) as info:
            client.program_info(p.id)
        assert info.value.status_code == 404 and info.value.code == "program_not_found"
        assert info.value.param == "program_id"
        with pytest.raises(RuntimeError, match="not started"):
            client.program().id
        with pytest.raises(ValueError):
            client.program("")
        with pytest.raises(ValueError):
            client.program("p").headers(thread=-1)
        with pytest.raises(ValueError):
            client.program("p").headers(parents=["a,b"])


def test_async_program_lifecycle(stub: tuple[str, StubServer]) -> None:
    url, server = stub

    async def main() -> tuple[str, str]:
        async with AsyncClient(url) as client:
            async with client.program() as p:
                assert isinstance(p.openai, openai.AsyncOpenAI)
                r = await p.openai.chat.completions.create(model=MODEL, messages=HI)
                stream = await p.openai_for(thread=1, parents=[r.id]).chat.completions.create(
                    model=MODEL, messages=HI, stream=True
                )
                text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
                assert text == "alpha beta gamma"
                assert (await p.info())["id"] == p.id
            with pytest.raises(KeyError):
                async with client.program("mine") as crashed:
                    await crashed.openai.chat.completions.create(model=MODEL, messages=HI)
                    raise KeyError("boom")
            assert crashed.ended is not None
            return p.id, r.id

    pid, first = asyncio.run(main())
    calls = [r for r in server.requests if r[1] == "/v1/chat/completions"]
    assert calls[1][2][PARENTS_HEADER] == first and calls[1][2][THREAD_HEADER] == "1"
    assert calls[2][2][PROGRAM_HEADER] == "mine" and server.paths("/v1/programs") == 1
    assert not server.programs  # both ended


# -- retries ---------------------------------------------------------------------------------


def test_refusals_with_retry_after_are_resent(stub: tuple[str, StubServer], pauses: list[float]) -> None:
    url, server = stub
    server.script["/v1/programs"] = [_refusal(429, "3"), _refusal(503, "0.5")]
    server.script["/v1/chat/completions"] = [_refusal(429, "1")]
    with Client(url) as client, client.program() as p:
        r = p.openai.chat.completions.create(model=MODEL, messages=HI)
        assert r.choices[0].message.content == "alpha beta gamma"
    assert server.paths("/v1/programs") == 3 and server.paths("/v1/chat/completions") == 2
    assert pauses == [3.0, 0.5, 1.0]  # the server's Retry-After, each time


def test_refusal_retries_give_up(stub: tuple[str, StubServer], pauses: list[float]) -> None:
    url, server = stub
    server.script["/v1/chat/completions"] = [_refusal(429, "0")] * 3
    with Client(url) as client, pytest.raises(openai.RateLimitError) as info:
        client.openai.chat.completions.create(model=MODEL, messages=HI)
    assert info.value.status_code == 429 and info.value.code == "overloaded"
    assert server.paths("/v1/chat/completions") == 3 and pauses == [0.0, 0.0]
    # a pause longer than max_retry_wait, or none at all, is handed on at once
    server.script["/v1/chat/completions"] = [_refusal(503, "120"), _refusal(429, None)]
    with Client(url, max_retry_wait=30) as client:
        with pytest.raises(openai.InternalServerError) as unavailable:
            client.openai.chat.completions.create(model=MODEL, messages=HI)
        assert unavailable.value.status_code == 503
        with pytest.raises(openai.RateLimitError):
            client.openai.chat.completions.create(model=MODEL, messages=HI)
    assert server.paths("/v1/chat/completions") == 5 and pauses == [0.0, 0.0]
    # refusal_retries=0 turns it off
    server.script["/v1/chat/completions"] = [_refusal(429, "1")]
    with Client(url, refusal_retries=0) as client, pytest.raises(openai.RateLimitError):
        client.openai.chat.completions.create(model=MODEL, messages=HI)
    assert server.paths("/v1/chat/completions") == 6


def test_no_retry_on_errors_that_may_have_run(stub: tuple[str, StubServer], pauses: list[float]) -> None:
    """500s and other errors go to the caller after one request: the call may have run."""
    url, server = stub
    server.script["/v1/chat/completions"] = [
        (500, {"Retry-After": "1"}, {"error": {"message": "engine crashed", "type": "server_error", "param": None,
                                               "code": "internal_error"}}),
        (400, {}, {"error": {"message": "max_tokens must be >= 1", "type": "invalid_request_error",
                             "param": "max_tokens", "code": "invalid_value"}}),
    ]
    with Client(url) as client:
        with pytest.raises(openai.InternalServerError) as crashed:
            client.openai.chat.completions.create(model=MODEL, messages=HI)
        assert crashed.value.status_code == 500
        with pytest.raises(openai.BadRequestError) as bad:
            client.openai.chat.completions.create(model=MODEL, messages=HI, max_tokens=0)
    assert (bad.value.status_code, bad.value.code, bad.value.param) == (400, "invalid_value", "max_tokens")
    assert "max_tokens must be >= 1" in bad.value.message
    assert server.paths("/v1/chat/completions") == 2 and pauses == []


def test_async_refusal_retry_and_stream(stub: tuple[str, StubServer], pauses: list[float]) -> None:
    url, server = stub
    server.script["/v1/chat/completions"] = [_refusal(503, "2")]

    async def main() -> str:
        async with AsyncClient(url) as client, client.program("a") as p:
            stream = await p.openai.chat.completions.create(model=MODEL, messages=HI, stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(main()) == "alpha beta gamma"
    assert server.paths("/v1/chat/completions") == 2 and pauses == [2.0]


@contextmanager
def dropping_server() -> Iterator[tuple[str, list[int]]]:
    """Accepts connections, reads the request, closes without answering; counts connections."""
    accepted: list[int] = []
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            with conn:
                conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(10)
        listener.close()


def test_a_lost_connection_is_not_resent(pauses: list[float]) -> None:
    with dropping_server() as (url, accepted):
        with Client(url) as client, pytest.raises(openai.APIConnectionError):
            client.openai.chat.completions.create(model=MODEL, messages=HI)
        assert len(accepted) == 1  # the openai SDK's default (max_retries=2) would have sent it 3 times
        with Client(url, max_retries=1) as client, pytest.raises(openai.APIConnectionError):
            client.openai.chat.completions.create(model=MODEL, messages=HI)
        assert len(accepted) == 3  # the SDK's own retries, when asked for
    assert pauses == []


def test_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTELLIX_BASE_URL", "http://h:1/v1/")
    monkeypatch.setenv("AUTELLIX_API_KEY", "from-env")
    client = autellix.Client()
    assert client.base_url == "http://h:1" and str(client.openai.base_url) == "http://h:1/v1/"
    assert client.openai.api_key == "from-env" and client.openai.max_retries == 0
    monkeypatch.delenv("AUTELLIX_API_KEY")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real")
    assert autellix.AsyncClient("http://h:2").openai.api_key == "EMPTY"  # never OpenAI's key
    with pytest.raises(ValueError):
        autellix.Client("ftp://x")
    program = autellix.Client("http://h:1", default_headers={"X-Extra": "1"}).program("p")
    assert program.headers(thread=3, parents=["a", "b", "a"]) == {
        PROGRAM_HEADER: "p", THREAD_HEADER: "3", PARENTS_HEADER: "a,b"
    }
    assert program.headers(calls_left=5) == {PROGRAM_HEADER: "p", CALLS_LEFT_HEADER: "5"}
    for bad in (0, -1, True, 2.0, "5", 1 << 32):
        with pytest.raises(ValueError, match="calls_left"):
            program.headers(calls_left=bad)
    tagged = program.openai_for(thread=3)
    assert tagged.default_headers["X-Extra"] == "1" and tagged.default_headers[THREAD_HEADER] == "3"
    assert program.openai.default_headers[PROGRAM_HEADER] == "p" and THREAD_HEADER not in program.openai.default_headers
