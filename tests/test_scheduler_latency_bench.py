"""bench/scheduler_latency.py's call-by-call run against a baseline build of the core."""

from __future__ import annotations

import shutil

import autellix_core
import autellix_core._core
from bench_modules import load_bench

bench = load_bench("scheduler_latency")


def test_a_baseline_build_runs_in_turns_with_this_one_and_is_reported_beside_it(tmp_path):
    # A copy of this build stands in for an older one: loaded from another file it is a module of
    # its own, with its own scheduler type.
    copy = tmp_path / "_core.abi3.so"
    shutil.copy(autellix_core._core.__file__, copy)
    baseline = bench.load_baseline_core(copy)
    assert baseline.Scheduler is not autellix_core.Scheduler
    config = bench.Config(queued=50, programs=5, policy="plas", batch=8, churn=2, ran="list")
    row = bench.run_call_by_call(config, repeats=3, steps=20, baseline=baseline)
    assert row["baseline_core"]["runs"] == row["rust"]["runs"] == 3
    assert row["vs_baseline_core"] > 0
    table = bench.call_by_call_table([row])
    assert "baseline core median (us)" in table.splitlines()[0]
    assert table.splitlines()[2].count("|") == table.splitlines()[0].count("|")


def test_without_a_baseline_the_table_has_no_baseline_columns():
    config = bench.Config(queued=50, programs=5, policy="plas", batch=8, churn=2, ran="list")
    row = bench.run_call_by_call(config, repeats=1, steps=10)
    assert "baseline_core" not in row
    assert "baseline" not in bench.call_by_call_table([row])
