"""Every engine replica down: generation calls get 503 with an OpenAI error and Retry-After,
/health says not ready, nothing hangs, and calls go through again once the replicas are back.

No engine runs: the server is the real app (identity, programs, vLLM's serving layer, router,
balancer) over stand-in replicas (`autellix.engine.stand_in`), in this process on a loop in a
thread. "local" replicas die for good (`errored`, as an AsyncLLM whose engine core died);
"ray" replicas are unavailable (as Ray replicas being restarted), routed by the Ray path's
`HealthAwareBalancer`. The test switches them off itself, also at chosen points inside a call
(while vLLM renders it, when the router routes it), so no timing is involved.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from server_helpers import ThreadedServer

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.timeout(300),
]

MODEL = "tiny"
RETRY_AFTER = 3
REPLICAS = 2
COMPLETION = {"model": MODEL, "prompt": "hello", "max_tokens": 4}
CHAT = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "hello"}],
    "max_tokens": 4,
}


class StandInServer(ThreadedServer):
    """The app over stand-in replicas, served on a loop in a thread."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def on_loop(self, work: Callable[[], Any]) -> Any:
        """Run `work` on the server's loop (between the server's own steps) and return its result."""

        async def call() -> Any:
            return work()

        return self.run(call, timeout=120)

    async def _make_app(self) -> Any:
        from autellix.engine import EngineOptions
        from autellix.engine.stand_in import StandInDriver
        from autellix.server import ServerSettings, make_app

        options = EngineOptions(
            model=MODEL,
            engines=REPLICAS,
            max_model_len=1024,
            kv_cache_memory_bytes=64 << 20,
        )
        self.driver = StandInDriver(options, route_around_down=self.kind == "ray")
        await self.driver.start()
        return make_app(ServerSettings(retry_after=RETRY_AFTER), driver=self.driver)

    # -- what the test switches and looks at ----------------------------------------------------

    def set_down(self) -> None:
        """Every replica down (called on the server's loop)."""
        for replica in self.driver.replicas:
            if self.kind == "local":
                replica.dead = True
            else:
                replica.available = False

    def set_up(self) -> None:
        for replica in self.driver.replicas:
            replica.dead = False
            replica.available = True

    def idle(self) -> dict[str, Any]:
        """What a call left behind: outstanding calls, balancer loads, calls running in replicas."""
        from autellix.server.state import CALLS

        return self.on_loop(
            lambda: {
                "outstanding": self.app[CALLS].outstanding,
                "loads": list(self.driver.loads()),
                "running": [r.running for r in self.driver.replicas],
            }
        )


@pytest.fixture(scope="module", params=["local", "ray"])
def server(request: pytest.FixtureRequest) -> Iterator[StandInServer]:
    with StandInServer(request.param) as started:
        yield started


@pytest.fixture()
def http(server: StandInServer) -> Iterator[httpx.Client]:
    server.on_loop(server.set_up)
    # The timeout only bounds a server that would hang; nothing waits on it.
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        yield client
    server.on_loop(server.set_up)


NOTHING_LEFT = {"outstanding": 0, "loads": [0] * REPLICAS, "running": [0] * REPLICAS}


def _assert_unavailable(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(RETRY_AFTER)
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (
        error["type"] == "service_unavailable_error"
        and error["code"] == "engine_unavailable"
    )
    assert error["message"]
    return error


def _events(response: httpx.Response) -> list[Any]:
    data = [
        line[len("data: ") :]
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


ROUTES = [
    pytest.param("/v1/completions", COMPLETION, False, id="completions"),
    pytest.param("/v1/completions", COMPLETION, True, id="completions-stream"),
    pytest.param("/v1/chat/completions", CHAT, False, id="chat"),
    pytest.param("/v1/chat/completions", CHAT, True, id="chat-stream"),
]


@pytest.mark.parametrize(("path", "body", "stream"), ROUTES)
def test_every_replica_down_answers_503_and_health_says_not_ready(
    server: StandInServer,
    http: httpx.Client,
    path: str,
    body: dict[str, Any],
    stream: bool,
) -> None:
    program = f"down-{server.kind}-{path.rsplit('/', 1)[-1]}-{stream}"
    headers = {"X-Autellix-Program": program}
    server.on_loop(server.set_down)

    _assert_unavailable(
        http.post(path, json={**body, "stream": stream}, headers=headers)
    )
    health = http.get("/health")
    assert health.status_code == 503 and health.headers["Retry-After"] == str(
        RETRY_AFTER
    )
    down = health.json()
    assert down["status"] == "unavailable"
    if server.kind == "local":
        assert down["dead_engines"] == list(range(REPLICAS))
    else:
        assert down["dead_engines"] == [] and down["unavailable_engines"] == list(
            range(REPLICAS)
        )
    assert server.idle() == NOTHING_LEFT
    # The refused call started nothing: not even its program.
    assert http.get(f"/v1/programs/{program}").status_code == 404

    server.on_loop(server.set_up)  # back: the same call goes through
    assert http.get("/health").json() == {"status": "ok"}
    response = http.post(path, json={**body, "stream": stream}, headers=headers)
    assert response.status_code == 200, response.text
    if stream:
        assert _events(response)[-1]["choices"][0]["finish_reason"] == "length"
    else:
        assert response.json()["choices"][0]["finish_reason"] == "length"
    calls = http.get(f"/v1/programs/{program}").json()["calls"]
    assert [c["state"] for c in calls] == ["finished"]
    assert server.idle() == NOTHING_LEFT
    http.delete(f"/v1/programs/{program}")


def test_every_replica_down_answers_messages_with_anthropic_error(
    server: StandInServer, http: httpx.Client
) -> None:
    server.on_loop(server.set_down)
    body = {
        "model": MODEL,
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "hello"}],
    }
    response = http.post("/v1/messages", json=body)
    assert response.status_code == 503 and response.headers["Retry-After"] == str(
        RETRY_AFTER
    )
    assert (
        response.json()["type"] == "error"
        and response.json()["error"]["type"] == "overloaded_error"
    )
    assert server.idle() == NOTHING_LEFT


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_replicas_going_down_while_vllm_renders_the_call_answer_503(
    server: StandInServer, http: httpx.Client, stream: bool
) -> None:
    """Admitted while the replicas were up; they all go down before the call reaches one."""
    from autellix.server.state import SERVING

    completion = server.app[SERVING].completion
    render = completion.render_completion_request

    async def render_then_go_down(request: Any) -> Any:
        rendered = await render(request)
        server.set_down()
        return rendered

    server.on_loop(
        lambda: setattr(completion, "render_completion_request", render_then_go_down)
    )
    try:
        response = http.post("/v1/completions", json={**COMPLETION, "stream": stream})
    finally:
        server.on_loop(lambda: delattr(completion, "render_completion_request"))
    _assert_unavailable(response)
    assert http.get("/health").status_code == 503
    assert server.idle() == NOTHING_LEFT


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_replicas_going_down_as_the_call_is_routed_fail_it_as_retryable(
    server: StandInServer, http: httpx.Client, stream: bool
) -> None:
    """The last moment: the replicas go down as the router asks the balancer for one. A plain
    call still gets a 503; a stream has sent its 200 already, so the error comes as its one event
    (vLLM's shape) and the stream ends: 503 when the balancer has no replica to give (Ray), vLLM's
    own 500 for a dead engine (local: the balancer routes, the replica raises EngineDeadError)."""
    router = server.driver.client
    balancer = router.balancer

    class GoDownOnRoute:
        """The router's balancer, with every replica going down as it is asked for one."""

        def route(self, program_id: int, prompt_tokens: int) -> int:
            server.set_down()
            return int(balancer.route(program_id, prompt_tokens))

        def __getattr__(self, name: str) -> Any:
            return getattr(balancer, name)

    server.on_loop(lambda: setattr(router, "balancer", GoDownOnRoute()))
    try:
        response = http.post("/v1/completions", json={**COMPLETION, "stream": stream})
    finally:
        server.on_loop(lambda: setattr(router, "balancer", balancer))
    expected_stream_code = 500 if server.kind == "local" else 503
    if not stream:
        _assert_unavailable(response)
    else:
        assert response.status_code == 200
        (event,) = _events(response)
        assert event["error"]["code"] == expected_stream_code
    assert server.idle() == NOTHING_LEFT
