"""Preemption that pays for itself: which running calls the core must not preempt this step.

vLLM preempts by recompute: a preempted call's KV blocks are freed and its context is prefilled
again when it resumes, less what the prefix cache still holds (its full blocks, unless the cache
is short of room and evicts them). That work delays every call in the batch. Preempting is worth
it only when it costs less than waiting for a slot to free up on its own, so a running call whose
recompute takes more engine work than the expected wait for the next free slot is protected.

The expected wait is measured, not configured: the engine work between call completions while
the batch is full (a running mean), so it fits whatever engine and load the plug-in runs on.
Before the first measurement nothing is protected.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from autellix.work_units import PREFILL_TOKENS_PER_UNIT

CallKey = TypeVar("CallKey", bound=Hashable)  # a call id or a request id

# Weight of the newest interval in the running mean: about the last 16 completions count.
SMOOTHING = 1 / 16


def recompute_tokens(computed_tokens: int, block_size: int, cached: bool) -> int:
    """Tokens a call preempted now would prefill again: the partial last block if the prefix
    cache keeps its full blocks, else all of them."""
    return computed_tokens % block_size if cached else computed_tokens


@dataclass
class PreemptionGuard:
    enabled: bool = True
    slot_wait: float | None = None  # mean engine work between completions while full
    _last_completion: float | None = None

    def may_protect(self, block_size: int, cached: bool) -> bool:
        """Whether any call could be protected now: not when every recompute is a partial block
        (cached) that costs less than the wait, so the caller can skip its pass over the batch."""
        if self.slot_wait is None or not self.enabled:
            return False
        return not cached or block_size - 1 > self.slot_wait * PREFILL_TOKENS_PER_UNIT

    def observe_completions(self, count: int, work_clock: float, batch_full: bool) -> None:
        """`count` calls finished at `work_clock`; intervals count only while the batch was
        full (an idle slot frees nothing)."""
        if count <= 0:
            return
        if batch_full and self._last_completion is not None:
            interval = max(work_clock - self._last_completion, 0.0) / count
            self.slot_wait = interval if self.slot_wait is None else self.slot_wait + SMOOTHING * (interval - self.slot_wait)
        self._last_completion = work_clock

    def protected(self, running: Iterable[tuple[CallKey, int]], block_size: int, cached: bool) -> list[CallKey]:
        """The calls among `running` (id, computed tokens) whose recompute costs more engine
        work than waiting for the next free slot."""
        if self.slot_wait is None or not self.enabled:
            return []
        limit = self.slot_wait * PREFILL_TOKENS_PER_UNIT  # in tokens
        return [call for call, computed in running if recompute_tokens(computed, block_size, cached) > limit]
