"""Rate sweeps: latency vs program arrival rate for several policies (or balancers) and workloads,
PNG plots in the style of the paper's Figures 12-14, and a table of throughput at equal latency.

Throughput at equal latency: for a workload, the latency target is ``slo`` x the lowest mean token
latency any series reaches at the lowest swept rate (the unloaded latency). A series' throughput is
the highest arrival rate at which its mean token latency is still <= the target, interpolated
linearly between the two swept rates around the crossing (``>= max rate`` when it never crosses).
"""

from __future__ import annotations

import json
import math
import os
import textwrap
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autellix.sim.metrics import summarize
from autellix.sim.presets import EngineConfig
from autellix.sim.simulator import simulate
from autellix.sim.workloads import generate

__all__ = ["Series", "clean_json", "crossing_rate", "default_rates", "run_sweep", "throughput_table", "write_outputs"]


@dataclass(frozen=True)
class Series:
    """One line of a plot: a policy, optionally with scheduler options, engines, a balancer and a
    clock of its own (else the sweep's)."""

    label: str
    policy: str
    engines: int = 1
    balancer: str = "autellix"
    scheduler_options: tuple[tuple[str, Any], ...] = ()
    clock: str | None = None


def estimate_capacity(workload: str, config: EngineConfig, engines: int, seed: int = 0) -> float:
    """A rough estimate of programs/s at saturation: a full batch's decode time per output token plus
    the prefill compute of the prompt tokens not shared with earlier context."""
    progs = generate(workload, 1.0, 400, seed)
    calls = [c for p in progs for c in p.calls]
    out_per_prog = sum(c.output_tokens for c in calls) / len(progs)
    prefill_per_prog = sum(c.prompt_tokens - c.prefix_tokens for c in calls) / len(progs)
    ctx = sum(c.prompt_tokens + c.output_tokens / 2 for c in calls) / len(calls)
    n = config.max_running
    step = config.step_base + config.step_per_token * n + config.step_per_kv_token * n * ctx
    seconds = out_per_prog * step / n + prefill_per_prog * config.step_per_token
    return engines / seconds


def default_rates(workload: str, config: EngineConfig, engines: int = 1, points: int = 9) -> list[float]:
    """Rates from 0.2x to ~3x the estimated capacity, denser around it."""
    cap = estimate_capacity(workload, config, engines)
    factors = [0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0]
    if points < len(factors):
        step = (len(factors) - 1) / (points - 1)
        factors = [factors[round(i * step)] for i in range(points)]
    return [round(cap * f, 4) for f in factors]


def programs_for(rate: float, programs: int, duration: float | None) -> int:
    """Programs per point: ``programs``, or with ``duration`` as many as arrive in that many seconds
    (at least 50, so low rates still measure something)."""
    if duration is None:
        return programs
    return max(50, math.ceil(rate * duration))


def _run_point(args: tuple[str, float, int, int, Series, EngineConfig, float | None, str]) -> dict[str, Any]:
    workload, rate, programs, seed, series, config, wall_limit, clock = args
    clock = series.clock or clock
    progs = generate(workload, rate, programs, seed)
    t0 = time.perf_counter()
    res = simulate(progs, series.policy, series.engines, series.balancer, config, dict(series.scheduler_options),
                   wall_limit=wall_limit, clock=clock)
    out = summarize(res)
    out.update(workload=workload, rate=rate, series=series.label, seed=seed, clock=clock,
               wall=time.perf_counter() - t0)
    return out


def run_sweep(workloads: Sequence[str], series: Sequence[Series], rates: dict[str, list[float]], programs: int,
              seed: int, config: EngineConfig, jobs: int = 1, wall_limit: float | None = None,
              log: Callable[[str], None] | None = None, duration: float | None = None,
              clock: str = "work") -> list[dict[str, Any]]:
    """Every (workload, rate, series) point; with ``duration`` the number of programs of a point is
    the number arriving in that many seconds (so overload builds a backlog that grows with the rate),
    otherwise ``programs``. ``clock`` is the scheduler's (see :func:`autellix.sim.simulator.simulate`)."""
    tasks = [(w, r, programs_for(r, programs, duration), seed, s, config, wall_limit, clock)
             for w in workloads for r in rates[w] for s in series]
    results: list[dict[str, Any]] = []
    t0 = time.monotonic()

    def note(res: dict[str, Any]) -> None:
        results.append(res)
        if log is not None:
            flag = " (stopped: wall limit)" if res["stopped_early"] else ""
            log(f"[{len(results)}/{len(tasks)} {time.monotonic() - t0:.0f}s] {res['workload']} rate={res['rate']:g} "
                f"{res['series']}: mean token latency {res['mean_token_latency'] * 1000:.1f} ms, "
                f"{res['completed']}/{res['programs']} done in {res['wall']:.1f}s{flag}")

    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            for res in ex.map(_run_point, tasks):
                note(res)
    else:
        for t in tasks:
            note(_run_point(t))
    return results


def _latency(point: dict[str, Any], metric: str) -> float:
    if point["stopped_early"] or point["completed"] < point["programs"]:
        return math.inf  # saturated: it could not even finish
    return float(point[metric])


def crossing_rate(points: Sequence[tuple[float, float]], target: float) -> tuple[float, bool]:
    """Highest rate with latency <= target, by linear interpolation; (rate, exact). ``exact`` is False when
    the curve never crosses (the max rate is a lower bound) or is above target already at the first rate."""
    pts = sorted(points)
    if not pts:
        return math.nan, False
    if pts[0][1] > target:
        return pts[0][0], False
    for (r0, l0), (r1, l1) in zip(pts, pts[1:]):
        if l1 > target:
            if math.isinf(l1):
                return r0, True
            return r0 + (r1 - r0) * (target - l0) / (l1 - l0), True
    return pts[-1][0], False


def throughput_table(results: Sequence[dict[str, Any]], slos: Sequence[float] = (2.0, 5.0, 10.0),
                     metric: str = "mean_token_latency") -> list[dict[str, Any]]:
    rows = []
    for w in dict.fromkeys(r["workload"] for r in results):
        pts = [r for r in results if r["workload"] == w]
        lowest = min(r["rate"] for r in pts)
        base = min(_latency(r, metric) for r in pts if r["rate"] == lowest)
        for slo in slos:
            target = base * slo
            tput: dict[str, tuple[float, bool]] = {}
            for s in dict.fromkeys(r["series"] for r in pts):
                tput[s] = crossing_rate([(r["rate"], _latency(r, metric)) for r in pts if r["series"] == s], target)
            for s, (rate, exact) in tput.items():
                row: dict[str, Any] = {"workload": w, "slo": slo, "target": target, "series": s,
                                       "throughput": rate, "exact": exact}
                for ref in ("fcfs", "mlfq", "srpt", "round-robin", "least-used"):
                    ref_key = next((k for k in tput if k == ref or k.endswith("/" + ref)), None)
                    if ref_key is not None and tput[ref_key][0] > 0:
                        row[f"vs_{ref}"] = rate / tput[ref_key][0]
                rows.append(row)
    return rows


def _fmt_rate(rate: float, exact: bool) -> str:
    return f"{rate:.3g}" if exact else f">={rate:.3g}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    refs = [k for k in ("vs_fcfs", "vs_mlfq", "vs_srpt", "vs_round-robin", "vs_least-used") if any(k in r for r in rows)]
    head = ["workload", "latency target", "series", "throughput (programs/s)", *[k.replace("_", " ") for k in refs]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["workload"], f"{r['slo']:g}x = {r['target'] * 1000:.1f} ms/token", r["series"],
                 _fmt_rate(r["throughput"], r["exact"])]
        for k in refs:
            cells.append(f"{r[k]:.2f}x" if k in r else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: Sequence[dict[str, Any]], path: Path, title: str = "",
         slos: Sequence[float] = (2.0, 5.0, 10.0)) -> None:
    """Mean and P95 token latency vs rate, one column per workload; the mean plot marks the latency
    targets (``slos`` x the unloaded latency) as dotted lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(r["workload"] for r in results))
    fig, axes = plt.subplots(2, len(workloads), figsize=(4.2 * len(workloads), 7), squeeze=False)
    for i, w in enumerate(workloads):
        pts = [r for r in results if r["workload"] == w]
        for row, (metric, label) in enumerate((("mean_token_latency", "mean token latency (s/token)"),
                                               ("p95_token_latency", "P95 token latency (s/token)"))):
            ax = axes[row][i]
            for s in dict.fromkeys(r["series"] for r in pts):
                xs = sorted((r["rate"], r[metric]) for r in pts if r["series"] == s and not r["stopped_early"])
                ax.plot([x for x, _ in xs], [y for _, y in xs], marker="o", ms=3, label=s)
            if row == 0:
                lowest = min(r["rate"] for r in pts)
                base = min(_latency(r, metric) for r in pts if r["rate"] == lowest)
                for slo in slos:
                    if math.isfinite(base):
                        ax.axhline(base * slo, color="grey", ls=":", lw=0.8)
                        ax.annotate(f"{slo:g}x", (0.01, base * slo), xycoords=("axes fraction", "data"),
                                    fontsize=7, color="grey", va="bottom")
            ax.set_yscale("log")
            ax.set_xlabel("program arrival rate (programs/s)")
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
            if row == 0:
                ax.set_title(w)
        axes[0][i].legend(fontsize=8)
    if title:  # wrapped to the figure's width: a one-workload figure is narrow
        fig.suptitle(textwrap.fill(title, width=45 * len(workloads)), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(results: Sequence[dict[str, Any]], out_dir: str | os.PathLike[str], name: str,
                  meta: dict[str, Any], slos: Sequence[float] = (2.0, 5.0, 10.0), plots: bool = True) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = throughput_table(results, slos)
    paths = {"json": out / f"{name}.json", "md": out / f"{name}.md"}
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(clean_json({"meta": meta, "points": list(results), "throughput": rows}), f, indent=1,
                  default=_json_default, allow_nan=False)
        f.write("\n")
    md = [f"# Sweep `{name}`\n", "", _meta_md(meta), "",
          "Throughput at equal mean token latency (the target is a multiple of the lowest unloaded latency; "
          "`>=` means the series never reached the target in the swept range).\n", "", markdown_table(rows)]
    if plots:
        paths["png"] = out / f"{name}.png"
        plot(results, paths["png"], name, slos)
        md.append(f"\n![latency vs rate]({paths['png'].name})\n")
    paths["md"].write_text("\n".join(md), encoding="utf-8")
    return paths


def _meta_md(meta: dict[str, Any]) -> str:
    return "\n".join(f"- {k}: `{json.dumps(v, default=_json_default)}`" for k, v in meta.items())


def clean_json(o: Any) -> Any:
    """Non-finite floats become strings ("inf", "nan") so the output is strict JSON."""
    if isinstance(o, float):
        return o if math.isfinite(o) else str(o)
    if isinstance(o, dict):
        return {k: clean_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean_json(v) for v in o]
    if isinstance(o, EngineConfig):
        return asdict(o)
    return o


def _json_default(o: Any) -> Any:
    if isinstance(o, EngineConfig):
        return asdict(o)
    if isinstance(o, float) and math.isinf(o):
        return "inf"
    return str(o)
