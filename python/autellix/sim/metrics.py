"""Program-level metrics of a simulation (the paper's Section 6 metrics).

* latency: program response time = time its last call finished - its arrival (seconds); for a DAG
  this is the critical-path time, delays included.
* token latency: response time / all output tokens of the program (the paper's primary metric).
* makespan: last finish - first arrival; throughput: completed programs / makespan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from autellix.sim.simulator import SimResult

__all__ = ["latency_fields", "percentile", "summarize"]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), ``q`` in [0, 100]; NaN when empty."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def latency_fields(latencies: Sequence[float], token_latencies: Sequence[float]) -> dict[str, float]:
    """Mean and percentiles of program latency (s) and token latency (s/token), by field name."""
    return {
        "mean_latency": _mean(latencies),
        "p50_latency": percentile(latencies, 50),
        "p95_latency": percentile(latencies, 95),
        "p99_latency": percentile(latencies, 99),
        "mean_token_latency": _mean(token_latencies),
        "p95_token_latency": percentile(token_latencies, 95),
        "p99_token_latency": percentile(token_latencies, 99),
    }


def summarize(res: SimResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    progs = res.programs
    done = [p for p in progs if p.finish >= 0]
    lat = [p.finish - p.arrival for p in done]
    tok = [(p.finish - p.arrival) / p.output_tokens for p in done]
    first = min((p.arrival for p in progs), default=0.0)
    last = max((p.finish for p in done), default=first)
    makespan = last - first
    es = res.engine_stats
    busy = sum(e["busy_time"] for e in es)
    prefill = sum(e["prefill_tokens"] for e in es)
    cached = sum(e["cached_tokens"] for e in es)
    out: dict[str, Any] = {
        "policy": res.policy,
        "engines": res.engines,
        "balancer": res.balancer,
        "preset": res.config.name,
        "programs": len(progs),
        "completed": len(done),
        "calls": sum(len(p.calls) for p in progs),
        **latency_fields(lat, tok),
        "makespan": makespan,
        "throughput": len(done) / makespan if makespan > 0 else math.nan,
        "output_tokens": sum(e["output_tokens"] for e in es),
        "token_throughput": sum(e["output_tokens"] for e in es) / makespan if makespan > 0 else math.nan,
        "engine_utilization": busy / (makespan * res.engines) if makespan > 0 else math.nan,
        "prefix_hit_rate": cached / (cached + prefill) if cached + prefill else 0.0,
        "preemptions": sum(e["core_preemptions"] + e["kv_preemptions"] for e in es),
        "kv_preemptions": sum(e["kv_preemptions"] for e in es),
        "engine_steps": sum(e["steps"] for e in es),
        "scheduler_calls": sum(e["schedule_calls"] for e in es),
        "sim_wall_seconds": res.wall_seconds,
        "sim_time": res.extra.get("sim_time", last),
        "stopped_early": bool(res.extra.get("stopped_early", False)),
    }
    if extra:
        out.update(extra)
    return out
