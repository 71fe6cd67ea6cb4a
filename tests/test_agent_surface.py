"""What an agent needs, through the official openai SDK with only `base_url` and a session header,
against `autellix serve` on the default model (SmolLM2-135M-Instruct, as scripts/serve.sh runs it):
forced and automatic tool calls with arguments that match the tool's schema, a follow-up with the
tool's result, JSON mode, logprobs, n=2, the Responses API, the Anthropic Messages API, streaming
of each, and the session showing every call as one program.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import jsonschema
import openai
import pytest

from autellix.contract import CALLS_LEFT_FIELD, CALLS_LEFT_HEADER
from server_helpers import running_server

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.timeout(900)]

MODEL = "smollm2-135m-instruct"
SESSION = "agent-session-7"
CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "maxLength": 40}},
            "required": ["expression"],
            "additionalProperties": False,
        },
    },
}
QUESTION = [{"role": "user", "content": "What is 17 * 23? Use the calculator."}]
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 30}},
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory) -> Iterator[str]:
    # The default model, with no extra flags: what scripts/serve.sh serves.
    with running_server(tmp_path_factory, ["--model", MODEL, "--kv-cache-memory", "256MiB", "--max-model-len", "2048"]) as url:
        yield url


@pytest.fixture(scope="module")
def agent(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", default_headers={"X-Session-ID": SESSION}, max_retries=0) as client:
        yield client


def _arguments(tool_call) -> dict:
    assert tool_call.type == "function" and tool_call.function.name == "calculator"
    arguments = json.loads(tool_call.function.arguments)
    jsonschema.validate(arguments, CALCULATOR["function"]["parameters"])
    return arguments


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "calculator"}}], ids=["required", "named"])
def test_a_forced_tool_call_then_the_answer_from_its_result(agent: openai.OpenAI, choice) -> None:
    reply = agent.chat.completions.create(model=MODEL, messages=QUESTION, tools=[CALCULATOR], tool_choice=choice, max_tokens=80, temperature=0)
    message = reply.choices[0].message
    (tool_call,) = message.tool_calls
    _arguments(tool_call)
    assert reply.choices[0].finish_reason in ("tool_calls", "stop")
    follow_up = agent.chat.completions.create(
        model=MODEL,
        messages=[*QUESTION, message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": tool_call.id, "content": "391"}],
        tools=[CALCULATOR],
        max_tokens=40,
        temperature=0,
    )
    assert follow_up.choices[0].message.content  # the model answers in text after the tool's result


def test_auto_tool_choice_is_served(agent: openai.OpenAI) -> None:
    """The model decides; SmolLM2-135M answers in prose (it never emitted a call in our trials),
    so what is checked is that any call it does make is parsed and valid."""
    reply = agent.chat.completions.create(model=MODEL, messages=QUESTION, tools=[CALCULATOR], tool_choice="auto", max_tokens=60, temperature=0)
    message = reply.choices[0].message
    assert message.content or message.tool_calls
    for tool_call in message.tool_calls or ():
        _arguments(tool_call)


def test_a_forced_tool_call_streams(agent: openai.OpenAI) -> None:
    stream = agent.chat.completions.create(
        model=MODEL, messages=QUESTION, tools=[CALCULATOR], tool_choice="required", max_tokens=80, temperature=0, stream=True
    )
    name, arguments = "", ""
    for chunk in stream:
        for delta in (chunk.choices[0].delta.tool_calls or ()) if chunk.choices else ():
            name += delta.function.name or "" if delta.function else ""
            arguments += delta.function.arguments or "" if delta.function else ""
    assert name == "calculator"
    jsonschema.validate(json.loads(arguments), CALCULATOR["function"]["parameters"])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_json_schema_output_parses(agent: openai.OpenAI, stream: bool) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}}
    messages = [{"role": "user", "content": "Name the capital of France as JSON."}]
    if stream:
        chunks = agent.chat.completions.create(model=MODEL, messages=messages, response_format=response_format, max_tokens=60, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = agent.chat.completions.create(model=MODEL, messages=messages, response_format=response_format, max_tokens=60).choices[0].message.content
    jsonschema.validate(json.loads(text), CITY)


def test_logprobs_and_two_choices(agent: openai.OpenAI) -> None:
    reply = agent.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=5, n=2, logprobs=True, top_logprobs=2, temperature=1.0, seed=1
    )
    assert [c.index for c in reply.choices] == [0, 1]
    for choice in reply.choices:
        assert choice.logprobs.content and all(len(t.top_logprobs) == 2 for t in choice.logprobs.content)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_responses_api(agent: openai.OpenAI, stream: bool) -> None:
    if stream:
        events = list(agent.responses.create(model=MODEL, input="Say hello.", max_output_tokens=16, stream=True))
        assert events[0].type == "response.created" and events[-1].type == "response.completed"
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta")
    else:
        response = agent.responses.create(model=MODEL, input="Say hello.", max_output_tokens=16)
        assert response.status in ("completed", "incomplete") and response.output_text


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_anthropic_messages(base_url: str, stream: bool) -> None:
    body = {"model": MODEL, "max_tokens": 12, "messages": [{"role": "user", "content": "Hello"}], "stream": stream}
    response = httpx.post(f"{base_url}/v1/messages", json=body, headers={"X-Session-ID": SESSION}, timeout=120)
    assert response.status_code == 200, response.text
    if stream:
        assert "event: message_start" in response.text and "event: message_stop" in response.text
    else:
        message = response.json()
        assert message["type"] == "message" and message["content"][0]["text"]


def test_a_count_of_calls_left_reaches_the_scheduler(base_url: str, agent: openai.OpenAI) -> None:
    # The header, through the front end, the engine's extra_args and the plug-in, to the core: it
    # counts this call, so two are still to come.
    session = "agent-with-a-budget"
    agent.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Step one."}], max_tokens=2,
        extra_headers={"X-Session-ID": session, CALLS_LEFT_HEADER: "3"},
    )
    assert httpx.get(f"{base_url}/v1/programs/{session}").json()["calls_to_come"] == 2
    with pytest.raises(openai.BadRequestError, match=CALLS_LEFT_FIELD):
        agent.chat.completions.create(
            model=MODEL, messages=QUESTION, max_tokens=2, extra_body={CALLS_LEFT_FIELD: 0},
            extra_headers={"X-Session-ID": session},
        )


def test_the_session_is_one_program_with_every_call(base_url: str, agent: openai.OpenAI) -> None:
    # A first call starts the program when this test runs alone (the others' calls join it too).
    agent.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello."}], max_tokens=2)
    before = httpx.get(f"{base_url}/v1/programs/{SESSION}").json()
    agent.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "One more."}], max_tokens=3)
    after = httpx.get(f"{base_url}/v1/programs/{SESSION}").json()
    assert after["id"] == SESSION and len(after["calls"]) == len(before["calls"]) + 1
    assert all(c["state"] == "finished" for c in after["calls"])
    assert after["attained_service"] > 0
