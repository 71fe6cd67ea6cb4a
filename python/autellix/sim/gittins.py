"""The Gittins rank: the best a scheduler can do knowing only a program's attained work and the
distribution of programs' total work (simulator only).

For a program that has had `a` units of work, the rank is the least, over budgets d > 0, of

    E[min(S - a, d) | S > a] / P(S - a <= d | S > a)

the work it can expect to use per chance of finishing within the budget. Running the lowest rank
first minimises mean response time on one server among policies that do not know each job's size
(Gittins; Aalto, Ayesta and Righter 2009). It is least attained service when the distribution's
hazard rate falls, first come first served when it rises, and the rank is in units of work, so the
srpt oracle ranks by it as by remaining work. Measured beside plas and srpt, it bounds what any
non-clairvoyant ranking of programs could gain.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import numpy as np

__all__ = ["GittinsRank"]

MIN_ENDED = 128  # programs that must end within a budget for its ratio to count


class GittinsRank:
    """The rank under the empirical distribution of `totals` (each program's total work)."""

    def __init__(self, totals: Iterable[float]):
        self.totals = np.sort(np.asarray(list(totals), dtype=float))
        if self.totals.size == 0 or not np.all(np.isfinite(self.totals)) or self.totals[0] < 0:
            raise ValueError("the Gittins rank needs at least one finite total work >= 0")
        self.prefix = np.concatenate(([0.0], np.cumsum(self.totals)))
        self._memo: dict[float, float] = {}

    def __call__(self, attained: float) -> float:
        rank = self._memo.get(attained)
        if rank is None:
            rank = self._memo[attained] = self._rank(attained)
        return rank

    def _rank(self, attained: float) -> float:
        totals = self.totals
        first = bisect.bisect_right(totals, attained)  # the totals still possible
        left = totals.size - first
        if left == 0:
            return 0.0  # longer than every program seen: nothing says it has work left
        ends = totals[first:] - attained  # what each possible program has left
        # Budgets at which 1/256, 1/256 * 2^(1/4), ..., all of them have ended, and at least
        # MIN_ENDED: the least of every ratio the samples allow is biased low by their noise (it
        # picks the lucky ones), these few are not. Ties count as ended together.
        chances = np.unique(np.minimum(left, np.ceil(left * 2.0 ** -np.arange(0, 8.25, 0.25))))
        chances = chances[chances >= min(left, MIN_ENDED)].astype(int)
        last = np.searchsorted(ends, ends[chances - 1], side="right") - 1
        ended = last + 1
        budgets = ends[last]
        used = (self.prefix[first + ended] - self.prefix[first]) - attained * ended + (left - ended) * budgets
        return float(np.min(used / ended))
