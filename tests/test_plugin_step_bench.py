"""bench/plugin_step.py on a tiny configuration: both schedulers really serve the same calls."""

from __future__ import annotations

import pytest
from bench_modules import load_bench

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

pytest.importorskip("autellix_core")
pytest.importorskip("vllm")

bench = load_bench("plugin_step")

BATCH, QUEUED, STEPS = 4, 8, 12
CALLS = 40  # the first B + Q, then one arrival for each finish until 40 arrived
# Short calls, so that some finish (and new ones arrive) within the timed steps.
CONFIG = bench.Config(batch=BATCH, queued=QUEUED, programs=3, output_tokens=(2, 6))


def _stream():
    return bench.CallStream(CONFIG, seed=1, vocab_size=bench._vocab_size())


def _specs(count: int) -> list:
    stream = _stream()
    return [stream[i] for i in range(count)]


@pytest.fixture(scope="module")
def runs():
    stream = _stream()
    return {
        kind: bench.run_once(
            kind,
            CONFIG,
            stream,
            warmup_steps=4,
            steps=STEPS,
            drain=True,
            max_calls=CALLS,
        )
        for kind in bench.KINDS
    }


def test_both_schedulers_finish_the_same_calls(runs):
    vllm, autellix = runs["vllm"], runs["autellix"]
    assert type(vllm.scheduler).__name__ == "Scheduler"
    assert type(autellix.scheduler).__name__ == "AutellixScheduler"
    # The same call sequence: its first CALLS calls arrived, and every one of them finished
    # once, whatever order each scheduler served them in.
    expected = {stream_spec.request_id for stream_spec in _specs(CALLS)}
    for run in (vllm, autellix):
        assert run.added == CALLS
        assert len(run.finished) == len(set(run.finished)) == CALLS
        assert set(run.finished) == expected
        assert len(run.samples_ns) == len(run.running) == STEPS
        assert len(run.scheduler.requests) == 0
    # Calls arrived during the timed steps (each as a live one finished), not only at the start.
    assert vllm.measured_finished > 0 and autellix.measured_finished > 0


def test_each_step_schedules_at_most_the_batch(runs):
    for run in runs.values():
        assert run.scheduled and max(run.scheduled) <= BATCH
        assert max(run.running) <= BATCH
        # The batch was full at some point while calls waited.
        assert max(run.scheduled) == BATCH


def test_autellix_core_has_no_calls_left(runs):
    scheduler = runs["autellix"].scheduler
    assert len(scheduler.requests) == 0
    # The core hears of the last finishes at the next step; the snapshot tells it at once.
    snapshot = scheduler.autellix_snapshot([])
    assert snapshot["num_running"] == 0
    assert snapshot["num_waiting"] == 0
    assert snapshot["engine_requests"] == 0
    plugin = runs["autellix"].plugin  # autellix_stats over the timed steps
    if "steps" in plugin:
        assert plugin["steps"] == STEPS


def test_own_time_runs_time_every_hook_and_leave_vllm_unpatched():
    from vllm.v1.core.sched.scheduler import Scheduler

    originals = {name: vars(Scheduler)[name] for name in ("schedule", "update_from_output", "add_request")}
    own = bench.own_time_run(CONFIG, _stream(), warmup_steps=4, steps=STEPS, runs=1)
    assert {name: vars(Scheduler)[name] for name in originals} == originals
    per_step = own["own_us_per_step"]
    assert set(per_step) == {"schedule", "add_request", "total", "median_step"}
    # Every step runs the plug-in's schedule() around vLLM's, and calls arrive.
    assert per_step["schedule"] > 0 and per_step["add_request"] > 0 and per_step["median_step"] > 0
    assert own["timer_ns"] > 0


def test_a_request_id_freed_and_given_again_before_the_next_step_is_a_new_call():
    """The plug-in hears of frees from vLLM's record of them at its next step; a new request
    reusing the id of one freed since then is still a call of its own."""
    scheduler = bench.make_scheduler("autellix", CONFIG)
    spec = _specs(1)[0]
    scheduler.add_request(bench.make_request(spec, CONFIG.block_size))
    first_call = scheduler.call_id(spec.request_id)
    while scheduler.get_num_unfinished_requests():
        output = scheduler.schedule()
        scheduler.update_from_output(output, bench.model_output(scheduler, output))
    assert spec.request_id in scheduler.finished_req_ids  # freed since vLLM's last step
    scheduler.add_request(bench.make_request(spec, CONFIG.block_size))
    assert scheduler.call_id(spec.request_id) not in (None, first_call)
    output = scheduler.schedule()
    assert list(output.num_scheduled_tokens) == [spec.request_id]
    assert scheduler.core.num_running == 1 and scheduler.core.stats()["finished"] == 1


def test_an_id_given_again_after_a_snapshot_caught_up_on_its_free_is_still_a_new_call():
    """A snapshot applies vLLM's record of freed requests early; the same record is read again at
    the next step, where the id now names a live request."""
    scheduler = bench.make_scheduler("autellix", CONFIG)
    spec = _specs(1)[0]
    scheduler.add_request(bench.make_request(spec, CONFIG.block_size))
    while scheduler.get_num_unfinished_requests():
        output = scheduler.schedule()
        scheduler.update_from_output(output, bench.model_output(scheduler, output))
    assert scheduler.autellix_snapshot([])["num_running"] == 0  # the free, heard of early
    scheduler.add_request(bench.make_request(spec, CONFIG.block_size))
    output = scheduler.schedule()
    assert list(output.num_scheduled_tokens) == [spec.request_id]
    assert scheduler.core.num_running == 1 and scheduler.core.stats()["finished"] == 1


def test_the_hook_floor_overrides_what_the_plugin_overrides():
    """The floor's own time is comparable only if it pays for the same hooks."""
    plugin = bench.plugin_class(bench.DEFAULT_PLUGIN)
    floor = bench.plugin_class(bench.HOOK_FLOOR_PLUGIN)
    assert bench.overridden_hooks(floor) == bench.overridden_hooks(plugin) == ["add_request", "schedule"]
