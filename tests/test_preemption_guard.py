"""The preemption cost guard's rule (`autellix_core.PreemptionGuard`, the plug-in's own in Rust), on
numbers the test chooses (the engine-level scenario is in test_vllm_scheduler.py)."""

from __future__ import annotations

import pytest

from autellix_core import PreemptionGuard, recompute_tokens

from autellix.work_units import PREFILL_TOKENS_PER_UNIT as P


def test_recompute_is_the_partial_block_when_cached_else_everything():
    assert recompute_tokens(100, block_size=32, cached=True) == 4
    assert recompute_tokens(96, block_size=32, cached=True) == 0
    assert recompute_tokens(100, block_size=32, cached=False) == 100


def test_nothing_is_protected_before_a_slot_wait_was_measured():
    guard = PreemptionGuard(P)
    assert guard.protected([(1, 10_000)], block_size=32, cached=False) == []
    guard.observe_completions(1, 10.0, batch_full=True)  # the first completion: no interval yet
    assert guard.slot_wait is None


def test_a_preemption_that_does_not_pay_is_skipped_and_one_that_pays_is_not():
    guard = PreemptionGuard(P)
    guard.observe_completions(1, 10.0, batch_full=True)
    guard.observe_completions(1, 14.0, batch_full=True)  # a slot frees every 4 units
    assert guard.slot_wait == pytest.approx(4.0)
    cheap, dear = (1, 4 * P - 1), (2, 4 * P + 1)  # recompute just under / over 4 units
    assert guard.protected([cheap, dear], block_size=1 << 20, cached=False) == [2]
    # With the prefix cache only the partial block is recomputed: nothing is dear.
    assert guard.protected([cheap, dear], block_size=32, cached=True) == []


def test_the_wait_is_a_running_mean_of_full_batch_intervals():
    guard = PreemptionGuard(P)
    guard.observe_completions(1, 0.0, batch_full=True)
    guard.observe_completions(2, 8.0, batch_full=True)  # two slots in 8 units: 4 each
    assert guard.slot_wait == pytest.approx(4.0)
    guard.observe_completions(1, 100.0, batch_full=False)  # idle slots: not a wait for a slot
    assert guard.slot_wait == pytest.approx(4.0)
    for t in range(101, 400):  # a slot every unit: the mean moves toward 1 and stays bounded
        guard.observe_completions(1, float(t), batch_full=True)
    assert 1.0 <= guard.slot_wait < 1.1


def test_a_disabled_guard_protects_nothing():
    guard = PreemptionGuard(P, enabled=False)
    guard.observe_completions(1, 0.0, batch_full=True)
    guard.observe_completions(1, 1.0, batch_full=True)
    assert guard.protected([(1, 10_000)], block_size=32, cached=False) == []


def test_the_pass_over_the_batch_is_skipped_only_when_nothing_could_be_protected():
    guard = PreemptionGuard(P)
    assert not guard.may_protect(block_size=32, cached=False)  # no wait measured yet
    guard.observe_completions(1, 10.0, batch_full=True)
    guard.observe_completions(1, 10.0 + 31 / P, batch_full=True)  # a slot frees every 31 tokens' worth
    assert not guard.may_protect(block_size=32, cached=True)  # a partial block recomputes <= 31
    assert guard.may_protect(block_size=64, cached=True)
    assert guard.may_protect(block_size=32, cached=False)
    assert guard.protected([(1, 63)], block_size=64, cached=True) == [1]  # 63 > 31: protected
