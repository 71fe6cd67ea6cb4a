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


def test_the_ffi_floor_admits_into_the_free_capacity_and_decides_nothing_else():
    floor = autellix_core._core._NullScheduler()
    for call in range(5):
        floor.add_call(call, 0, 0.0)
    assert floor.schedule(0.0, 3).admit == [0, 1, 2]
    floor.record_service([0, 1, 2], 1.0, 1.0)
    floor.finish_call(1, 1.0)
    decision = floor.schedule(1.0, 3)
    assert (decision.admit, decision.preempt, decision.promoted) == ([3], [], [])
    assert floor.schedule(2.0, 3).admit == [], "the batch is full"


def test_the_call_by_call_row_reads_the_core_against_the_ffi_floor(tmp_path):
    config = bench.Config(queued=50, programs=5, policy="plas", batch=8, churn=2, ran="list")
    row = bench.run_call_by_call(config, repeats=1, steps=10)
    bench.plot_call_by_call([row], tmp_path / "call-by-call.png")
    assert (tmp_path / "call-by-call.png").stat().st_size > 0
    assert row["ffi_floor"]["runs"] == 1
    assert row["five_x_budget_us"] == row["plain_python"]["median_us"] / 5 - row["ffi_floor"]["median_us"]
    header = bench.call_by_call_table([row]).splitlines()[0]
    assert "FFI floor (us)" in header and "left for the core's work at 5x plain Python (us)" in header
