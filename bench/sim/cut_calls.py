#!/usr/bin/env python3
"""Does cutting each program at its first 8 calls take plas's gain over FCFS away?

`bench/serve_defaults.py` replays the mixed workload through `examples/load_generator.py`, whose
`plan` scales it (lengths x0.25, prompts capped at 512 and outputs at 64 tokens, delays x0.25) and,
on the issue's load, cuts each program at its first 8 calls; there `autellix serve` on its defaults
was no robust win over vanilla vLLM. This feeds the same `plan`'s programs to the simulator
(`cpu-vllm` preset, the core on its defaults), plas against fcfs, with and without the cut, 96
programs a point, 4 seeds: the ratio says how much of plas's gain the cut itself removes, without
the real engine's noise.

    .venv/bin/python bench/sim/cut_calls.py        # under a minute

Writes bench/results/sim/cut-calls.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from autellix.sim.metrics import summarize
from autellix.sim.presets import get_preset
from autellix.sim.simulator import simulate
from autellix.sim.trace import Call, Program
from autellix.sim.workloads import generate

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
import load_generator  # noqa: E402  (examples/ is not a package)

OUT = ROOT / "bench" / "results" / "sim" / "cut-calls"
RATES = [1.5, 3.0, 5.0, 8.0]
SEEDS = range(4)
PROGRAMS = 96


def as_sent(programs: list[Program], keep_calls: int | None) -> list[Program]:
    """The programs as `examples/load_generator.py` sends them on the serve bench's load (its own
    `plan`: lengths x0.25 and capped at its defaults, delays x0.25, the first `keep_calls` calls)."""
    load = argparse.Namespace(workload="mixed", token_scale=0.25, max_prompt=512, max_output=64,
                              max_calls=keep_calls, call_fraction=None, delay_scale=0.25, seed=0)  # fmt: skip
    return [
        Program(p.trace_id, p.arrival, [Call(c.call_id, c.prompt_tokens, c.output_tokens, c.parents, c.delay,
                                             c.prefix_tokens) for c in p.calls], p.system_tokens, p.workload)  # fmt: skip
        for p in load_generator.plan(programs, load)
    ]


def mean_token_latency(policy: str, rate: float, seed: int, keep_calls: int | None) -> float:
    programs = as_sent(generate("mixed", rate, PROGRAMS, seed), keep_calls)
    result = simulate(programs, policy, config=get_preset("cpu-vllm"))
    return summarize(result, {})["mean_token_latency"]


def main() -> int:
    rows = []
    for keep_calls in (8, None):
        for rate in RATES:
            fcfs = [mean_token_latency("fcfs", rate, seed, keep_calls) for seed in SEEDS]
            plas = [mean_token_latency("plas", rate, seed, keep_calls) for seed in SEEDS]
            ratios = [p / f for p, f in zip(plas, fcfs)]
            row = {"keep_calls": keep_calls, "rate": rate, "fcfs_ms": statistics.median(fcfs) * 1e3,
                   "plas_ms": statistics.median(plas) * 1e3, "plas_over_fcfs": ratios}  # fmt: skip
            rows.append(row)
            print(f"first {keep_calls or 'all'} calls, {rate:g}/s: fcfs {row['fcfs_ms']:.1f} ms, plas {row['plas_ms']:.1f} ms, "
                  f"plas/fcfs by seed {' '.join(f'{r:.2f}' for r in ratios)}", file=sys.stderr, flush=True)  # fmt: skip
    lines = ["| calls kept | programs/s | fcfs (ms/token) | plas (ms/token) | plas / fcfs, seed by seed |", "|---|---:|---:|---:|---|"]
    for r in rows:
        seeds = ", ".join(f"{x:.2f}" for x in r["plas_over_fcfs"])
        lines.append(f"| {'first 8' if r['keep_calls'] else 'all'} | {r['rate']:g} | {r['fcfs_ms']:.1f} | {r['plas_ms']:.1f} | {seeds} |")
    text = f"Simulator, cpu-vllm preset, mixed, {PROGRAMS} programs, seeds {list(SEEDS)}, medians of the seeds.\n\n" + "\n".join(lines) + "\n"
    print(text)
    OUT.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    OUT.with_suffix(".md").write_text("# Cutting programs at 8 calls (simulator)\n\n" + text)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for keep_calls, style in ((8, "o-"), (None, "s--")):
        series = [r for r in rows if r["keep_calls"] == keep_calls]
        ax.plot([r["rate"] for r in series], [statistics.median(r["plas_over_fcfs"]) for r in series], style,
                label=f"{'first 8 calls' if keep_calls else 'all calls'}")  # fmt: skip
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xlabel="program arrivals per second", ylabel="plas / fcfs mean token latency",
           title="Simulator, cpu-vllm, mixed scaled x0.25 (lower favours plas)")  # fmt: skip
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT.with_suffix(".png"), dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
