"""Tables, plots and JSON of an engine sweep, built on autellix.sim.sweep's throughput logic."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from autellix.sim.sweep import _latency, clean_json, crossing_rate, plot, throughput_table

BASELINE = "vllm"
# metric -> what its table is called
METRICS = {"mean_token_latency": "mean token latency", "p95_token_latency": "P95 token latency",
           "mean_slowdown": "mean per-program slowdown"}


def throughput_rows(points: list[dict[str, Any]], slos: list[float], baselines: tuple[str, ...] = (BASELINE,),
                    metric: str = "mean_token_latency") -> list[dict[str, Any]]:
    """autellix.sim.sweep's throughput at equal latency (the target is a multiple of the lowest
    latency any series reaches at the lowest rate), with the ratio to each baseline series
    (`vs_vllm`, `vs_vllm-noprefix`)."""
    rows = throughput_table(points, slos, metric=metric) if metric != "mean_slowdown" else slowdown_table(points, slos)
    for row in rows:
        row["metric"] = metric
        # not exact: either under the target at every rate (throughput >= the highest rate) or above
        # it already at the lowest (throughput <= the lowest rate)
        first = min((p for p in points if p["workload"] == row["workload"] and p["series"] == row["series"]),
                    key=lambda p: p["rate"])
        row["bound"] = "" if row["exact"] else "<=" if _latency(first, metric) > row["target"] else ">="
    for row in rows:
        for ref in baselines:
            base = next((r for r in rows if r["workload"] == row["workload"] and r["slo"] == row["slo"]
                         and r["series"] == ref), None)
            if base is not None and base["throughput"] > 0:
                row[f"vs_{ref}"] = row["throughput"] / base["throughput"]
                # a ratio is a bound when either side is; opposite bounds on the two sides agree
                ours, theirs = row["bound"], {"": "", ">=": "<=", "<=": ">="}[base["bound"]]
                row[f"vs_{ref}_bound"] = ours or theirs if not (ours and theirs and ours != theirs) else "n/a"
                if row["series"] == ref:
                    row[f"vs_{ref}_bound"] = ""
    return rows


def slowdown_table(points: list[dict[str, Any]], slos: list[float]) -> list[dict[str, Any]]:
    """Throughput at a mean slowdown of `slo` itself (slowdown is already relative to unloaded)."""
    rows = []
    for w in dict.fromkeys(p["workload"] for p in points):
        pts = [p for p in points if p["workload"] == w]
        for slo in slos:
            for s in dict.fromkeys(p["series"] for p in pts):
                rate, exact = crossing_rate([(p["rate"], _latency(p, "mean_slowdown")) for p in pts
                                             if p["series"] == s], slo)
                rows.append({"workload": w, "slo": slo, "target": slo, "series": s, "throughput": rate, "exact": exact})
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


def _x(x: Any) -> str:
    if not isinstance(x, (int, float)) or math.isnan(x):
        return ""
    return "saturated" if math.isinf(x) else f"{x:.2f}"


def points_table(points: list[dict[str, Any]]) -> str:
    head = ["workload", "scheduler", "rate (prog/s)", "mean latency (s)", "p95 latency (s)",
            "mean token latency (ms)", "p95 token latency (ms)", "mean slowdown", "p95 slowdown",
            "throughput (prog/s)", "sched. share of step", "saturated seeds", "load avg (1 min)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in sorted(points, key=lambda p: (p["workload"], p["rate"], p["series"])):
        share = p.get("scheduler_share")
        lines.append("| " + " | ".join([
            p["workload"], p["series"], f"{p['rate']:.3g}", _s(p["mean_latency"]), _s(p["p95_latency"]),
            _ms(p["mean_token_latency"]), _ms(p["p95_token_latency"]), _x(p.get("mean_slowdown")),
            _x(p.get("p95_slowdown")), f"{p['throughput']:.3g}",
            f"{share * 100:.2f}%" if share is not None else "", str(p["saturated_seeds"]),
            f"{p['loadavg_1m']:.1f}" if isinstance(p.get("loadavg_1m"), (int, float)) else "",
        ]) + " |")
    return "\n".join(lines) + "\n"


def _target(r: dict[str, Any]) -> str:
    t = r["target"]
    return f"{t * 1000:.1f} ms/token" if r["metric"].endswith("token_latency") else f"slowdown {t:g}"


def summary_table(rows: list[dict[str, Any]], baselines: tuple[str, ...] = (BASELINE,)) -> str:
    head = ["workload", "target", "scheduler", "throughput (prog/s)", *[f"vs {b}" for b in baselines]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        rate = f"{r['bound']}{r['throughput']:.3g}"
        ratios = [("n/a" if r[f"vs_{b}_bound"] == "n/a" else f"{r[f'vs_{b}_bound']}{r[f'vs_{b}']:.2f}x")
                  if f"vs_{b}" in r else "" for b in baselines]
        lines.append(f"| {r['workload']} | {r['slo']:g}x = {_target(r)} | {r['series']} | {rate} | "
                     + " | ".join(ratios) + " |")
    return "\n".join(lines) + "\n"


def lowest_rate_table(points: list[dict[str, Any]]) -> str:
    """Below capacity: each series' latency at the lowest rate, and the difference to vllm."""
    lines = ["| workload | rate (prog/s) | scheduler | mean token latency (ms) | vs vllm (ms) | p95 token latency (ms) "
             "| mean latency (s) |", "|---|---|---|---|---|---|---|"]
    for w in dict.fromkeys(p["workload"] for p in points):
        pts = [p for p in points if p["workload"] == w]
        lowest = min(p["rate"] for p in pts)
        low = [p for p in pts if p["rate"] == lowest]
        base = next((p for p in low if p["series"] == BASELINE), None)
        for p in low:
            diff = (p["mean_token_latency"] - base["mean_token_latency"]) * 1000 if base else math.nan
            lines.append(f"| {w} | {lowest:.3g} | {p['series']} | {_ms(p['mean_token_latency'])} | "
                         f"{diff:+.1f} | {_ms(p['p95_token_latency'])} | {_s(p['mean_latency'])} |")
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
          points: list[dict[str, Any]], slos: list[float],
          baselines: tuple[str, ...] = (BASELINE,)) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    present = tuple(b for b in baselines if any(p["series"] == b for p in points))
    tables = {m: throughput_rows(points, slos, present, m) for m in METRICS
              if all(isinstance(p.get(m), (int, float)) and not math.isnan(p[m]) for p in points)}
    rows = tables["mean_token_latency"]
    over = overhead(points)
    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md", "png": out_dir / f"{name}.png"}
    doc = {"meta": meta, "points": points, "seed_points": raw, "throughput": rows,
           "throughput_by_metric": tables, "overhead": over}
    paths["json"].write_text(json.dumps(clean_json(doc), indent=1, allow_nan=False, default=str) + "\n")
    plot(points, paths["png"], f"{name}: real vLLM engine, tiny model (median over seeds)", slos)
    md = [f"# Engine bench `{name}`", "", "\n".join(f"- {k}: `{json.dumps(v, default=str)}`" for k, v in meta.items()), ""]
    for metric, title in METRICS.items():
        if metric not in tables:
            continue
        md += [f"## Throughput at equal {title}", "",
               (f"The target is a multiple of the lowest {title} any series reaches at the lowest rate "
                "(autellix.sim.sweep.throughput_table)" if metric != "mean_slowdown" else
                "The target is the mean slowdown itself") + ", a series' throughput the rate where its curve crosses it "
               "(interpolated); `>=` means it stayed under the target at every swept rate (a lower bound), `<=` that it "
               "was above it already at the lowest rate; a ratio is then a bound too (n/a: bounds both ways).", "", summary_table(tables[metric], present)]
    md += ["## Below capacity (the lowest rate)", "", lowest_rate_table(points),
           "## Scheduler overhead", "",
           "Plug-in time in `schedule()` before vLLM's own scheduling (`core_seconds / steps`) against the engine's "
           "mean step time (seconds with a call outstanding / steps), median over points.", "",
           overhead_table(over) if over else "(no Autellix series)\n",
           "## Every point (median over seeds)", "",
           "Slowdown: a program's latency / its lowest latency under any series at the lowest rate of its seed "
           "(near-unloaded, not served alone). Load avg: the machine's 1-minute load average as the point "
           "ended (median over seeds; 2 cores, shared with other work).", "", points_table(points), f"![latency vs rate]({paths['png'].name})", ""]
    paths["md"].write_text("\n".join(md))
    return paths
