"""The front end's Prometheus metrics, kept with prometheus_client.

Every app gets its own `FrontEndMetrics` and so its own `CollectorRegistry`: two apps in one
process never share counters. Names follow vLLM's style, ours prefixed `autellix:`.

What the front end counts itself lives in that registry (counters and histograms, updated through
the small method API below). What it can only learn at scrape time (the engines' scheduler
snapshots, the balancer's loads, the program and call tables) is handed to `render`, which wraps
it in a one-scrape collector: the snapshot fetch is async, collectors are sync, so the handler
fetches first and renders after, and no scrape's numbers outlive it.

vLLM's stat loggers register their `vllm:*` metrics in prometheus_client's global REGISTRY in this
process (the AsyncLLM front end records them, unless the engines run with `disable_log_stats`);
`render` appends those families, skipping any name already written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("autellix.server")

# Seconds: from a fast call on the tiny model to a long agent program.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)

# The classic text format: what prometheus_client writes for a scraper that asks for nothing else.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PREFIX = "autellix:"
VLLM_PREFIX = "vllm:"


class FrontEndMetrics:
    """What the HTTP front end counts, in a registry of its own, and the /metrics text.

    `vllm_registry` is where vLLM's metrics are read from (prometheus_client's global REGISTRY;
    None leaves them out).
    """

    def __init__(self, vllm_registry: Collector | None = REGISTRY) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.vllm_registry = vllm_registry
        r = self.registry
        self._calls = Counter(
            "autellix:calls", "Calls by outcome: finished, aborted, failed, rejected.", ["status"], registry=r
        )
        # Every duration histogram has the same buckets, in this app's registry.
        def seconds(name: str, help_text: str) -> Histogram:
            return Histogram(name, help_text, buckets=LATENCY_BUCKETS, registry=r)

        self._call_latency = seconds("autellix:call_latency_seconds", "Call arrival to finish.")
        self._programs_started = Counter(
            "autellix:programs_started", "Programs started (one-call programs included).", registry=r
        )
        self._program_waiting = seconds(
            "autellix:program_waiting_seconds",
            "Time a program's calls spent before their first output (queueing and prefill), at program end.",
        )
        self._program_service = seconds(
            "autellix:program_service_seconds", "Time a program's calls spent from first output to finish, at program end."
        )
        self._program_latency = seconds(
            "autellix:program_latency_seconds", "First call arrival to last call finish, at program end."
        )
        self._placements = Counter(
            "autellix:placements", "Calls the load balancer placed on each engine.", ["engine"], registry=r
        )

    # -- what the rest of the server reports -------------------------------------------------

    def call_ended(self, status: str, latency_s: float) -> None:
        """A call finished, was aborted or failed (`status`), `latency_s` after it arrived."""
        self._calls.labels(status=status).inc()
        self._call_latency.observe(latency_s)

    def call_rejected(self) -> None:
        """A call refused at admission (overload): counted, no latency."""
        self._calls.labels(status="rejected").inc()

    def program_started(self) -> None:
        self._programs_started.inc()

    def program_ended(self, waiting_s: float, service_s: float, latency_s: float | None) -> None:
        """A program ended; `latency_s` is None when it never finished a call."""
        self._program_waiting.observe(waiting_s)
        self._program_service.observe(service_s)
        if latency_s is not None:
            self._program_latency.observe(latency_s)

    def placed(self, engine: int) -> None:
        """The load balancer put a call on `engine`."""
        self._placements.labels(engine=str(engine)).inc()

    # -- the /metrics answer -----------------------------------------------------------------

    def render(
        self,
        snapshots: Sequence[Mapping[str, Any] | None],
        loads: Sequence[int],
        programs_active: int,
        calls_outstanding: int,
        engines_down: Sequence[int] = (),
    ) -> tuple[bytes, str]:
        """The exposition text and its content type: this app's counters and histograms, the
        scrape-time gauges and engine families, then vLLM's `vllm:*` families."""
        scrape = ScrapeCollector(snapshots, loads, programs_active, calls_outstanding, engines_down)
        return generate_latest(_Exposition(self.registry, scrape, self.vllm_registry)), CONTENT_TYPE


class ScrapeCollector(Collector):
    """The numbers of one scrape: the front end's gauges and, per engine, what its scheduler
    snapshot says (`autellix_snapshot` in autellix/vllm/scheduler.py). A None snapshot (vLLM's
    own scheduler, or an engine that did not answer) gives the balancer's count as the running
    calls, zero counters, and no queues."""

    def __init__(
        self,
        snapshots: Sequence[Mapping[str, Any] | None],
        loads: Sequence[int],
        programs_active: int,
        calls_outstanding: int,
        engines_down: Sequence[int] = (),
    ) -> None:
        self.engines_down = set(engines_down)
        self.snapshots = list(snapshots)
        self.loads = list(loads)
        self.programs_active = programs_active
        self.calls_outstanding = calls_outstanding

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("autellix:programs_active", "Programs started and not yet ended.", value=self.programs_active)
        yield GaugeMetricFamily(
            "autellix:calls_outstanding", "Calls admitted and not yet finished.", value=self.calls_outstanding
        )
        queue_depth = GaugeMetricFamily(
            "autellix:queue_depth", "Calls waiting in each scheduler queue (0 = most urgent).", labels=["engine", "queue"]
        )
        running = GaugeMetricFamily("autellix:running_calls", "Calls running on each engine.", labels=["engine"])
        preemptions = CounterMetricFamily(
            "autellix:preemptions", "Priority preemptions the scheduler decided.", labels=["engine"]
        )
        promotions = CounterMetricFamily(
            "autellix:starvation_promotions", "Calls promoted by the anti-starvation rule.", labels=["engine"]
        )
        up = GaugeMetricFamily("autellix:engine_up", "1 while an engine replica takes calls, 0 while it is down.", labels=["engine"])
        for index, snapshot in enumerate(self.snapshots):
            engine = str(index)
            up.add_metric([engine], 0 if index in self.engines_down else 1)
            if not snapshot:
                running.add_metric([engine], self.loads[index] if index < len(self.loads) else 0)
                preemptions.add_metric([engine], 0)
                promotions.add_metric([engine], 0)
                continue
            for queue, depth in enumerate(snapshot.get("queue_lengths") or ()):
                queue_depth.add_metric([engine, str(queue)], depth)
            running.add_metric([engine], snapshot.get("num_running", 0))
            stats = snapshot.get("stats") or {}
            preemptions.add_metric([engine], stats.get("preemptions", 0))
            promotions.add_metric([engine], stats.get("promotions", 0))
        yield from (up, queue_depth, running, preemptions, promotions)


class _Exposition(Collector):
    """One scrape's families in order, each name once: ours (without prometheus_client's
    `_created` series), then the `vllm:*` families of the global registry."""

    def __init__(self, registry: CollectorRegistry, scrape: Collector, vllm_registry: Collector | None) -> None:
        self.registry = registry
        self.scrape = scrape
        self.vllm_registry = vllm_registry

    def collect(self) -> Iterator[Metric]:
        seen: set[str] = set()
        for metric in (*self.registry.collect(), *self.scrape.collect()):
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            seen.add(metric.name)
            yield metric
        if self.vllm_registry is None:
            return
        try:
            vllm = [m for m in self.vllm_registry.collect() if m.name.startswith(VLLM_PREFIX)]
        except Exception:  # a broken collector of someone else's must not take /metrics down
            log.warning("collecting vLLM's metrics failed", exc_info=True)
            return
        for metric in vllm:
            if metric.name not in seen:
                seen.add(metric.name)
                yield metric
