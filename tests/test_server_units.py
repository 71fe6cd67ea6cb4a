"""The server's pure parts, without an engine: sizes, call identity (program, thread, parents),
the JSON Schema checks of tools and response formats, the program-create body, the program table.

What a generation request means is vLLM's to parse (tests/test_server_errors.py checks its
answers on a real server); the metrics are tests/test_server_metrics.py's."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import warnings
from typing import Any

import pytest

# Importing the server package may import the engine driver, vLLM and torch: their import-time
# deprecation warnings are not this file's business.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from autellix.contract import (
        CALLS_LEFT_HEADER,
        CALLS_LEFT_KEY,
        PARENTS_HEADER,
        PROGRAM_HEADER,
        SESSION_HEADER,
        THREAD_HEADER,
        THREAD_ID_LIMIT,
    )
    from autellix.server.bodies import MAX_METADATA_BYTES, parse_program_create
    from autellix.server.command import bound_socket, parse_size
    from autellix.server.errors import ApiError
    from autellix.server.identity import MAX_PARENTS, MAX_PROGRAM_ID_CHARS, CallIdentity, call_identity
    from autellix.server.programs import MAX_CALL_RECORDS, CallRecord, ProgramTable
    from autellix.server.schemas import check_json_schemas

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_the_server_port_is_bound_before_anything_listens_on_it() -> None:
    with bound_socket("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):  # bound, not listening: refused until served
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with socket.socket() as other, pytest.raises(OSError):  # and taken for anyone else
            other.bind(("127.0.0.1", port))


def test_serve_on_a_busy_port_fails_before_any_engine_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "autellix.cli", "serve", "--port", str(port), "--model", "tiny"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert f"autellix serve: error: [Errno 98] cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "engine(s) ready" not in done.stderr + done.stdout


def test_sizes() -> None:
    assert parse_size("1GiB") == 1 << 30
    assert parse_size("64MiB") == 64 << 20
    assert parse_size("2G") == 2 << 30
    assert parse_size("1GB") == 10**9
    assert parse_size("123") == 123
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("lots")


# -- call identity ------------------------------------------------------------------------------


def identity(body: dict[str, Any], headers: dict[str, str] | None = None) -> CallIdentity:
    return call_identity(body, headers or {})


def bad_identity(body: dict[str, Any], headers: dict[str, str] | None = None) -> ApiError:
    with pytest.raises(ApiError) as error:
        call_identity(body, headers or {})
    assert error.value.status == 400
    return error.value


# Every place a program id may come from, most binding first (contract.py's order): each row's
# source wins over every row below it.
PROGRAM_SOURCES: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    ("program header", {PROGRAM_HEADER: "from-program-header"}, {}),
    ("program_id", {}, {"program_id": "from-program-field"}),
    ("xargs program", {}, {"vllm_xargs": {"autellix_program_id": "from-xargs-program"}}),
    ("session header", {SESSION_HEADER: "from-session-header"}, {}),
    ("session_id", {}, {"session_id": "from-session-field"}),
    ("xargs session", {}, {"vllm_xargs": {"session_id": "from-xargs-session"}}),
    ("agentic context", {}, {"vllm_xargs": {"agentic_context": {"program_id": "from-agentic-context"}}}),
]
EXPECTED_ID = {
    "program header": "from-program-header",
    "program_id": "from-program-field",
    "xargs program": "from-xargs-program",
    "session header": "from-session-header",
    "session_id": "from-session-field",
    "xargs session": "from-xargs-session",
    "agentic context": "from-agentic-context",
}


def merged(sources: list[tuple[str, dict[str, str], dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, str]]:
    headers: dict[str, str] = {}
    body: dict[str, Any] = {"model": "m"}
    for _, h, b in sources:
        headers.update(h)
        for key, value in b.items():
            if key == "vllm_xargs":
                body.setdefault("vllm_xargs", {}).update(value)
            else:
                body[key] = value
    return body, headers


@pytest.mark.parametrize("first", range(len(PROGRAM_SOURCES)))
def test_program_id_precedence(first: int) -> None:
    """With every source from `first` down given at once, `first` wins."""
    body, headers = merged(PROGRAM_SOURCES[first:])
    assert identity(body, headers).program_id == EXPECTED_ID[PROGRAM_SOURCES[first][0]]


@pytest.mark.parametrize("source", PROGRAM_SOURCES, ids=lambda s: s[0])
def test_each_program_id_source_alone(source: tuple[str, dict[str, str], dict[str, Any]]) -> None:
    name, headers, body = source
    assert identity(dict(body), dict(headers)).program_id == EXPECTED_ID[name]


def test_no_program_id_is_a_program_of_its_own() -> None:
    assert identity({"model": "m"}) == CallIdentity(None, None, ())
    # Blank ids count as not given: the next source is looked at.
    assert identity({"program_id": "  ", "session_id": "s"}, {PROGRAM_HEADER: " "}).program_id == "s"
    assert identity({"vllm_xargs": None}).program_id is None
    assert identity({"vllm_xargs": {"agentic_context": 5}}).program_id is None
    assert identity({"vllm_xargs": {"agentic_context": {"other": "x"}}}).program_id is None


def test_agentic_context_may_be_a_json_string() -> None:
    """vLLM's request models take only scalars and lists in vllm_xargs: vLLM Router's context may
    come as its JSON."""
    assert identity({"vllm_xargs": {"agentic_context": '{"program_id": "from-json"}'}}).program_id == "from-json"
    error = bad_identity({"vllm_xargs": {"agentic_context": "not-json"}})
    assert error.param == "vllm_xargs" and "agentic_context" in error.message


def test_program_ids_are_stripped_and_integers_accepted() -> None:
    assert identity({}, {PROGRAM_HEADER: "  prog-1  "}).program_id == "prog-1"
    assert identity({"program_id": 12}).program_id == "12"
    assert identity({"vllm_xargs": {"autellix_program_id": 7}}).program_id == "7"
    assert identity({"program_id": "x" * MAX_PROGRAM_ID_CHARS}).program_id == "x" * MAX_PROGRAM_ID_CHARS


def test_autellix_body_fields_are_removed_and_vllm_fields_kept() -> None:
    body = {
        "model": "m",
        "program_id": "p",
        "thread_id": 3,
        "parent_ids": ["call-a"],
        "calls_left": 4,
        "session_id": "s",
        "vllm_xargs": {"autellix_program_id": "x", "session_id": "s2"},
    }
    assert identity(body) == CallIdentity("p", 3, ("call-a",), 4)
    assert body == {"model": "m", "session_id": "s", "vllm_xargs": {"autellix_program_id": "x", "session_id": "s2"}}


def test_thread_ids() -> None:
    assert identity({}, {THREAD_HEADER: " 3 "}).thread_id == 3
    assert identity({"thread_id": "4"}).thread_id == 4
    assert identity({"vllm_xargs": {"autellix_thread_id": 5}}).thread_id == 5
    assert identity({"thread_id": THREAD_ID_LIMIT - 1}).thread_id == THREAD_ID_LIMIT - 1
    # The header wins over the body field, the body field over vllm_xargs.
    assert identity({"thread_id": 2, "vllm_xargs": {"autellix_thread_id": 1}}, {THREAD_HEADER: "9"}).thread_id == 9
    assert identity({"thread_id": 2, "vllm_xargs": {"autellix_thread_id": 1}}).thread_id == 2


def test_calls_left_from_the_header_the_body_or_vllm_xargs_and_the_tag_carries_it() -> None:
    from autellix.engine.tags import CallTag

    assert identity({}).calls_left is None
    assert identity({}, {CALLS_LEFT_HEADER: " 3 "}).calls_left == 3
    assert identity({"calls_left": 2, "vllm_xargs": {CALLS_LEFT_KEY: 9}}).calls_left == 2
    assert identity({"vllm_xargs": {CALLS_LEFT_KEY: 9}}).calls_left == 9
    assert identity({"calls_left": 2}, {CALLS_LEFT_HEADER: "5"}).calls_left == 5

    class Params:
        extra_args = {CALLS_LEFT_KEY: 9, "other": 1}

        def clone(self):
            return Params()

    assert CallTag(7, calls_left=3).tag(Params()).extra_args[CALLS_LEFT_KEY] == 3
    assert CallTag(7).tag(Params()).extra_args[CALLS_LEFT_KEY] == 9  # a client's own vllm_xargs stays


def test_parent_ids_from_every_source_merged_in_order_without_duplicates() -> None:
    got = identity(
        {"parent_ids": ["call-a", "call-b"], "vllm_xargs": {"autellix_parents": "call-c"}},
        {PARENTS_HEADER: "call-b, call-d,, "},
    )
    assert got.parent_ids == ("call-a", "call-b", "call-c", "call-d")
    assert identity({"parent_ids": "call-x"}).parent_ids == ("call-x",)
    assert identity({"parent_ids": ["p"] * MAX_PARENTS}).parent_ids == ("p",)


@pytest.mark.parametrize(
    ("body", "headers", "param", "where"),
    [
        # program ids: not strings, too long, not printable
        ({"program_id": 1.5}, {}, "program_id", "program_id"),
        ({"program_id": True}, {}, "program_id", "program_id"),
        ({"program_id": ["p"]}, {}, "program_id", "program_id"),
        ({"program_id": {"id": "p"}}, {}, "program_id", "program_id"),
        ({"program_id": "p" * (MAX_PROGRAM_ID_CHARS + 1)}, {}, "program_id", "program_id"),
        ({"program_id": "a\nb"}, {}, "program_id", "program_id"),
        ({}, {PROGRAM_HEADER: "p" * (MAX_PROGRAM_ID_CHARS + 1)}, "program_id", PROGRAM_HEADER),
        ({"vllm_xargs": {"autellix_program_id": [1]}}, {}, "program_id", "vllm_xargs.autellix_program_id"),
        # session ids
        ({"session_id": 12.5}, {}, "program_id", "session_id"),
        ({"session_id": ["s"]}, {}, "program_id", "session_id"),
        ({"session_id": "s" * (MAX_PROGRAM_ID_CHARS + 1)}, {}, "program_id", "session_id"),
        ({"session_id": "tab\there"}, {}, "program_id", "session_id"),
        ({}, {SESSION_HEADER: "s" * (MAX_PROGRAM_ID_CHARS + 1)}, "program_id", SESSION_HEADER),
        ({"vllm_xargs": {"session_id": {"a": 1}}}, {}, "program_id", "vllm_xargs.session_id"),
        ({"vllm_xargs": {"agentic_context": {"program_id": 0.5}}}, {}, "program_id", "agentic_context"),
        # vllm_xargs itself
        ({"vllm_xargs": "x"}, {}, "vllm_xargs", "vllm_xargs"),
        ({"vllm_xargs": [1]}, {}, "vllm_xargs", "vllm_xargs"),
        ({"vllm_xargs": 3}, {}, "vllm_xargs", "vllm_xargs"),
        # thread ids
        ({"thread_id": "a"}, {}, "thread_id", "thread_id"),
        ({"thread_id": -1}, {}, "thread_id", "thread_id"),
        ({"thread_id": THREAD_ID_LIMIT}, {}, "thread_id", "thread_id"),
        ({"thread_id": 1.5}, {}, "thread_id", "thread_id"),
        ({"thread_id": True}, {}, "thread_id", "thread_id"),
        ({"thread_id": [1]}, {}, "thread_id", "thread_id"),
        ({}, {THREAD_HEADER: "two"}, "thread_id", THREAD_HEADER),
        ({}, {THREAD_HEADER: "-1"}, "thread_id", THREAD_HEADER),
        ({"vllm_xargs": {"autellix_thread_id": "x"}}, {}, "thread_id", "vllm_xargs.autellix_thread_id"),
        # calls left
        ({"calls_left": 0}, {}, "calls_left", "calls_left"),
        ({"calls_left": 2**32}, {}, "calls_left", "calls_left"),
        ({"calls_left": 1.5}, {}, "calls_left", "calls_left"),
        ({"calls_left": True}, {}, "calls_left", "calls_left"),
        ({}, {CALLS_LEFT_HEADER: "many"}, "calls_left", CALLS_LEFT_HEADER),
        ({"vllm_xargs": {"autellix_calls_left": -2}}, {}, "calls_left", "vllm_xargs.autellix_calls_left"),
        # parents
        ({"parent_ids": [1]}, {}, "parent_ids", "parent_ids"),
        ({"parent_ids": 5}, {}, "parent_ids", "parent_ids"),
        ({"parent_ids": {"a": "b"}}, {}, "parent_ids", "parent_ids"),
        ({"parent_ids": ["ok", None]}, {}, "parent_ids", "parent_ids"),
        ({"vllm_xargs": {"autellix_parents": 5}}, {}, "parent_ids", "vllm_xargs.autellix_parents"),
        ({"parent_ids": [f"call-{i}" for i in range(MAX_PARENTS + 1)]}, {}, "parent_ids", str(MAX_PARENTS)),
    ],
)
def test_bad_identity_is_a_400_naming_the_field(body: dict, headers: dict, param: str, where: str) -> None:
    error = bad_identity(body, headers)
    assert error.param == param, error.message
    assert where in error.message, error.message


def test_a_bad_identity_leaves_the_body_alone() -> None:
    body = {"program_id": "p", "thread_id": "x"}
    bad_identity(body)
    assert body == {"program_id": "p", "thread_id": "x"}


# -- JSON Schemas in the body -------------------------------------------------------------------

GOOD_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
BAD_SCHEMAS = [
    {"type": "objekt"},
    {"type": 12},
    {"properties": 3},
    {"type": "object", "required": "city"},
    {"minimum": "zero"},
    [1],
    5,
]


def chat_tool(parameters: Any, name: str = "f") -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


def responses_tool(parameters: Any, name: str = "f") -> dict[str, Any]:
    return {"type": "function", "name": name, "parameters": parameters}


def schema_error(body: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as error:
        check_json_schemas(body)
    assert error.value.status == 400
    assert error.value.param is not None and error.value.param in error.value.message
    return error.value


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"tools": [chat_tool(GOOD_SCHEMA)]},
        {"tools": [chat_tool({})]},  # the empty schema allows anything
        {"tools": [chat_tool(True)]},
        {"tools": [{"type": "function", "function": {"name": "no_parameters"}}]},
        {"tools": [responses_tool(GOOD_SCHEMA)]},
        {"tools": [{"type": "web_search"}]},
        {"tools": [chat_tool(None)]},
        {"tools": "not a list: vLLM's request model answers that"},
        {"tools": ["not an object"]},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": GOOD_SCHEMA}}},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
        {"response_format": {"type": "json_object"}},
        {"response_format": {"type": "text"}},
        {"text": {"format": {"type": "json_schema", "name": "x", "schema": GOOD_SCHEMA}}},
        {"text": {"format": {"type": "text"}}},
        {"tools": [chat_tool({"$schema": "http://json-schema.org/draft-07/schema#", **GOOD_SCHEMA})]},
    ],
)
def test_valid_schemas_pass(body: dict[str, Any]) -> None:
    check_json_schemas(body)


@pytest.mark.parametrize("schema", BAD_SCHEMAS, ids=repr)
def test_bad_chat_tool_parameters(schema: Any) -> None:
    error = schema_error({"tools": [chat_tool(GOOD_SCHEMA, "ok"), chat_tool(schema)]})
    assert error.param == "tools[1].function.parameters"


@pytest.mark.parametrize("schema", BAD_SCHEMAS, ids=repr)
def test_bad_responses_tool_parameters(schema: Any) -> None:
    error = schema_error({"tools": [responses_tool(schema)]})
    assert error.param == "tools[0].parameters"


@pytest.mark.parametrize("schema", BAD_SCHEMAS, ids=repr)
def test_bad_response_format_schema(schema: Any) -> None:
    error = schema_error({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})
    assert error.param == "response_format.json_schema.schema"


@pytest.mark.parametrize("schema", BAD_SCHEMAS, ids=repr)
def test_bad_text_format_schema(schema: Any) -> None:
    error = schema_error({"text": {"format": {"type": "json_schema", "name": "x", "schema": schema}}})
    assert error.param == "text.format.schema"


def test_schema_error_says_where_inside_the_schema() -> None:
    error = schema_error({"tools": [chat_tool({"type": "object", "properties": {"city": {"type": "strin"}}})]})
    assert ".properties.city.type" in error.message


def test_a_schema_that_breaks_the_validator_is_still_a_400() -> None:
    error = schema_error({"tools": [chat_tool({"$schema": 5, "type": "object"})]})
    assert error.param == "tools[0].function.parameters"


# -- program create bodies ----------------------------------------------------------------------


def test_program_create_bodies() -> None:
    assert parse_program_create({}) == (None, {})
    assert parse_program_create({"metadata": None}) == (None, {})
    assert parse_program_create({"id": " my-agent ", "metadata": {"team": "a"}}) == ("my-agent", {"team": "a"})
    assert parse_program_create({"metadata": {"x": "y" * (MAX_METADATA_BYTES - 20)}})[1]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"id": 5}, "id"),
        ({"id": ""}, "id"),
        ({"id": "   "}, "id"),
        ({"id": ["a"]}, "id"),
        ({"metadata": "x"}, "metadata"),
        ({"metadata": [1]}, "metadata"),
        ({"metadata": {"x": "y" * MAX_METADATA_BYTES}}, "metadata"),
    ],
)
def test_bad_program_create_bodies(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as error:
        parse_program_create(body)
    assert error.value.status == 400 and error.value.param == param and param in error.value.message


# -- the program table --------------------------------------------------------------------------


def test_program_table_owners_and_bounded_records() -> None:
    table = ProgramTable()
    program = table.create("owner-a")
    other = table.create(None)
    assert program.internal_id != other.internal_id
    assert table.get(program.id, "owner-a") is program
    assert table.get(program.id, "owner-b") is None and table.get(program.id, None) is None
    for i in range(MAX_CALL_RECORDS + 10):
        record = CallRecord(id=f"call-{i}", thread_id=None, parent_ids=[], arrival=0.0)
        program.add_call(record)
        program.finish_call(record)
    assert len(program.calls) == MAX_CALL_RECORDS and "call-0" not in program.calls
    table.remove(program)
    assert table.get(program.id, "owner-a") is None and len(table) == 1


def test_program_ids_are_per_owner_namespaces() -> None:
    table = ProgramTable()
    mine = table.create("key-a", "session-1")
    theirs = table.create("key-b", "session-1")
    anonymous = table.create(None, "session-1")
    assert len({id(mine), id(theirs), id(anonymous)}) == 3
    assert len({mine.internal_id, theirs.internal_id, anonymous.internal_id}) == 3
    assert table.get("session-1", "key-a") is mine
    assert table.get("session-1", "key-b") is theirs
    assert table.get("session-1", None) is anonymous
    # Ending one owner's program leaves the others' alone.
    table.remove(mine)
    assert table.get("session-1", "key-a") is None
    assert table.get("session-1", "key-b") is theirs and table.get("session-1", None) is anonymous
    # ...and the id is free again for that owner.
    again = table.create("key-a", "session-1")
    assert again is not mine and again.internal_id not in (mine.internal_id, theirs.internal_id)


def test_creating_a_live_program_id_again_raises_key_error() -> None:
    table = ProgramTable()
    table.create("key-a", "dup")
    with pytest.raises(KeyError):
        table.create("key-a", "dup")
    with pytest.raises(KeyError):
        table.create(None, table.create(None).id)
    assert table.started == 2 and len(table) == 2


def test_idle_programs_exclude_running_and_solo_ones() -> None:
    table = ProgramTable()
    idle = table.create(None, "idle")
    busy = table.create(None, "busy")
    table.create(None, solo=True)
    busy.add_call(CallRecord(id="call-1", thread_id=None, parent_ids=[], arrival=0.0))
    idle.last_activity = busy.last_activity = 0.0
    assert table.idle_since(1.0) == [idle]
    assert table.idle_since(-1.0) == []
