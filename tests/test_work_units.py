"""The engine work clock the scheduler runs on (autellix.work_units)."""

from __future__ import annotations

import pytest

from autellix import work_units


def test_a_decode_step_is_one_unit_whatever_the_batch():
    assert work_units.step_units(scheduled_tokens=1, scheduled_calls=1) == 1.0
    assert work_units.step_units(scheduled_tokens=64, scheduled_calls=64) == 1.0


def test_prefill_tokens_add_work_in_proportion():
    per = work_units.PREFILL_TOKENS_PER_UNIT
    # One call prefilling a 2*per+1 token prompt (its last token is the step's decode token).
    assert work_units.step_units(2 * per + 1, 1) == pytest.approx(3.0)
    # Decoders beside it add nothing: the step lasts as long for all of them.
    assert work_units.step_units(2 * per + 1 + 7, 8) == pytest.approx(3.0)


def test_the_default_ladder_is_a_valid_core_configuration():
    import autellix_core

    core = autellix_core.Scheduler(policy="plas", **work_units.core_defaults())
    assert core.queue_boundaries == list(work_units.QUEUE_BOUNDARIES)
    assert core.quanta == list(work_units.QUANTA)
    assert core.num_queues == len(work_units.QUEUE_BOUNDARIES) + 1
    # Quanta are the width of each queue's range, at least the floor (the last repeats the widest).
    bounds = [0.0, *work_units.QUEUE_BOUNDARIES]
    widths = [hi - lo for lo, hi in zip(bounds, bounds[1:])]
    assert list(work_units.QUANTA[:-1]) == [max(w, work_units.MIN_QUANTUM) for w in widths]
    assert work_units.QUANTA[-1] == max(widths)
