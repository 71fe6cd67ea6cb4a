"""Per-point metrics in the simulator's field names, and the median over seeds.

Program latency = finish of its last call - its arrival (for a DAG, the critical path, delays
included); token latency = latency / all output tokens of the program (the paper's metric). A
point whose programs did not all finish within its wall limit has infinite latency, which is how
autellix.sim.sweep's throughput table reads a saturated point.

Per-program slowdown = a program's latency / its reference latency, the same program's lowest
latency under any series at the lowest swept rate of its seed (a seed's programs are the same at
every rate, only their arrivals scale). That is the near-unloaded latency, not the program served
alone (which the bench does not measure: it would cost a whole extra pass), so the slowdowns
understate the paper's by the queueing at the lowest rate.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from autellix.sim.metrics import latency_fields

from engine.replay import PointRun

LATENCY_KEYS = ("mean_latency", "p50_latency", "p95_latency", "p99_latency",
                "mean_token_latency", "p95_token_latency", "p99_token_latency", "mean_slowdown", "p95_slowdown")


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def summarize_point(run: PointRun) -> dict[str, Any]:
    done = [r for r in run.records if r.finish >= 0]
    lat = [r.finish - r.arrival for r in done]
    tok = [(r.finish - r.arrival) / r.program.output_tokens for r in done]
    first = min((r.arrival for r in run.records), default=0.0)
    makespan = max((r.finish for r in done), default=first) - first
    tokens = sum(r.tokens for r in run.records)
    return {
        "programs": len(run.records),
        "completed": len(done),
        "calls": sum(len(r.program.calls) for r in run.records),
        "exact_tokens": all(not r.short_calls and r.tokens == r.program.output_tokens for r in done),
        **latency_fields(lat, tok),
        "makespan": makespan,
        "throughput": len(done) / makespan if makespan > 0 else math.nan,
        "output_tokens": tokens,
        "token_throughput": tokens / makespan if makespan > 0 else math.nan,
        "busy_seconds": run.busy_seconds,
        "wall": run.wall,
        "aborted_calls": run.aborted_calls,
        "stopped_early": run.stopped_early,
        "median_call_seconds": statistics.median(run.call_seconds) if run.call_seconds else math.nan,
        "mean_running": _mean([r for r, _ in run.occupancy]) if run.occupancy else None,
        "mean_waiting": _mean([w for _, w in run.occupancy]) if run.occupancy else None,
        # mixed: who gained and who paid (mean latency, s, per kind of program)
        "mean_latency_by_kind": {
            kind: _mean([r.finish - r.arrival for r in done if r.program.workload == kind])
            for kind in sorted({r.program.workload or "" for r in done})
        },
        # per program: output tokens asked, tokens received, finished (the test checks these)
        "program_tokens": [[r.program.output_tokens, r.tokens, r.finish >= 0] for r in run.records],
        # per program, in the point's order: latency (s), None if it did not finish
        "program_latency": [r.finish - r.arrival if r.finish >= 0 else None for r in run.records],
    }


def add_slowdowns(points: list[dict[str, Any]]) -> None:
    """mean_slowdown and p95_slowdown on every seed point (see the module docstring)."""
    from autellix.sim.metrics import percentile

    for (workload, seed) in dict.fromkeys((p["workload"], p["seed"]) for p in points):
        group = [p for p in points if p["workload"] == workload and p["seed"] == seed]
        lowest = min(p["rate"] for p in group)
        ref: list[float | None] = []
        for lats in zip(*(p["program_latency"] for p in group if p["rate"] == lowest)):
            done = [x for x in lats if x is not None]
            ref.append(min(done) if done else None)
        for p in group:
            slow = [lat / r for lat, r in zip(p["program_latency"], ref) if lat is not None and r]
            p["mean_slowdown"] = _mean(slow)
            p["p95_slowdown"] = percentile(slow, 95) if slow else math.nan


def add_overhead(point: dict[str, Any], before: dict[str, float], after: dict[str, float]) -> None:
    """The scheduler's own time per step against the engine's mean step time during the point
    (busy seconds / steps: the engine steps back to back while any call is outstanding)."""
    steps = after.get("steps", 0.0) - before.get("steps", 0.0)
    core = after.get("core_seconds", 0.0) - before.get("core_seconds", 0.0)
    point["steps"] = steps
    for key in ("priority_preemptions", "requeued", "core_promotions", "core_demotions"):
        point[key] = after.get(key, 0.0) - before.get(key, 0.0)
    if steps > 0:
        point["scheduler_seconds_per_step"] = core / steps
        point["mean_step_seconds"] = point["busy_seconds"] / steps
        point["scheduler_share"] = point["scheduler_seconds_per_step"] / point["mean_step_seconds"]


def _median(values: list[Any]) -> Any:
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) != len(values) or not nums:
        return values[0] if values else None
    if any(math.isnan(v) for v in nums):
        return math.nan
    return statistics.median(nums)


def _saturated(point: dict[str, Any]) -> bool:
    return bool(point["stopped_early"]) or point["completed"] < point["programs"]


def median_over_seeds(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per (workload, series, rate): the median of every number over seeds. A seed that
    did not finish counts as infinite latency, so the median point is saturated (stopped_early)
    when its median latency is."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault((p["workload"], p["series"], p["rate"]), []).append(p)
    out = []
    for (workload, series, rate), group in groups.items():
        merged: dict[str, Any] = {"workload": workload, "series": series, "rate": rate,
                                  "seeds": [p["seed"] for p in group]}
        keys = dict.fromkeys(k for p in group for k in p if k not in merged and k not in ("seed", "program_tokens", "program_latency", "mean_latency_by_kind"))
        for k in keys:
            values = [p[k] for p in group if k in p]
            if k in LATENCY_KEYS:
                values = [math.inf if _saturated(p) else p[k] for p in group]
            merged[k] = _median(values)
        merged["saturated_seeds"] = sum(_saturated(p) for p in group)
        merged["exact_tokens"] = all(p["exact_tokens"] for p in group)
        merged["stopped_early"] = math.isinf(merged["mean_token_latency"])
        # per seed the programs are the same count; completed is reported as all-or-not
        merged["programs"] = group[0]["programs"]
        merged["completed"] = merged["programs"] if not merged["stopped_early"] else min(p["completed"] for p in group)
        out.append(merged)
    return out
