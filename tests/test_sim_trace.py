"""The JSONL trace format: round trips, defaults, and clear errors for bad input."""

import io
import json

import pytest

from autellix.sim.trace import Call, Program, TraceError, dump_trace, load_trace


def _line(**over):
    prog = {"program_id": "p1", "arrival": 1.5,
            "calls": [{"call_id": "c1", "parents": [], "prompt_tokens": 100, "output_tokens": 10, "delay": 0.0},
                      {"call_id": "c2", "parents": ["c1"], "prompt_tokens": 150, "output_tokens": 5, "delay": 1.5}]}
    prog.update(over)
    return json.dumps(prog)


def test_parses_the_documented_example_with_defaults():
    text = ('{"program_id": "p17", "arrival": 3.25, "calls": [{"call_id": "c1", "parents": [], "prompt_tokens": 812, '
            '"output_tokens": 40, "delay": 0.0}, {"call_id": "c2", "parents": ["c1"], "prompt_tokens": 900, '
            '"output_tokens": 35, "delay": 1.5}]}\n\n')
    (p,) = load_trace(io.StringIO(text))
    assert p.program_id == "p17" and p.arrival == 3.25 and p.system_tokens == 0
    assert p.calls[1] == Call("c2", 900, 35, ("c1",), 1.5, 0)
    assert p.output_tokens == 75


def test_minimal_call_fields_and_integer_ids():
    (p,) = load_trace(io.StringIO('{"program_id": 7, "arrival": 0, "calls": [{"call_id": 1, "prompt_tokens": 1, '
                                  '"output_tokens": 1}]}'))
    assert p.program_id == "7" and p.calls[0].call_id == "1" and p.calls[0].parents == () and p.calls[0].delay == 0.0


def test_round_trip_and_sorted_by_arrival(tmp_path):
    progs = [Program("b", 2.0, [Call("x", 10, 2), Call("y", 20, 3, ("x",), 0.25, 8)], system_tokens=4, workload="bfcl"),
             Program("a", 1.0, [Call("r", 5, 1)])]
    path = tmp_path / "t.jsonl"
    dump_trace(progs, path)
    back = load_trace(path)
    assert [p.program_id for p in back] == ["a", "b"]
    assert back[1] == progs[0] and back[0] == progs[1]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{not json", "line 2: invalid JSON"),
        ("[1, 2]", "line 2: a program must be a JSON object"),
        (_line(arrival=-1), "line 2, field 'arrival'"),
        (_line(arrival="soon"), "line 2, field 'arrival'"),
        (_line(calls=[]), "line 2, field 'calls'"),
        (json.dumps({"arrival": 0, "calls": []}), "line 2, field 'program_id': is missing"),
        (json.dumps({"program_id": "q", "calls": [{"call_id": "a", "prompt_tokens": 1, "output_tokens": 1}]}),
         "line 2, field 'arrival': is missing"),
        (_line(calls=[{"call_id": "a", "prompt_tokens": 0, "output_tokens": 1}]), "field 'calls[0].prompt_tokens'"),
        (_line(calls=[{"call_id": "a", "prompt_tokens": 3, "output_tokens": 2.5}]), "field 'calls[0].output_tokens'"),
        (_line(calls=[{"call_id": "a", "prompt_tokens": 3, "output_tokens": True}]), "field 'calls[0].output_tokens'"),
        (_line(calls=[{"call_id": "a", "prompt_tokens": 3}]), "field 'calls[0].output_tokens': is missing"),
        (_line(calls=[{"call_id": "a", "prompt_tokens": 3, "output_tokens": 1, "delay": -2}]), "field 'calls[0].delay'"),
        (_line(calls=[{"call_id": "a", "prompt_tokens": 3, "output_tokens": 1, "parents": ["zz"]}]),
         "field 'calls[0].parents': parent 'zz' is not an earlier call"),
        (_line(calls=[{"call_id": "a", "prompt_tokens": 3, "output_tokens": 1},
                      {"call_id": "a", "prompt_tokens": 3, "output_tokens": 1}]), "field 'calls[1].call_id': duplicate"),
        (_line(calls=[{"call_id": "a", "prompt_tokens": 3, "output_tokens": 1, "prefix_tokens": 4}]),
         "field 'calls[0].prefix_tokens'"),
        (_line(calls=[{"call_id": "a", "prompt_tokens": 3, "output_tokens": 1, "colour": "red"}]),
         "field 'calls[0].colour': unknown field"),
        (_line(priority=3), "field 'priority': unknown field"),
        (_line(program_id="p0"), "line 2, field 'program_id': duplicate program id"),
    ],
)
def test_bad_input_names_line_and_field(text, needle):
    good = _line(program_id="p0")
    with pytest.raises(TraceError) as err:
        load_trace(io.StringIO(good + "\n" + text + "\n"))
    assert needle in str(err.value)
    assert err.value.line == 2
