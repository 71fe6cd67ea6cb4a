#!/usr/bin/env python3
"""Could a server-side estimate of remaining work win on the serve bench's load, and what would the
core need for it?

On `bench/serve_defaults.py`'s load (mixed, each program cut at its first 8 calls: programs are
alike) plas gains little over FCFS (`cut_calls.py`). The Gittins rank (`autellix.sim.gittins`) is
the best order knowing only what a program has had and the distribution of programs' total work;
for alike programs it runs the program nearest its end first. This measures, on `cut_calls.py`'s
programs (cpu-vllm preset), the srpt oracle ranking by it three ways:
- knowing the distribution of every program in the trace (the bound),
- learning it from the programs ended so far, as a server could with no help from clients,
- either of those with the rank put on a queue ladder (the core's default one, or one 4x finer),
  ties in arrival order, as multi-level queues would hold it,
beside plas and fcfs on the core. Two sizes of run: the serve bench's 96 programs (the first
programs end before anything is learned) and ten times as many.

    .venv/bin/python bench/sim/gittins_ladder.py        # ~5 minutes

Writes bench/results/sim/gittins-ladder.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from cut_calls import as_sent

from autellix import work_units
from autellix.sim.metrics import summarize
from autellix.sim.presets import get_preset
from autellix.sim.simulator import simulate
from autellix.sim.workloads import generate

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "results" / "sim" / "gittins-ladder"
RATES = [1.5, 3.0, 5.0, 8.0]
RUNS = {96: range(4), 960: range(2)}  # programs a point: seeds
KEEP_CALLS = 8
DEFAULT_LADDER = tuple(work_units.QUEUE_BOUNDARIES)
FINE_LADDER = tuple(DEFAULT_LADDER[0] * 2 ** (i / 4) for i in range(1, 4 * len(DEFAULT_LADDER) + 1))
SERIES = {  # label: (policy, scheduler options)
    "fcfs": ("fcfs", None),
    "plas": ("plas", None),
    "gittins, distribution known": ("srpt", {"knows": "distribution"}),
    "gittins, known, on the default ladder": ("srpt", {"knows": "distribution", "ladder": DEFAULT_LADDER}),
    "gittins, known, on a 4x finer ladder": ("srpt", {"knows": "distribution", "ladder": FINE_LADDER}),
    "gittins, learned from ended programs": ("srpt", {"knows": "ended programs"}),
    "gittins, learned, on the default ladder": ("srpt", {"knows": "ended programs", "ladder": DEFAULT_LADDER}),
}


def mean_token_latency(series: str, rate: float, programs: int, seed: int) -> float:
    policy, options = SERIES[series]
    trace = as_sent(generate("mixed", rate, programs, seed), KEEP_CALLS)
    result = simulate(trace, policy, config=get_preset("cpu-vllm"), scheduler_options=options)
    return summarize(result, {})["mean_token_latency"]


def table(rows: list[dict]) -> str:
    lines = []
    for programs, seeds in RUNS.items():
        lines += [f"\n{programs} programs a point, seeds {list(seeds)}: mean token latency / fcfs's, median of the seeds\n",
                  "| series | " + " | ".join(f"{r:g}/s" for r in RATES) + " |",
                  "|---|" + "---:|" * len(RATES)]  # fmt: skip
        for series in SERIES:
            cells = [next(r["over_fcfs"] for r in rows if (r["programs"], r["rate"], r["series"]) == (programs, rate, series))
                     for rate in RATES]  # fmt: skip
            lines.append(f"| {series} | " + " | ".join(f"{statistics.median(c):.2f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(RUNS), figsize=(12, 4.5), sharey=True)
    for ax, programs in zip(axes, RUNS):
        for series in SERIES:
            points = [r for r in rows if r["programs"] == programs and r["series"] == series]
            ax.plot([r["rate"] for r in points], [statistics.median(r["over_fcfs"]) for r in points], marker="o",
                    label=series, ls="--" if "ladder" in series else "-")  # fmt: skip
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set(title=f"{programs} programs a point", xlabel="program arrivals per second")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("mean token latency / fcfs's (lower is better)")
    axes[-1].legend(fontsize=7)
    fig.suptitle("Simulator, cpu-vllm, mixed cut at 8 calls: the Gittins rank, exact and on queue ladders")
    fig.tight_layout()
    fig.savefig(OUT.with_suffix(".png"), dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    rows = []
    for programs, seeds in RUNS.items():
        for rate in RATES:
            latency = {s: [mean_token_latency(s, rate, programs, seed) for seed in seeds] for s in SERIES}
            for series, values in latency.items():
                ratios = [v / f for v, f in zip(values, latency["fcfs"])]
                rows.append({"programs": programs, "rate": rate, "series": series,
                             "mean_token_latency_s": values, "over_fcfs": ratios})  # fmt: skip
            summary = ", ".join(f"{s} {statistics.median(r['over_fcfs']):.2f}" for s in SERIES for r in rows[-len(SERIES):]
                                if r["series"] == s)  # fmt: skip
            print(f"{programs} programs, {rate:g}/s: {summary}", file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    OUT.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    OUT.with_suffix(".md").write_text("# The Gittins rank on queue ladders (simulator, cpu-vllm, mixed cut at 8 calls)\n" + text)
    plot(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
