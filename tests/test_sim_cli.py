"""The `autellix` command line: workload, simulate (--json fields), sweep outputs, clear errors."""

import json

import pytest

from autellix import work_units
from autellix.cli import main
from autellix.sim.sweep import crossing_rate, throughput_table
from autellix.sim.trace import load_trace

REQUIRED = {"policy", "programs", "completed", "mean_latency", "p95_latency", "p99_latency", "mean_token_latency",
            "makespan", "throughput"}


def test_workload_writes_a_loadable_trace(tmp_path, capsys):
    assert main(["workload", "--workload", "bfcl", "--rate", "2", "--programs", "5", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "t.jsonl"
    path.write_text(out)
    progs = load_trace(path)
    assert len(progs) == 5 and all(p.workload == "bfcl" for p in progs)
    assert main(["workload", "-w", "bfcl", "-r", "2", "-n", "5", "-s", "3", "-o", str(tmp_path / "u.jsonl")]) == 0
    assert (tmp_path / "u.jsonl").read_text() == out


@pytest.mark.parametrize("policy", ["fcfs", "mlfq", "plas", "atlas", "srpt"])
def test_simulate_json_fields(policy, capsys):
    assert main(["simulate", "--workload", "sharegpt", "--rate", "2", "--programs", "20", "--policy", policy,
                 "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert REQUIRED <= out.keys()
    assert out["policy"] == policy and out["programs"] == out["completed"] == 20
    assert 0 < out["mean_token_latency"] and out["mean_latency"] <= out["p99_latency"] + 1e-9
    assert out["throughput"] == pytest.approx(out["completed"] / out["makespan"])


def test_simulate_a_trace_on_several_engines(tmp_path, capsys):
    main(["workload", "-w", "lats", "-r", "1", "-n", "3", "-o", str(tmp_path / "t.jsonl")])
    assert main(["simulate", "--trace", str(tmp_path / "t.jsonl"), "--policy", "atlas", "--engines", "2",
                 "--balancer", "round-robin", "--json", "--no-progress", "--preemption", "swap"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["engines"] == 2 and out["balancer"] == "round-robin" and out["completed"] == 3


def test_simulate_bad_trace_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"program_id": "a", "arrival": 0, "calls": [{"call_id": "c", "prompt_tokens": 5, '
                   '"output_tokens": 1}]}\n{"program_id": "b", "arrival": 1, "calls": [{"call_id": "c", '
                   '"prompt_tokens": -5, "output_tokens": 1}]}\n')
    assert main(["simulate", "--trace", str(bad), "--policy", "fcfs", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "calls[0].prompt_tokens" in err and "Traceback" not in err


def test_simulate_needs_a_source():
    with pytest.raises(SystemExit):
        main(["simulate", "--policy", "fcfs"])
    with pytest.raises(SystemExit):
        main(["simulate", "--policy", "nope", "--workload", "bfcl", "--rate", "1", "--programs", "1"])


def test_sweep_writes_json_markdown_and_png(tmp_path, capsys):
    assert main(["sweep", "--workloads", "sharegpt", "--policies", "fcfs,mlfq,plas,srpt", "--rates", "1,4,12",
                 "--programs", "40", "--out", str(tmp_path), "--name", "s", "--quiet", "--max-running", "16"]) == 0
    data = json.loads((tmp_path / "s.json").read_text())
    assert len(data["points"]) == 12
    assert {r["series"] for r in data["throughput"]} == {"fcfs", "mlfq", "plas", "srpt"}
    md = (tmp_path / "s.md").read_text()
    assert "| sharegpt |" in md and "vs fcfs" in md and "vs mlfq" in md
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_crossing_rate_interpolates():
    assert crossing_rate([(1, 1.0), (2, 2.0), (3, 4.0)], 3.0) == (2.5, True)
    assert crossing_rate([(1, 1.0), (2, 2.0)], 3.0) == (2, False)
    assert crossing_rate([(1, 5.0), (2, 6.0)], 3.0) == (1, False)
    assert crossing_rate([(1, 1.0), (2, float("inf"))], 3.0) == (1, True)


def test_throughput_table_ratios():
    pts = []
    for s, lat in (("fcfs", [1.0, 3.0, 9.0]), ("mlfq", [1.0, 2.0, 6.0]), ("plas", [1.0, 1.5, 1.8])):
        for rate, l in zip((1.0, 2.0, 3.0), lat):
            pts.append({"workload": "w", "series": s, "rate": rate, "mean_token_latency": l, "stopped_early": False,
                        "completed": 1, "programs": 1})
    rows = {r["series"]: r for r in throughput_table(pts, slos=(2.0,))}
    assert rows["fcfs"]["throughput"] == pytest.approx(1.5)
    assert rows["mlfq"]["throughput"] == pytest.approx(2.0)
    assert rows["plas"]["throughput"] == pytest.approx(3.0) and not rows["plas"]["exact"]
    assert rows["plas"]["vs_fcfs"] == pytest.approx(2.0) and rows["plas"]["vs_mlfq"] == pytest.approx(1.5)


def test_sweep_duration_sets_programs_per_point(tmp_path):
    assert main(["sweep", "--workloads", "bfcl", "--policies", "fcfs", "--rates", "1,30", "--duration", "4",
                 "--out", str(tmp_path), "--name", "d", "--quiet", "--no-plot"]) == 0
    data = json.loads((tmp_path / "d.json").read_text())
    assert sorted(p["programs"] for p in data["points"]) == [50, 120]


def test_sweep_queue_boundaries_go_to_the_multi_queue_policies_only(tmp_path):
    # fcfs has one queue (the core rejects boundaries for it); srpt takes no options
    assert main(["sweep", "--workloads", "sharegpt", "--policies", "fcfs,plas,srpt", "--rates", "2",
                 "--programs", "10", "--queue-boundaries", "0.1,0.2,0.4", "--starvation-ratio", "inf",
                 "--out", str(tmp_path), "--name", "b", "--quiet", "--no-plot"]) == 0
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["meta"]["scheduler_options"]["queue_boundaries"] == [0.1, 0.2, 0.4]
    assert {p["series"]: p["completed"] for p in data["points"]} == {"fcfs": 10, "plas": 10, "srpt": 10}


def test_simulate_without_chunked_prefill(capsys):
    args = ["simulate", "--workload", "bfcl", "--rate", "2", "--programs", "10", "--policy", "fcfs", "--json",
            "--no-progress", "--no-prefix-cache"]
    assert main(args) == 0
    chunked = json.loads(capsys.readouterr().out)
    assert main([*args, "--no-chunked-prefill"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["completed"] == chunked["completed"] == 10
    assert whole["output_tokens"] == chunked["output_tokens"]
    assert whole["engine_steps"] > chunked["engine_steps"]  # prefill steps no longer carry decode tokens


# Two calls of 100 decode steps each: ~0.8 s of simulated time on the A100 preset. In work units they
# pass the first boundary (64 units) and are demoted; in seconds they stay under the core's 1 s boundary.
TWO_CALLS = (
    '{"program_id": "a", "arrival": 0, "calls": [{"call_id": "c", "prompt_tokens": 16, "output_tokens": 100}]}\n'
    '{"program_id": "b", "arrival": 0.01, "calls": [{"call_id": "c", "prompt_tokens": 16, "output_tokens": 100}]}\n'
)


@pytest.fixture
def seen_engines(monkeypatch):
    """Records, for every simulation run, each engine's clock, its core's queue boundaries and the core's
    demotions."""
    from autellix.sim.simulator import Simulator

    seen = []
    run = Simulator.run

    def recording_run(self, *args, **kwargs):
        res = run(self, *args, **kwargs)
        seen.append([(e.clock, tuple(getattr(e.sched, "queue_boundaries", ())),
                      e.sched.stats()["demotions"] if hasattr(e.sched, "stats") else None) for e in self.engines])
        return res

    monkeypatch.setattr(Simulator, "run", recording_run)
    return seen


def test_simulate_clock_reaches_the_engines(tmp_path, capsys, seen_engines):
    trace = tmp_path / "t.jsonl"
    trace.write_text(TWO_CALLS)
    base = ["simulate", "--trace", str(trace), "--policy", "plas", "--json", "--no-progress"]
    assert main(base) == 0  # default: work units, the plug-in's ladder
    work = json.loads(capsys.readouterr().out)
    assert main([*base, "--clock", "seconds"]) == 0
    seconds = json.loads(capsys.readouterr().out)
    assert main([*base, "--clock", "work", "--queue-boundaries", "500,1000"]) == 0
    capsys.readouterr()
    # Each 100-token call is demoted once: after its first queue's quantum, the 64-unit floor.
    assert seen_engines == [[("work", tuple(work_units.QUEUE_BOUNDARIES), 2)],
                            [("seconds", (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0), 0)],
                            [("work", (500.0, 1000.0), 0)]]
    assert work["clock"] == "work" and seconds["clock"] == "seconds"
    assert work["completed"] == seconds["completed"] == 2
    with pytest.raises(SystemExit):
        main([*base, "--clock", "minutes"])


def test_sweep_clock_reaches_the_engines_and_the_outputs(tmp_path, seen_engines):
    args = ["sweep", "--workloads", "sharegpt", "--policies", "fcfs,plas", "--rates", "2", "--programs", "5",
            "--out", str(tmp_path), "--quiet", "--no-plot"]
    assert main([*args, "--name", "w"]) == 0
    assert main([*args, "--name", "s", "--clock", "seconds"]) == 0
    clocks = [[(clock, bounds) for clock, bounds, _ in engines] for engines in seen_engines]
    assert clocks == [[("work", ())], [("work", tuple(work_units.QUEUE_BOUNDARIES))],
                      [("seconds", ())], [("seconds", (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0))]]
    for name, clock in (("w", "work"), ("s", "seconds")):
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["meta"]["clock"] == clock
        assert {p["clock"] for p in data["points"]} == {clock}
        assert f'- clock: `"{clock}"`' in (tmp_path / f"{name}.md").read_text()
