"""Tables, plots and JSON of an engine sweep, built on autellix.sim.sweep's throughput logic."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from autellix.sim.sweep import clean_json, plot, throughput_table

BASELINE = "vllm"


def throughput_rows(points: list[dict[str, Any]], slos: list[float]) -> list[dict[str, Any]]:
    """autellix.sim.sweep's throughput at equal mean token latency, with the ratio to vLLM."""
    rows = throughput_table(points, slos)
    for row in rows:
        base = next((r for r in rows if r["workload"] == row["workload"] and r["slo"] == row["slo"]
                     and r["series"] == BASELINE), None)
        if base is not None and base["throughput"] > 0:
            row["vs_vllm"] = row["throughput"] / base["throughput"]
    return rows


def overhead(points: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per Autellix series: the median over points of the scheduler's time per step, the engine's
    mean step time and their ratio."""
    out = {}
    for series in dict.fromkeys(p["series"] for p in points):
        pts = [p for p in points if p["series"] == series and p.get("scheduler_share") is not None]
        if pts:
            out[series] = {k: statistics.median(p[k] for p in pts)
                           for k in ("scheduler_seconds_per_step", "mean_step_seconds", "scheduler_share")}
            out[series]["max_share"] = max(p["scheduler_share"] for p in pts)
            out[series]["priority_preemptions"] = sum(p.get("priority_preemptions", 0) for p in pts)
    return out


def _ms(x: Any) -> str:
    return "saturated" if isinstance(x, float) and math.isinf(x) else f"{x * 1000:.1f}"


def _s(x: Any) -> str:
    return "saturated" if isinstance(x, float) and math.isinf(x) else f"{x:.2f}"


def points_table(points: list[dict[str, Any]]) -> str:
    head = ["workload", "scheduler", "rate (prog/s)", "mean latency (s)", "p95 latency (s)",
            "mean token latency (ms)", "p95 token latency (ms)", "throughput (prog/s)", "sched. share of step",
            "saturated seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in sorted(points, key=lambda p: (p["workload"], p["rate"], p["series"])):
        share = p.get("scheduler_share")
        lines.append("| " + " | ".join([
            p["workload"], p["series"], f"{p['rate']:.3g}", _s(p["mean_latency"]), _s(p["p95_latency"]),
            _ms(p["mean_token_latency"]), _ms(p["p95_token_latency"]), f"{p['throughput']:.3g}",
            f"{share * 100:.2f}%" if share is not None else "", str(p["saturated_seeds"]),
        ]) + " |")
    return "\n".join(lines) + "\n"


def summary_table(rows: list[dict[str, Any]]) -> str:
    head = ["workload", "latency target", "scheduler", "throughput (prog/s)", "vs vLLM"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        rate = f"{r['throughput']:.3g}" if r["exact"] else f">={r['throughput']:.3g}"
        ratio = f"{r['vs_vllm']:.2f}x" if "vs_vllm" in r else ""
        lines.append(f"| {r['workload']} | {r['slo']:g}x = {r['target'] * 1000:.1f} ms/token | {r['series']} "
                     f"| {rate} | {ratio} |")
    return "\n".join(lines) + "\n"


def overhead_table(over: dict[str, dict[str, float]]) -> str:
    lines = ["| scheduler | scheduler time per step (us) | mean step (ms) | share (median) | share (max) "
             "| priority preemptions |", "|---|---|---|---|---|---|"]
    for series, o in over.items():
        lines.append(f"| {series} | {o['scheduler_seconds_per_step'] * 1e6:.0f} | {o['mean_step_seconds'] * 1000:.2f} "
                     f"| {o['scheduler_share'] * 100:.2f}% | {o['max_share'] * 100:.2f}% "
                     f"| {o['priority_preemptions']:.0f} |")
    return "\n".join(lines) + "\n"


def write(out_dir: Path, name: str, meta: dict[str, Any], raw: list[dict[str, Any]],
          points: list[dict[str, Any]], slos: list[float]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = throughput_rows(points, slos)
    over = overhead(points)
    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md", "png": out_dir / f"{name}.png"}
    doc = {"meta": meta, "points": points, "seed_points": raw, "throughput": rows, "overhead": over}
    paths["json"].write_text(json.dumps(clean_json(doc), indent=1, allow_nan=False, default=str) + "\n")
    plot(points, paths["png"], f"{name}: real vLLM engine, tiny model (median over seeds)")
    md = [f"# Engine bench `{name}`", "", "\n".join(f"- {k}: `{json.dumps(v, default=str)}`" for k, v in meta.items()),
          "", "## Throughput at equal mean token latency", "",
          "The target is a multiple of the lowest mean token latency any scheduler reaches at the lowest rate "
          "(autellix.sim.sweep.throughput_table); `>=` means the scheduler stayed under it at every swept rate.", "",
          summary_table(rows), "## Scheduler overhead", "",
          "Plug-in time in `schedule()` before vLLM's own scheduling (`core_seconds / steps`) against the engine's "
          "mean step time (seconds with a call outstanding / steps), median over points.", "",
          overhead_table(over) if over else "(no Autellix series)\n",
          "## Every point (median over seeds)", "", points_table(points), f"![latency vs rate]({paths['png'].name})", ""]
    paths["md"].write_text("\n".join(md))
    return paths
