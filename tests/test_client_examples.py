"""The client SDK, the official openai SDK and the examples/ scripts against a real server
(tiny random-weight model: its text is gibberish, so these check structure and counts)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autellix.client import AsyncClient, BadRequestError, Client, NotFoundError
from server_helpers import running_server

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# The first test also waits for the engine to start, minutes on a busy box.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_server() as url:
        yield url


def run_example(name: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--base-url", url, *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


# -- the blocking client ---------------------------------------------------------------------


def test_health_and_models(server: str) -> None:
    client = Client(server)
    assert client.health()
    models = client.models()
    assert len(models) == 1 and client.default_model() == models[0]["id"]


def test_sync_program_lifecycle_tags_and_results(server: str) -> None:
    client = Client(server)
    with client.program(metadata={"test": "sync"}) as p:
        assert p.id.startswith("prog-")
        first = p.chat("Say hello.", max_tokens=6, ignore_eos=True)
        second = p.complete("Once upon a time", max_tokens=5, ignore_eos=True, parents=[first.call_id], thread_id=3)
        for r in (first, second):
            assert r.call_id.startswith("call-") and r.program_id == p.id
            assert r.usage is not None and r.usage.prompt_tokens > 0
            assert r.finish_reason == "length"
        assert first.usage.completion_tokens == 6 and second.usage.completion_tokens == 5
        info = p.info()
        calls = {c["id"]: c for c in info["calls"]}
        assert set(calls) == {first.call_id, second.call_id}
        assert calls[second.call_id]["thread_id"] == 3 and calls[second.call_id]["parent_ids"] == [first.call_id]
        assert info["active_calls"] == 0 and "attained_service" in info and "critical_path" in info
    assert p.ended is not None and p.ended["deleted"] is True
    with pytest.raises(NotFoundError) as err:
        client.program_info(p.id)
    assert err.value.code == "program_not_found"


def test_sync_program_ended_on_exception(server: str) -> None:
    client = Client(server)
    with pytest.raises(RuntimeError, match="agent crashed"), client.program() as p:
        p.chat("hi", max_tokens=2)
        raise RuntimeError("agent crashed")
    with pytest.raises(NotFoundError):
        client.program_info(p.id)


def test_sync_streaming_deltas_make_the_final_text(server: str) -> None:
    with Client(server).program() as p:
        stream = p.chat("Tell me a story.", max_tokens=12, ignore_eos=True, stream=True)
        deltas = list(stream)
        result = stream.result
        assert deltas and "".join(deltas) == result.text
        assert result.call_id.startswith("call-") and result.finish_reason == "length"
        assert result.usage is not None and result.usage.completion_tokens == 12
        completion = p.complete("abc", max_tokens=4, ignore_eos=True, stream=True).collect()
        assert completion.usage is not None and completion.usage.completion_tokens == 4
        assert {c["id"] for c in p.info()["calls"]} == {result.call_id, completion.call_id}


def _wait_for_state(p_info, call_id: str, state: str) -> dict:
    """Polls program info until the call reaches `state` (the abort lands asynchronously)."""
    for _ in range(600):
        calls = {c["id"]: c for c in p_info()["calls"]}
        if calls[call_id]["state"] == state:
            return calls[call_id]
        time.sleep(0.1)
    raise AssertionError(f"{call_id} never reached {state}: {calls[call_id]}")


def test_closing_a_stream_aborts_the_call(server: str) -> None:
    with Client(server).program() as p:
        stream = p.complete("Go on and on", max_tokens=900, ignore_eos=True, stream=True)
        first = next(iter(stream))
        assert first and stream.call_id.startswith("call-")
        stream.close()
        aborted = _wait_for_state(p.info, stream.call_id, "aborted")
        assert aborted["completion_tokens"] < 900
        assert p.info()["active_calls"] == 0

    async def main() -> str:
        async with AsyncClient(server) as client, client.program() as ap:
            s = await ap.complete("Keep going", max_tokens=900, ignore_eos=True, stream=True)
            async for _ in s:
                break
            await s.close()
            call_id = s.call_id
            for _ in range(600):
                calls = {c["id"]: c for c in (await ap.info())["calls"]}
                if calls[call_id]["state"] == "aborted":
                    return call_id
                await asyncio.sleep(0.1)
            raise AssertionError(f"{call_id} was not aborted: {calls[call_id]}")

    assert asyncio.run(main()).startswith("call-")


def test_api_error_carries_the_server_code(server: str) -> None:
    client = Client(server)
    with client.program() as p:
        with pytest.raises(BadRequestError) as err:
            p.chat("hi", max_tokens=5000)  # more than the 1024-token context
        assert err.value.status == 400 and err.value.code == "context_length_exceeded"
        assert "context length" in err.value.message
    with pytest.raises(NotFoundError) as missing:
        client.program_info("prog-0000doesnotexist")
    assert missing.value.status == 404 and missing.value.code == "program_not_found"


# -- the asyncio client ----------------------------------------------------------------------


def test_async_fan_out_and_join(server: str) -> None:
    async def main() -> tuple[str, dict]:
        async with AsyncClient(server) as client:
            async with client.program() as p:
                root = await p.chat("Propose ideas.", max_tokens=4)
                children = await asyncio.gather(
                    *(p.complete(f"Idea {i}:", max_tokens=4, parents=[root.call_id], thread_id=i) for i in (1, 2, 3))
                )
                join = await p.chat("Pick one.", max_tokens=4, parents=[c.call_id for c in children])
                stream = await p.chat("More.", max_tokens=5, ignore_eos=True, stream=True, parents=[join.call_id])
                text = "".join([d async for d in stream])
                assert text == stream.result.text and stream.result.usage.completion_tokens == 5
                info = await p.info()
            with pytest.raises(NotFoundError):
                await client.program_info(p.id)
            with pytest.raises(KeyError):
                async with client.program() as crashed:
                    await crashed.chat("x", max_tokens=2)
                    raise KeyError("boom")
            with pytest.raises(NotFoundError):
                await client.program_info(crashed.id)
            return root.call_id, {"info": info, "children": [c.call_id for c in children], "join": join.call_id}

    root_id, got = asyncio.run(main())
    calls = {c["id"]: c for c in got["info"]["calls"]}
    assert len(calls) == 6
    assert sorted(calls[c]["thread_id"] for c in got["children"]) == [1, 2, 3]
    assert all(calls[c]["parent_ids"] == [root_id] for c in got["children"])
    assert sorted(calls[got["join"]]["parent_ids"]) == sorted(got["children"])


# -- the official openai SDK -----------------------------------------------------------------


def test_openai_sdk_with_program_header(server: str) -> None:
    import openai

    client = Client(server)
    with client.program() as p:
        with openai.OpenAI(base_url=server + "/v1", api_key="unused", default_headers={"X-Autellix-Program": p.id}) as oa:
            model = oa.models.list().data[0].id
            chat = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
            assert chat.id.startswith("call-") and chat.usage is not None
            completion = oa.completions.create(
                model=model, prompt="abc", max_tokens=3, extra_body={"parent_ids": [chat.id], "thread_id": 2}
            )
            chunks = list(
                oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], max_tokens=3, stream=True)
            )
            assert chunks and chunks[0].id.startswith("call-")
        # extra_body alone, without the header, tags a call too
        with openai.OpenAI(base_url=server + "/v1", api_key="unused") as plain:
            tagged = plain.completions.create(model=model, prompt="z", max_tokens=2, extra_body={"program_id": p.id})
        calls = {c["id"]: c for c in p.info()["calls"]}
        assert {chat.id, completion.id, chunks[0].id, tagged.id} <= set(calls) and len(calls) == 4
        assert calls[completion.id]["parent_ids"] == [chat.id] and calls[completion.id]["thread_id"] == 2


# -- the examples ----------------------------------------------------------------------------


def test_example_react_agent(server: str) -> None:
    out = run_example("react_agent.py", server).stdout
    assert "Final answer: 123 (the calculator is defined in react_agent.py)" in out
    assert out.count("  Observation: ") == 3
    assert " 4 calls, attained service " in out
    assert "Program ended: aborted calls 0" in out


def test_example_react_agent_stops_after_max_steps(server: str) -> None:
    out = run_example("react_agent.py", server, "--max-steps", "2").stdout
    assert "Final answer: (none: stopped after 2 steps)" in out and " 2 calls, " in out


def test_example_tree_search(server: str) -> None:
    out = run_example("tree_search.py", server, "--width", "3", "--depth", "2", "--max-tokens", "6").stdout
    assert "Calls issued: 9" in out and " 9 calls, critical path " in out
    assert out.count("children in parallel") == 2 and out.count("├─") == 6


def test_example_chat_streams(server: str) -> None:
    out = run_example("chat.py", server, "--turns", "2", "--max-tokens", "6", "Hi there", "And then?").stdout
    assert "User: Hi there" in out and "User: And then?" in out
    assert out.count("[turn ") == 2 and out.count("Assistant: ") == 2
    assert "Chat done: 2 turns" in out and " 2 calls, attained service " in out


def test_example_load_generator(server: str) -> None:
    proc = run_example(
        "load_generator.py", server,
        "--workload", "mixed", "--programs", "6", "--rate", "2", "--max-calls", "8",
        "--token-scale", "0.1", "--max-output", "16", "--delay-scale", "0.2",
        "--progress-interval", "1", "--json",
    )
    report = json.loads(proc.stdout)
    assert report["programs"] == 6 and report["completed"] == 6
    assert report["failed"] == 0 and report["unfinished"] == 0 and report["call_errors"] == 0
    assert report["calls_ok"] == report["calls"] and report["errors"] == []
    assert report["length_mismatches"] == 0  # ignore_eos + max_tokens: exact output lengths
    assert report["latency_p50"] <= report["latency_p95"] <= report["latency_p99"]
    assert report["token_latency_mean"] > 0 and report["throughput_tokens_per_s"] > 0


def _active_programs(client: Client) -> float:
    for line in client.metrics().splitlines():
        if line.startswith("autellix_programs_active"):
            return float(line.split()[-1])
    raise AssertionError("no autellix_programs_active in /metrics")


def test_example_load_generator_time_limit_ends_its_programs(server: str) -> None:
    # bfcl seed 0: program p3 has 12 calls separated by 4.5 s of tool delays, so a 1.5 s limit
    # always cuts it off (a sleep, not a speed assumption); the cut programs must be ended.
    proc = run_example(
        "load_generator.py", server,
        "--workload", "bfcl", "--programs", "4", "--rate", "100", "--token-scale", "0.05",
        "--max-output", "4", "--duration", "1.5", "--json",
    )
    report = json.loads(proc.stdout)
    assert report["timed_out"] is True and report["unfinished"] >= 1
    assert report["completed"] + report["failed"] + report["unfinished"] == 4 and report["call_errors"] == 0
    client = Client(server)
    for _ in range(300):  # the DELETEs went out before the script exited; allow for bookkeeping
        if _active_programs(client) == 0:
            break
        time.sleep(0.1)
    assert _active_programs(client) == 0
