"""bench/engine_programs.py --quick on real vLLM engines (tiny model, CPU): the output's shape, and
every program finished with exactly the tokens it asked for. No mocks, no timing asserts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autellix import work_units

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)  # two engine starts; slow when the cores are shared
def test_quick_engine_bench(tmp_path):
    # --rates given: no calibration, both engines start side by side.
    cmd = [sys.executable, str(ROOT / "bench" / "engine_programs.py"), "--quick", "--schedulers", "vllm,plas",
           "--programs", "3", "--rates", "4", "--out", str(tmp_path), "--name", "t"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=880)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads((tmp_path / "t.json").read_text())
    assert (tmp_path / "t.md").read_text().startswith("# Engine bench `t`")
    assert (tmp_path / "t.png").stat().st_size > 0
    # Autellix runs on the plug-in's defaults: the bench sets no ladder of its own.
    assert doc["meta"]["autellix"]["queue_boundaries_units"] == list(work_units.QUEUE_BOUNDARIES)
    assert {p["series"] for p in doc["points"]} == {"vllm", "plas"}
    assert len(doc["seed_points"]) == 2
    for point in doc["seed_points"]:
        assert point["workload"] == "mixed" and point["rate"] == 4.0
        assert point["completed"] == point["programs"] == 3
        assert point["exact_tokens"] is True
        assert point["program_tokens"] and all(asked == got and finished
                                               for asked, got, finished in point["program_tokens"])
        for key in ("mean_latency", "p95_latency", "mean_token_latency", "throughput"):
            assert isinstance(point[key], float) and point[key] > 0
    plas = next(p for p in doc["seed_points"] if p["series"] == "plas")
    assert plas["steps"] > 0 and 0 < plas["scheduler_share"] < 1
    assert {r["series"] for r in doc["throughput"]} == {"vllm", "plas"}
    assert all("vs_vllm" in r for r in doc["throughput"])
    assert set(doc["overhead"]) == {"plas"}
