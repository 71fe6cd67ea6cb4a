"""Prometheus text exposition (format 0.0.4), written by hand: counters, gauges, histograms.

The front end owns its counters and histograms; engine-side numbers (queue depths, preemptions)
are read from the schedulers' snapshots when /metrics is scraped and rendered as gauges/counters
with `Sample` rows.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Seconds: from a fast call on the tiny model to a long agent program.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Sequence[tuple[str, str]]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True)
class Sample:
    labels: tuple[tuple[str, str], ...]
    value: float


class Family:
    """A metric family: a name, a type, help text and labelled samples."""

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name = name
        self.kind = kind
        self.help = help_text

    def samples(self) -> Iterable[str]:
        return ()

    def render(self) -> str:
        head = f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(self.samples())


class Counter(Family):
    def __init__(self, name: str, help_text: str, label: str | None = None) -> None:
        super().__init__(name, "counter", help_text)
        self.label = label
        self.values: dict[str, float] = defaultdict(float)

    def inc(self, label_value: str = "", amount: float = 1.0) -> None:
        self.values[label_value] += amount

    def samples(self) -> Iterable[str]:
        for value_label, value in sorted(self.values.items()):
            labels = ((self.label, value_label),) if self.label else ()
            yield f"{self.name}{_labels(labels)} {_number(value)}\n"


class Histogram(Family):
    def __init__(self, name: str, help_text: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        super().__init__(name, "histogram", help_text)
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def samples(self) -> Iterable[str]:
        running = 0
        for bound, n in zip((*self.bounds, math.inf), self.counts):
            running += n
            yield f'{self.name}_bucket{{le="{_number(bound)}"}} {running}\n'
        yield f"{self.name}_sum {_number(self.sum)}\n"
        yield f"{self.name}_count {self.count}\n"


class Snapshot(Family):
    """A family whose samples are computed at scrape time (gauges, or counters kept elsewhere)."""

    def __init__(self, name: str, kind: str, help_text: str, rows: Iterable[Sample]) -> None:
        super().__init__(name, kind, help_text)
        self.rows = list(rows)

    def samples(self) -> Iterable[str]:
        for row in self.rows:
            yield f"{self.name}{_labels(row.labels)} {_number(row.value)}\n"


class FrontEndMetrics:
    """What the HTTP front end counts itself."""

    def __init__(self) -> None:
        self.programs_total = Counter("autellix_programs_total", "Programs started (one-call programs included).")
        self.calls_total = Counter(
            "autellix_calls_total", "Calls by outcome: finished, aborted, failed, rejected.", label="status"
        )
        self.placements = Counter(
            "autellix_balancer_placements_total", "Calls the load balancer placed on each engine.", label="engine"
        )
        self.program_waiting = Histogram(
            "autellix_program_waiting_seconds", "Time a program's calls spent before their first output (queueing and prefill), at program end."
        )
        self.program_service = Histogram(
            "autellix_program_service_seconds", "Time a program's calls spent from first output to finish, at program end."
        )
        self.program_latency = Histogram(
            "autellix_program_latency_seconds", "First call arrival to last call finish, at program end."
        )
        self.call_latency = Histogram("autellix_call_latency_seconds", "Call arrival to finish.")

    def families(self) -> list[Family]:
        return [
            self.programs_total,
            self.calls_total,
            self.placements,
            self.program_waiting,
            self.program_service,
            self.program_latency,
            self.call_latency,
        ]


def render(families: Iterable[Family]) -> str:
    return "".join(f.render() for f in families)
