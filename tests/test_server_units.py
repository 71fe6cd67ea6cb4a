"""The server's pure parts, without an engine: request validation, sizes, metrics text, the
program table."""

from __future__ import annotations

import argparse
import math

import pytest

from autellix.server.command import parse_size
from autellix.server.errors import ApiError
from autellix.server.metrics import Counter, Histogram, Sample, Snapshot, render
from autellix.server.programs import MAX_CALL_RECORDS, CallRecord, ProgramTable
from autellix.server.protocol import parse_chat, parse_completion, parse_tags
from autellix.server.sampling import check_context

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_sizes() -> None:
    assert parse_size("1GiB") == 1 << 30
    assert parse_size("64MiB") == 64 << 20
    assert parse_size("2G") == 2 << 30
    assert parse_size("1GB") == 10**9
    assert parse_size("123") == 123
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("lots")


def test_chat_parsing_normalises_messages() -> None:
    parsed = parse_chat(
        {
            **CHAT,
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": None},
            ],
            "max_completion_tokens": 5,
            "max_tokens": 9,
            "stop": "x",
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        {},
    )
    assert parsed.messages == ({"role": "system", "content": "be brief"}, {"role": "user", "content": "ab"}, {"role": "assistant", "content": ""})
    assert parsed.sampling.max_tokens == 5 and parsed.sampling.stop == ("x",)
    assert parsed.stream and parsed.include_usage


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"temperature": math.inf}, None),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"seed": "1"}, "seed"),
        ({"logprobs": True}, "logprobs"),
        ({"stop": [""]}, "stop"),
        ({"messages": [{"content": "x"}]}, "messages[0].role"),
    ],
)
def test_chat_parsing_errors_name_the_field(changes: dict, param: str | None) -> None:
    with pytest.raises(ApiError) as error:
        parse_chat({**CHAT, **changes}, {})
    assert error.value.status == 400
    if param:
        assert error.value.param == param and param.split("[")[0] in error.value.message


def test_harmless_defaults_of_unsupported_fields_pass() -> None:
    parse_chat({**CHAT, "logprobs": False, "logit_bias": {}, "tools": [], "tool_choice": "none", "n": 1}, {})


def test_completion_prompt_forms() -> None:
    assert parse_completion({"model": "m", "prompt": [1, 2]}, {}).prompt == (1, 2)
    assert parse_completion({"model": "m", "prompt": ["one"]}, {}).prompt == "one"
    assert parse_completion({"model": "m", "prompt": [[3, 4]]}, {}).prompt == (3, 4)


def test_tags_from_headers_and_body() -> None:
    tags = parse_tags({"parent_ids": ["call-a"]}, {"X-Autellix-Program": " prog-1 ", "X-Autellix-Thread": "3", "X-Autellix-Parents": "call-b, call-a"})
    assert tags.program_id == "prog-1" and tags.thread_id == 3 and tags.parent_ids == ("call-a", "call-b")
    with pytest.raises(ApiError):
        parse_tags({"program_id": "prog-2"}, {"X-Autellix-Program": "prog-1"})


def test_context_check_names_both_numbers() -> None:
    assert check_context(10, None, 100) == 90
    assert check_context(10, 90, 100) == 90
    with pytest.raises(ApiError) as error:
        check_context(10, 91, 100)
    assert "100" in error.value.message and "10 tokens" in error.value.message and "91" in error.value.message


def test_metrics_text() -> None:
    counter = Counter("c_total", "help", label="status")
    counter.inc("ok")
    counter.inc("ok")
    histogram = Histogram("h_seconds", "help", buckets=(0.1, 1))
    for value in (0.05, 0.5, 5):
        histogram.observe(value)
    gauge = Snapshot("g", "gauge", "help", [Sample((("engine", "0"), ("queue", 'a"b')), 1.5)])
    text = render([counter, histogram, gauge])
    assert '# TYPE c_total counter\nc_total{status="ok"} 2\n' in text
    assert 'h_seconds_bucket{le="0.1"} 1\nh_seconds_bucket{le="1"} 2\nh_seconds_bucket{le="+Inf"} 3\n' in text
    assert "h_seconds_sum 5.55\nh_seconds_count 3\n" in text
    assert 'g{engine="0",queue="a\\"b"} 1.5\n' in text


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
