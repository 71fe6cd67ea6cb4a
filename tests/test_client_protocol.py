"""The client's own protocol code (retries, errors, SSE, program life cycle) against a small local
aiohttp stub that plays the server's part. No engine: these run in a fraction of a second. The
same client against the real server is covered in test_client_examples.py."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiohttp import web

from autellix.client import (
    APIConnectionError,
    APIError,
    AsyncClient,
    BadRequestError,
    Client,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
)
from autellix.client._common import RetryPolicy, normalize_base_url, sse_data


class StubServer:
    """Records requests; answers from a per-path script of (status, headers, body) entries."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.script: dict[str, list[tuple[int, dict[str, str], Any]]] = {}
        self.programs: set[str] = set()
        self.next_id = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, dict(request.headers), body))
        queued = self.script.get(request.path)
        if queued:
            status, headers, payload = queued.pop(0)
            return web.json_response(payload, status=status, headers=headers)
        if request.path == "/v1/models":
            return web.json_response({"object": "list", "data": [{"id": "stub-model", "object": "model"}]})
        if request.path == "/v1/programs" and request.method == "POST":
            self.next_id += 1
            pid = f"prog-{self.next_id:04x}"
            self.programs.add(pid)
            return web.json_response({"id": pid, "object": "program", "created": 1}, status=201)
        if request.path.startswith("/v1/programs/"):
            pid = request.path.rsplit("/", 1)[1]
            if pid not in self.programs:
                return _error(404, "program_not_found", f"no program {pid}")
            if request.method == "DELETE":
                self.programs.discard(pid)
                return web.json_response({"id": pid, "object": "program.deleted", "deleted": True, "aborted_calls": 0})
            return web.json_response({"id": pid, "object": "program", "calls": []})
        if request.path == "/v1/chat/completions":
            return await self.chat(request, body or {})
        return _error(404, "not_found", "no route")

    async def chat(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        self.next_id += 1
        call_id = f"call-{self.next_id:04x}"
        headers = {"X-Autellix-Call-Id": call_id, "X-Autellix-Program": str(body.get("program_id"))}
        words = ["alpha ", "beta ", "gamma"]
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": call_id,
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words)},
                                 "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                },
                headers=headers,
            )
        resp = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, w in enumerate(words):
            chunk = {"id": call_id, "model": body["model"],
                     "choices": [{"index": 0, "delta": {"content": w},
                                  "finish_reason": "length" if i == len(words) - 1 else None}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {"id": call_id, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
        await resp.write(f": keep-alive comment\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        await resp.write_eof()
        return resp


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}, status=status
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
    ready.wait(10)
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


def _rate_limited(seconds: str = "0.2") -> tuple[int, dict[str, str], Any]:
    return (429, {"Retry-After": seconds}, {"error": {"message": "busy", "type": "rate_limit", "param": None,
                                                     "code": "rate_limited"}})


def test_client_retry_code_honours_retry_after_sync(stub: tuple[str, StubServer]) -> None:
    url, server = stub
    server.script["/v1/programs"] = [_rate_limited("0.3"), _rate_limited("0.3")]
    client = Client(url)
    started = time.monotonic()
    p = client.start_program()
    waited = time.monotonic() - started
    assert p.id.startswith("prog-")
    assert [r[1] for r in server.requests].count("/v1/programs") == 3  # two refusals, then success
    assert waited >= 0.55  # it paused for both Retry-After values (a lower bound, not a time limit)
    p.end()


def test_client_retry_code_gives_up_after_max_retries(stub: tuple[str, StubServer]) -> None:
    url, server = stub
    server.script["/v1/programs"] = [_rate_limited("0"), _rate_limited("0"), _rate_limited("0")]
    with pytest.raises(RateLimitError) as info:
        Client(url, max_retries=2).start_program()
    assert info.value.status == 429 and info.value.code == "rate_limited" and info.value.retry_after == 0
    assert [r[1] for r in server.requests].count("/v1/programs") == 3


def test_client_retry_code_503_then_ok_async(stub: tuple[str, StubServer]) -> None:
    url, server = stub
    server.script["/v1/chat/completions"] = [
        (503, {"Retry-After": "0.1"}, {"error": {"message": "draining", "type": "unavailable", "param": None,
                                                 "code": "engine_unavailable"}})
    ]

    async def main() -> None:
        async with AsyncClient(url) as client:
            async with client.program() as p:
                result = await p.chat("hi", max_tokens=3)
                assert result.call_id.startswith("call-") and result.text == "alpha beta gamma"

    asyncio.run(main())
    assert [r[1] for r in server.requests].count("/v1/chat/completions") == 2


def test_client_no_retry_on_other_errors(stub: tuple[str, StubServer]) -> None:
    url, server = stub
    server.script["/v1/chat/completions"] = [(400, {}, {"error": {"message": "max_tokens must be >= 1",
                                                                 "type": "invalid_request_error",
                                                                 "param": "max_tokens", "code": "invalid_value"}})]
    with Client(url).program() as p, pytest.raises(BadRequestError) as info:
        p.chat("hi", max_tokens=0)
    assert (info.value.status, info.value.code, info.value.param) == (400, "invalid_value", "max_tokens")
    assert "max_tokens must be >= 1" in str(info.value)
    assert [r[1] for r in server.requests].count("/v1/chat/completions") == 1


def test_retry_policy_waits() -> None:
    policy = RetryPolicy(max_retries=2, max_wait=5.0, backoff=0.5)
    assert policy.wait(0, 2.0) == 2.0 and policy.wait(0, 100.0) == 5.0
    assert policy.wait(0, None) == 0.5 and policy.wait(1, None) == 1.0
    assert policy.should_retry(429, 1) and not policy.should_retry(429, 2) and not policy.should_retry(500, 0)


def test_request_tags_and_results(stub: tuple[str, StubServer]) -> None:
    url, server = stub
    with Client(url, api_key="sekrit") as client, client.program(metadata={"task": "t"}) as p:
        result = p.chat("hi", max_tokens=3, thread_id=2, parents=["call-1", "call-2"], temperature=0.0)
        assert result.call_id.startswith("call-") and result.finish_reason == "length"
        assert result.usage is not None and result.usage.completion_tokens == 3
        assert result.program_id == p.id and result.model == "stub-model"
    method, path, headers, body = next(r for r in server.requests if r[1] == "/v1/chat/completions")
    assert headers["Authorization"] == "Bearer sekrit" and headers["X-Autellix-Program"] == p.id
    assert body["program_id"] == p.id and body["thread_id"] == 2 and body["parent_ids"] == ["call-1", "call-2"]
    assert body["messages"] == [{"role": "user", "content": "hi"}] and body["temperature"] == 0.0
    create = next(r for r in server.requests if r[1] == "/v1/programs")
    assert create[3] == {"metadata": {"task": "t"}}
    assert ("DELETE", f"/v1/programs/{p.id}") in [(r[0], r[1]) for r in server.requests]


def test_stream_sync_and_async(stub: tuple[str, StubServer]) -> None:
    url, _ = stub
    with Client(url).program() as p:
        stream = p.chat("hi", stream=True)
        deltas = list(stream)
        assert deltas == ["alpha ", "beta ", "gamma"]
        assert stream.result.text == "".join(deltas) and stream.result.usage is not None
        assert stream.result.finish_reason == "length" and stream.call_id.startswith("call-")
        assert p.chat("again", stream=True).result.text == "alpha beta gamma"  # result drains

    async def main() -> None:
        async with AsyncClient(url) as client, client.program() as ap:
            s = await ap.chat("hi", stream=True)
            got = [d async for d in s]
            assert "".join(got) == s.result.text == "alpha beta gamma"
            assert (await (await ap.chat("x", stream=True)).collect()).usage is not None

    asyncio.run(main())


def test_program_ended_on_exception(stub: tuple[str, StubServer]) -> None:
    url, server = stub
    client = Client(url)
    with pytest.raises(ZeroDivisionError), client.program() as p:
        1 / 0
    assert not server.programs
    with pytest.raises(NotFoundError) as info:
        client.program_info(p.id)
    assert info.value.code == "program_not_found"
    assert p.end() is p.ended  # idempotent


def test_errors_and_connection_failures() -> None:
    with pytest.raises(APIConnectionError):
        Client("http://127.0.0.1:9", timeout=2).health()  # port 9 (discard): nothing listens
    with pytest.raises(ValueError):
        Client("ftp://x")
    assert normalize_base_url("http://h:1/v1/") == "http://h:1"
    assert sse_data(b"data: [DONE]\n") == "[DONE]" and sse_data(": ping") is None
    err = APIError(500, None, "boom")
    assert err.status == 500 and "boom" in str(err)
    assert issubclass(ServiceUnavailableError, APIError)
