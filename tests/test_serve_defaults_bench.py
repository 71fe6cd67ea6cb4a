"""bench/serve_defaults.py's summary: medians over seeds, ratios against vLLM in the same run."""

from __future__ import annotations

import pytest
from bench_modules import load_bench

bench = load_bench("serve_defaults")


def report(token_latency: float, p95: float, completed: int = 48, errors: int = 0) -> dict:
    return {
        "token_latency_mean": token_latency,
        "latency_mean": p95 / 2,
        "latency_p95": p95,
        "throughput_programs_per_s": 1 / token_latency,
        "completed": completed,
        "call_errors": errors,
        "preemptions": 10.0,
        "promotions": 1.0,
    }


def test_rows_take_the_median_of_the_seeds_and_divide_by_vllm_at_the_same_rate():
    points = [
        {"series": "autellix", "rate": 5.0, "seed": s, "report": report(t, 2.0, completed=c)}
        for s, t, c in [(0, 0.010, 48), (1, 0.020, 47), (2, 0.030, 48)]
    ] + [
        {"series": "vllm", "rate": 5.0, "seed": s, "report": report(t, 4.0, errors=1)}
        for s, t in [(0, 0.040), (1, 0.050), (2, 0.060)]
    ]
    (row,) = bench.summarise(points)
    assert row["autellix"]["token_latency_mean"] == 0.020
    assert row["vllm"]["token_latency_mean"] == 0.050
    assert row["autellix_over_vllm"]["token_latency_mean"] == pytest.approx(0.4)
    assert row["autellix_over_vllm"]["latency_p95"] == pytest.approx(0.5)
    assert row["autellix"]["completed"] == 47  # the worst seed's
    assert row["vllm"]["call_errors"] == 3
    lines = bench.table([row], programs=48, seeds=[0, 1, 2]).splitlines()
    header, rule, body = lines[-3:]
    assert header.count("|") == rule.count("|") == body.count("|")
    assert "20.00 / 50.00 (0.40x)" in body
    assert "47 / 48 of 48" in body
    assert body.endswith("| 10 / 1 |")


def test_runs_merge_into_one_table_over_all_their_seeds(tmp_path, capsys):
    import json

    def run(seed: int, autellix: float) -> dict:
        return {"points": [{"series": "autellix", "rate": 3.0, "seed": seed, "report": report(autellix, 2.0)},
                           {"series": "vllm", "rate": 3.0, "seed": seed, "report": report(0.040, 4.0)}]}  # fmt: skip

    paths = []
    for seed, latency in [(0, 0.010), (1, 0.030), (2, 0.020)]:
        paths.append(tmp_path / f"run{seed}.json")
        paths[-1].write_text(json.dumps(run(seed, latency)))
    assert bench.main(["--merge", *map(str, paths), "--call-fraction", "0.25", "--programs", "48", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "seeds [0, 1, 2]" in out and "--call-fraction 0.25" in out and "--max-calls" not in out
    assert "| 3 | 20.00 / 40.00 (0.50x) |" in out
