"""autellix.Client / AsyncClient, the plain openai SDK and the examples/ scripts against a real
server (tiny random-weight model: its text is gibberish, so these check structure and counts)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import autellix
from autellix.contract import CALL_HEADER, PROGRAM_HEADER, SESSION_HEADER
from server_helpers import running_server

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
IGNORE_EOS = {"ignore_eos": True}  # vLLM's: exactly max_tokens tokens

# The first test also waits for the engine to start, minutes on a busy box.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_server() as url:
        yield url


@pytest.fixture(scope="module")
def tool_server() -> Iterator[str]:
    """A server with vLLM's tool-call parsing on (what tool_choice and tool_calls need)."""
    with running_server(["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]) as url:
        yield url


@pytest.fixture(scope="module")
def model(server: str) -> str:
    with autellix.Client(server) as client:
        return client.openai.models.list().data[0].id


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


def calls_of(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in info["calls"]}


# -- the blocking client ---------------------------------------------------------------------


def test_sync_program_lifecycle_tags_and_results(server: str, model: str) -> None:
    with autellix.Client(server) as client:
        with client.program(metadata={"test": "sync"}) as p:
            assert p.created is not None and p.created["id"] == p.id
            raw = p.openai.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=6, extra_body=IGNORE_EOS
            )
            first, first_call = raw.parse(), raw.headers[CALL_HEADER]
            raw = p.openai_for(thread=3, parents=[first], calls_left=4).completions.with_raw_response.create(
                model=model, prompt="Once upon a time", max_tokens=5, extra_body=IGNORE_EOS
            )
            second, second_call = raw.parse(), raw.headers[CALL_HEADER]
            assert first.choices[0].finish_reason == second.choices[0].finish_reason == "length"
            assert first.usage is not None and first.usage.completion_tokens == 6 and first.usage.prompt_tokens > 0
            assert second.usage is not None and second.usage.completion_tokens == 5
            assert first_call and second_call and first_call != second_call
            info = p.info()
            calls = calls_of(info)
            assert set(calls) == {first_call, second_call}
            assert calls[second_call]["thread_id"] == 3 and calls[second_call]["parent_ids"] == [first_call]
            assert info["active_calls"] == 0 and "attained_service" in info and "critical_path" in info
            assert info["calls_to_come"] == 3  # it said 4, itself included
        assert p.ended is not None and p.ended["deleted"] is True
        with pytest.raises(openai.NotFoundError) as err:
            client.program_info(p.id)
        assert err.value.status_code == 404 and err.value.code == "program_not_found"


def test_sync_program_ended_on_exception(server: str, model: str) -> None:
    with autellix.Client(server) as client:
        with pytest.raises(RuntimeError, match="agent crashed"), client.program() as p:
            p.openai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
            raise RuntimeError("agent crashed")
        assert p.ended is not None and p.ended["deleted"] is True
        with pytest.raises(openai.NotFoundError):
            client.program_info(p.id)


def test_sync_streaming_with_usage(server: str, model: str) -> None:
    with autellix.Client(server) as client, client.program() as p:
        stream = p.openai.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=12, stream=True,
            stream_options={"include_usage": True}, extra_body=IGNORE_EOS,
        )
        call_id = stream.response.headers[CALL_HEADER]
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        usage = [c.usage for c in chunks if c.usage]
        assert text and finish == ["length"] and len(usage) == 1 and usage[0].completion_tokens == 12
        assert set(calls_of(p.info())) == {call_id}


# Closing a stream (the client hanging up) aborting the call in the engine is proven on an engine
# the test controls, in test_server_aborts.py: here a 900-token call could finish first.


def test_api_errors_are_the_openai_sdks(server: str, model: str) -> None:
    with autellix.Client(server) as client:
        with client.program() as p:
            with pytest.raises(openai.BadRequestError) as err:  # more than the 1024-token context
                p.openai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=5000)
            assert err.value.status_code == 400 and "max_model_len" in err.value.message
            assert calls_of(p.info()) == {}  # refused before it ran
        with pytest.raises(openai.NotFoundError) as missing:
            client.program_info("prog-0000doesnotexist")
        assert missing.value.status_code == 404 and missing.value.code == "program_not_found"


def test_client_chosen_program_id(server: str, model: str) -> None:
    """No POST: the first call starts the program, whichever way it names it (our header, or
    vLLM's X-Session-ID); end() deletes it. Needs the new server (the old one answers 404)."""
    chosen = f"run-{uuid.uuid4().hex[:12]}"
    with autellix.Client(server) as client:
        program = client.program(chosen)
        with openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0,
                           default_headers={SESSION_HEADER: chosen}) as plain:
            raw = plain.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=3
            )
        raw2 = program.openai_for(parents=[raw.parse()]).completions.with_raw_response.create(
            model=model, prompt="abc", max_tokens=3
        )
        calls = calls_of(program.info())
        assert set(calls) == {raw.headers[CALL_HEADER], raw2.headers[CALL_HEADER]}
        assert calls[raw2.headers[CALL_HEADER]]["parent_ids"] == [raw.headers[CALL_HEADER]]
        ended = program.end()
        assert ended is not None and ended["deleted"] is True
        with pytest.raises(openai.NotFoundError):
            client.program_info(chosen)
        assert client.program(f"{chosen}-unused").end() is None  # never used: the server never knew it


# -- the asyncio client ----------------------------------------------------------------------


def test_async_fan_out_and_join(server: str, model: str) -> None:
    async def main() -> tuple[dict[str, Any], str, list[str], str, str]:
        async with autellix.AsyncClient(server) as client:
            async with client.program() as p:
                raw = await p.openai.chat.completions.with_raw_response.create(
                    model=model, messages=[{"role": "user", "content": "Propose ideas."}], max_tokens=4
                )
                root, root_call = raw.parse(), raw.headers[CALL_HEADER]

                async def child(i: int) -> tuple[Any, str]:
                    r = await p.openai_for(thread=i, parents=[root]).completions.with_raw_response.create(
                        model=model, prompt=f"Idea {i}:", max_tokens=4
                    )
                    return r.parse(), r.headers[CALL_HEADER]

                children = await asyncio.gather(*(child(i) for i in (1, 2, 3)))
                raw = await p.openai_for(parents=[c for c, _ in children]).chat.completions.with_raw_response.create(
                    model=model, messages=[{"role": "user", "content": "Pick one."}], max_tokens=4
                )
                join, join_call = raw.parse(), raw.headers[CALL_HEADER]
                stream = await p.openai_for(parents=[join.id]).chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "More."}], max_tokens=5, stream=True,
                    stream_options={"include_usage": True}, extra_body=IGNORE_EOS,
                )
                stream_call = stream.response.headers[CALL_HEADER]
                usage = [c.usage async for c in stream if c.usage]
                assert len(usage) == 1 and usage[0].completion_tokens == 5
                info = await p.info()
            with pytest.raises(openai.NotFoundError):
                await client.program_info(p.id)
            with pytest.raises(KeyError):
                async with client.program() as crashed:
                    await crashed.openai.completions.create(model=model, prompt="x", max_tokens=2)
                    raise KeyError("boom")
            with pytest.raises(openai.NotFoundError):
                await client.program_info(crashed.id)
            return info, root_call, [c for _, c in children], join_call, stream_call

    info, root, children, join, stream = asyncio.run(main())
    calls = calls_of(info)
    assert set(calls) == {root, *children, join, stream}
    assert sorted(calls[c]["thread_id"] for c in children) == [1, 2, 3]
    assert all(calls[c]["parent_ids"] == [root] for c in children)
    assert sorted(calls[join]["parent_ids"]) == sorted(children) and calls[stream]["parent_ids"] == [join]


# -- the official openai SDK alone -------------------------------------------------------------


def test_openai_sdk_with_program_header(server: str, model: str) -> None:
    with autellix.Client(server) as client, client.program() as p:
        with openai.OpenAI(base_url=server + "/v1", api_key="unused", default_headers={PROGRAM_HEADER: p.id}) as oa:
            chat = oa.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
            completion = oa.completions.with_raw_response.create(
                model=model, prompt="abc", max_tokens=3, extra_body={"parent_ids": [chat.parse().id], "thread_id": 2}
            )
        calls = calls_of(p.info())
        chat_call, completion_call = chat.headers[CALL_HEADER], completion.headers[CALL_HEADER]
        assert set(calls) == {chat_call, completion_call}
        assert calls[completion_call]["parent_ids"] == [chat_call] and calls[completion_call]["thread_id"] == 2


# -- the examples ----------------------------------------------------------------------------


def test_example_react_agent(server: str) -> None:
    out = run_example("react_agent.py", server).stdout
    assert "Final answer: 123 (the calculator is defined in local_tools.py)" in out
    assert out.count("  Observation: ") == 3
    assert " 4 calls, attained service " in out
    assert "calls it said were still to come 2" in out  # the 4th of 6 steps said 3, itself included
    assert "Program ended: aborted calls 0" in out


def test_example_react_agent_stops_after_max_steps(server: str) -> None:
    out = run_example("react_agent.py", server, "--max-steps", "2").stdout
    assert "Final answer: (none: stopped after 2 steps)" in out and " 2 calls, " in out
    assert "calls it said were still to come 0" in out


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
        "--progress-interval", "1", "--json", "--tell-calls-left",
    )
    report = json.loads(proc.stdout)
    assert report["programs"] == 6 and report["completed"] == 6
    assert report["failed"] == 0 and report["unfinished"] == 0 and report["call_errors"] == 0
    assert report["calls_ok"] == report["calls"] and report["errors"] == []
    assert report["length_mismatches"] == 0  # ignore_eos + max_tokens: exact output lengths
    assert report["latency_p50"] <= report["latency_p95"] <= report["latency_p99"]
    assert report["token_latency_mean"] > 0 and report["throughput_tokens_per_s"] > 0


def _active_programs(server: str) -> float:
    with urllib.request.urlopen(f"{server}/metrics", timeout=30) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("autellix:programs_active"):
            return float(line.split()[-1])
    raise AssertionError("no autellix:programs_active in /metrics")


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
    for _ in range(300):  # the DELETEs went out before the script exited; allow for bookkeeping
        if _active_programs(server) == 0:
            break
        time.sleep(0.1)
    assert _active_programs(server) == 0


def test_tool_agent_helpers() -> None:
    """The example's local tools, without a server."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import tool_agent
    finally:
        sys.path.remove(str(EXAMPLES))
    assert tool_agent.calculator("(17 + 25) * 3 - 12 / 4") == "123"
    with pytest.raises(ValueError):
        tool_agent.calculator("__import__('os')")
    tools = {"calculator": tool_agent.calculator, "read_file": tool_agent.make_read_file(ROOT)}
    assert tool_agent.run_tool(tools, "calculator", '{"expression": "2 ** 10"}') == "1024"
    assert tool_agent.run_tool(tools, "read_file", '{"path": "README.md"}').startswith("# Autellix")
    assert tool_agent.run_tool(tools, "read_file", '{"path": "../../etc/passwd"}').startswith("error: ValueError")
    assert tool_agent.run_tool(tools, "calculator", '{"expression": "(("}').startswith("error: SyntaxError")
    assert tool_agent.run_tool(tools, "calculator", "true").startswith("error: ValueError")
    assert tool_agent.run_tool(tools, "shell", '{"cmd": "ls"}') == "error: ValueError: unknown tool 'shell'"


def test_example_tool_agent(tool_server: str) -> None:
    """tools -> tool_calls -> a local tool -> a role "tool" message -> the answer, in one program.
    Needs the new server (vLLM's tool parsing); the tool's strict schema keeps even the random
    model's forced call parseable, and 300 tokens leave room for its JSON whitespace."""
    out = run_example("tool_agent.py", tool_server, "--max-tokens", "300").stdout
    lines = out.splitlines()
    assert re.search(r"^Call 1 \(.+\): finish \w+, [1-9]\d* tool call\(s\)$", out, re.MULTILINE), out
    assert any(line.startswith('Tool calculator({"expression": ') and ") -> " in line for line in lines)
    assert any(line.startswith("Call 2 (") and line.endswith("tool calls 0") for line in lines)
    assert any(line.startswith("Final answer: ") for line in lines) and "(the model called no tool)" not in out
    assert " 2 calls" in out and "Program ended: aborted calls 0" in out
    out = run_example("tool_agent.py", tool_server, "--max-tokens", "300", "--tool", "read_file").stdout
    assert 'Tool read_file({"path": ' in out and " 2 calls" in out
