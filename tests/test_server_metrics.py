"""The front end's Prometheus metrics (autellix/server/metrics.py) and GET /metrics, without an
engine: fake scheduler snapshots, a fake driver, the output parsed by prometheus_client."""

from __future__ import annotations

import asyncio
import math
import warnings
from collections.abc import Iterator
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

# Importing the server package imports the engine driver, which may import vLLM (and torch):
# their import-time deprecation warnings are not this file's business.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from autellix.server.handlers import metrics as handler
    from autellix.server.metrics import CONTENT_TYPE, LATENCY_BUCKETS, FrontEndMetrics
    from autellix.server.state import CALLS, DRIVER, METRICS


def snapshot(queues: list[int], running: int, preemptions: int, promotions: int) -> dict[str, Any]:
    """Shaped like the plug-in's `autellix_snapshot` (autellix/vllm/scheduler.py)."""
    return {
        "policy": "plas",
        "queue_lengths": queues,
        "num_waiting": sum(queues),
        "num_running": running,
        "num_programs": 1,
        "stats": {"added": 3, "admitted": 2, "preemptions": preemptions, "promotions": promotions, "demotions": 0},
        "plugin": {},
        "programs": {},
    }


def families(text: bytes | str) -> dict[str, Metric]:
    parsed = text_string_to_metric_families(text.decode() if isinstance(text, bytes) else text)
    out: dict[str, Metric] = {}
    for family in parsed:
        assert family.name not in out, f"{family.name} twice"
        out[family.name] = family
    return out


def value(family: Metric, sample_name: str | None = None, **labels: str) -> float:
    name = sample_name or family.name
    found = [s.value for s in family.samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, family.samples)
    return found[0]


def scrape(
    metrics: FrontEndMetrics,
    snapshots: list[dict[str, Any] | None] | None = None,
    loads: list[int] | None = None,
    programs_active: int = 0,
    calls_outstanding: int = 0,
) -> dict[str, Metric]:
    body, content_type = metrics.render(snapshots or [], loads or [], programs_active, calls_outstanding)
    assert content_type == CONTENT_TYPE
    return families(body)


@pytest.fixture
def metrics() -> FrontEndMetrics:
    return FrontEndMetrics(vllm_registry=None)


def test_call_counts_by_status(metrics: FrontEndMetrics) -> None:
    metrics.call_ended("finished", 0.2)
    metrics.call_ended("finished", 0.3)
    metrics.call_ended("aborted", 1.0)
    metrics.call_rejected()
    metrics.call_rejected()
    out = scrape(metrics)
    calls = out["autellix:calls"]
    assert calls.type == "counter"
    assert value(calls, "autellix:calls_total", status="finished") == 2
    assert value(calls, "autellix:calls_total", status="aborted") == 1
    assert value(calls, "autellix:calls_total", status="rejected") == 2
    latency = out["autellix:call_latency_seconds"]
    assert latency.type == "histogram"
    # Rejected calls have no latency.
    assert value(latency, "autellix:call_latency_seconds_count") == 3
    assert value(latency, "autellix:call_latency_seconds_sum") == pytest.approx(1.5)


def test_programs_and_placements(metrics: FrontEndMetrics) -> None:
    for _ in range(3):
        metrics.program_started()
    metrics.program_ended(waiting_s=0.5, service_s=2.0, latency_s=3.0)
    metrics.program_ended(waiting_s=0.0, service_s=0.0, latency_s=None)  # never finished a call
    metrics.placed(0)
    metrics.placed(1)
    metrics.placed(1)
    out = scrape(metrics)
    assert value(out["autellix:programs_started"], "autellix:programs_started_total") == 3
    assert value(out["autellix:program_waiting_seconds"], "autellix:program_waiting_seconds_count") == 2
    assert value(out["autellix:program_service_seconds"], "autellix:program_service_seconds_sum") == 2.0
    assert value(out["autellix:program_latency_seconds"], "autellix:program_latency_seconds_count") == 1
    placements = out["autellix:placements"]
    assert value(placements, "autellix:placements_total", engine="0") == 1
    assert value(placements, "autellix:placements_total", engine="1") == 2


def test_histogram_buckets_keep_the_latency_ranges(metrics: FrontEndMetrics) -> None:
    for latency in (0.001, 0.005, 0.3, 7.0, 900.0, 5000.0):  # a bound counts in its own bucket
        metrics.call_ended("finished", latency)
    histogram = scrape(metrics)["autellix:call_latency_seconds"]
    buckets = {
        float(s.labels["le"]): s.value for s in histogram.samples if s.name == "autellix:call_latency_seconds_bucket"
    }
    assert list(buckets) == [*map(float, LATENCY_BUCKETS), math.inf]
    assert buckets[0.005] == 2 and buckets[0.25] == 2 and buckets[0.5] == 3
    assert buckets[5] == 3 and buckets[10] == 4 and buckets[300] == 4
    assert buckets[900] == 5 and buckets[math.inf] == 6
    for name in ("autellix:program_waiting_seconds", "autellix:program_service_seconds", "autellix:program_latency_seconds"):
        bounds = [s.labels["le"] for s in scrape(metrics)[name].samples if s.name.endswith("_bucket")]
        assert len(bounds) == len(LATENCY_BUCKETS) + 1 and bounds[-1] == "+Inf"


def test_no_created_series(metrics: FrontEndMetrics) -> None:
    metrics.call_ended("finished", 0.1)
    metrics.program_started()
    body, _ = metrics.render([], [], 0, 0)
    assert b"_created" not in body


def test_two_instances_do_not_share_counters() -> None:
    first, second = FrontEndMetrics(vllm_registry=None), FrontEndMetrics(vllm_registry=None)
    first.call_ended("finished", 0.1)
    first.program_started()
    first.placed(0)
    assert first.registry is not second.registry
    one, two = scrape(first), scrape(second)
    assert value(one["autellix:calls"], "autellix:calls_total", status="finished") == 1
    assert not two["autellix:calls"].samples  # no status seen yet
    assert value(two["autellix:programs_started"], "autellix:programs_started_total") == 0
    assert value(two["autellix:call_latency_seconds"], "autellix:call_latency_seconds_count") == 0
    # Nor anything in the global registry.
    assert not any(name.startswith("autellix:") for name in REGISTRY._names_to_collectors)


def test_engine_families_from_snapshots(metrics: FrontEndMetrics) -> None:
    snapshots = [snapshot([2, 0, 1], running=4, preemptions=5, promotions=1), None, snapshot([], 0, 0, 0)]
    out = scrape(metrics, snapshots, loads=[4, 7, 0], programs_active=3, calls_outstanding=11)
    assert out["autellix:programs_active"].type == "gauge"
    assert value(out["autellix:programs_active"]) == 3
    assert value(out["autellix:calls_outstanding"]) == 11
    depth = out["autellix:queue_depth"]
    assert depth.type == "gauge"
    assert {(s.labels["engine"], s.labels["queue"]): s.value for s in depth.samples} == {
        ("0", "0"): 2,
        ("0", "1"): 0,
        ("0", "2"): 1,
    }  # none for the vanilla engine 1, none for engine 2's empty list
    running = out["autellix:running_calls"]
    assert running.type == "gauge"
    # The vanilla (None) engine reports the balancer's count.
    assert {s.labels["engine"]: s.value for s in running.samples} == {"0": 4, "1": 7, "2": 0}
    preemptions, promotions = out["autellix:preemptions"], out["autellix:starvation_promotions"]
    assert preemptions.type == promotions.type == "counter"
    assert {s.labels["engine"]: s.value for s in preemptions.samples} == {"0": 5, "1": 0, "2": 0}
    assert {s.labels["engine"]: s.value for s in promotions.samples} == {"0": 1, "1": 0, "2": 0}
    assert {s.name for s in preemptions.samples} == {"autellix:preemptions_total"}
    assert {s.name for s in promotions.samples} == {"autellix:starvation_promotions_total"}


def test_unreachable_engines_and_short_loads(metrics: FrontEndMetrics) -> None:
    out = scrape(metrics, [None, None], loads=[1])  # loads shorter than snapshots: 0
    assert not out["autellix:queue_depth"].samples
    assert {s.labels["engine"]: s.value for s in out["autellix:running_calls"].samples} == {"0": 1, "1": 0}
    # A snapshot with parts missing.
    out = scrape(metrics, [{"num_running": 2}], loads=[0])
    assert value(out["autellix:running_calls"], engine="0") == 2
    assert value(out["autellix:preemptions"], "autellix:preemptions_total", engine="0") == 0


def test_text_names(metrics: FrontEndMetrics) -> None:
    """The names as a scraper sees them, in vLLM's style."""
    metrics.call_ended("finished", 0.1)
    metrics.placed(0)
    body, _ = metrics.render([snapshot([1], 1, 0, 0)], [1], 0, 0)
    text = body.decode()
    for family, kind in [
        ("autellix:calls_total", "counter"),
        ("autellix:call_latency_seconds", "histogram"),
        ("autellix:programs_started_total", "counter"),
        ("autellix:program_waiting_seconds", "histogram"),
        ("autellix:program_service_seconds", "histogram"),
        ("autellix:program_latency_seconds", "histogram"),
        ("autellix:placements_total", "counter"),
        ("autellix:programs_active", "gauge"),
        ("autellix:calls_outstanding", "gauge"),
        ("autellix:queue_depth", "gauge"),
        ("autellix:running_calls", "gauge"),
        ("autellix:preemptions_total", "counter"),
        ("autellix:starvation_promotions_total", "counter"),
    ]:
        assert f"# TYPE {family} {kind}\n" in text, family
    assert 'autellix:calls_total{status="finished"} 1.0\n' in text
    assert 'autellix:queue_depth{engine="0",queue="0"} 1.0\n' in text
    assert "autellix:calls_outstanding 0.0\n" in text


# -- vLLM's own metrics ---------------------------------------------------------------------


def test_vllm_families_from_the_given_registry() -> None:
    global_registry = CollectorRegistry()
    Counter("vllm:prompt_tokens", "Prompt tokens.", ["model_name", "engine"], registry=global_registry).labels(
        model_name="m", engine="0"
    ).inc(42)
    Gauge("vllm:num_requests_running", "Running.", registry=global_registry).set(2)
    Gauge("process_fake_bytes", "Not vLLM's.", registry=global_registry).set(1)
    metrics = FrontEndMetrics(vllm_registry=global_registry)
    metrics.call_ended("finished", 0.1)
    out = scrape(metrics)
    assert value(out["vllm:prompt_tokens"], "vllm:prompt_tokens_total", model_name="m", engine="0") == 42
    assert value(out["vllm:num_requests_running"]) == 2
    assert "process_fake_bytes" not in out
    assert value(out["autellix:calls"], "autellix:calls_total", status="finished") == 1


class Duplicates(Collector):
    """Yields the same vLLM family twice (two collectors can, in a non-registry source)."""

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("vllm:dup", "First.", value=1)
        yield GaugeMetricFamily("vllm:dup", "Second.", value=2)


class Broken(Collector):
    def collect(self) -> Iterator[Metric]:
        raise RuntimeError("boom")


def test_vllm_names_are_written_once() -> None:
    out = scrape(FrontEndMetrics(vllm_registry=Duplicates()))  # `families` asserts each name once
    assert value(out["vllm:dup"]) == 1


def test_a_broken_vllm_source_leaves_ours(caplog: pytest.LogCaptureFixture) -> None:
    metrics = FrontEndMetrics(vllm_registry=Broken())
    metrics.program_started()
    out = scrape(metrics)
    assert value(out["autellix:programs_started"], "autellix:programs_started_total") == 1
    assert not any(name.startswith("vllm:") for name in out)
    assert "collecting vLLM's metrics failed" in caplog.text


def test_vllm_families_from_the_global_registry_by_default() -> None:
    gauge = Gauge("vllm:autellix_test_gauge", "Registered like vLLM's stat loggers do.")  # in REGISTRY
    try:
        gauge.set(7)
        out = scrape(FrontEndMetrics())
        assert value(out["vllm:autellix_test_gauge"]) == 7
        assert not any(n.startswith("process_") or n.startswith("python_") for n in out)
    finally:
        REGISTRY.unregister(gauge)


# -- the handler ----------------------------------------------------------------------------


class FakeDriver:
    """What the handler reads of the engine driver (the handler itself is real)."""

    def __init__(self, snapshots: Any, loads: list[int], down: tuple[int, ...] = ()) -> None:
        self._snapshots = snapshots
        self._loads = loads
        self._down = list(down)
        self.num_engines = len(loads)

    def dead_engines(self) -> list[int]:
        return self._down

    def unavailable_engines(self) -> list[int]:
        return []

    async def snapshots(self) -> list[dict[str, Any] | None]:
        if self._snapshots == "hang":
            await asyncio.sleep(3600)
        if self._snapshots == "dead":
            raise RuntimeError("engine core died")
        assert isinstance(self._snapshots, list)
        return self._snapshots

    def loads(self) -> list[int]:
        return self._loads


class FakeCalls:
    def __init__(self, programs: int, outstanding: int) -> None:
        self.programs = {i: object() for i in range(programs)}
        self.outstanding = outstanding


async def get_metrics(driver: FakeDriver, calls: FakeCalls, metrics: FrontEndMetrics) -> tuple[str, dict[str, Metric]]:
    app = web.Application()
    app[DRIVER] = cast(Any, driver)
    app[CALLS] = cast(Any, calls)
    app[METRICS] = metrics
    app.router.add_get("/metrics", handler.metrics)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        return response.headers["Content-Type"], families(await response.text())


@pytest.mark.asyncio
async def test_handler(metrics: FrontEndMetrics) -> None:
    metrics.call_rejected()
    driver = FakeDriver([snapshot([3], 1, 2, 0), None], loads=[1, 5], down=(1,))
    content_type, out = await get_metrics(driver, FakeCalls(programs=2, outstanding=6), metrics)
    assert content_type == CONTENT_TYPE
    assert value(out["autellix:engine_up"], engine="0") == 1 and value(out["autellix:engine_up"], engine="1") == 0
    assert value(out["autellix:programs_active"]) == 2
    assert value(out["autellix:calls_outstanding"]) == 6
    assert value(out["autellix:queue_depth"], engine="0", queue="0") == 3
    assert value(out["autellix:running_calls"], engine="1") == 5
    assert value(out["autellix:preemptions"], "autellix:preemptions_total", engine="0") == 2
    assert value(out["autellix:calls"], "autellix:calls_total", status="rejected") == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("trouble", ["dead", "hang"])
async def test_handler_survives_a_dead_or_stuck_engine(
    trouble: str, metrics: FrontEndMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler, "SNAPSHOT_TIMEOUT", 0.05)
    _, out = await get_metrics(FakeDriver(trouble, loads=[2, 0]), FakeCalls(0, 2), metrics)
    assert not out["autellix:queue_depth"].samples
    assert {s.labels["engine"]: s.value for s in out["autellix:running_calls"].samples} == {"0": 2, "1": 0}
