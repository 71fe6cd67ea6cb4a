"""Scheduler latency bench: the cost of one engine step, seen from Python.

A step is what the vLLM plug-in does every engine iteration: credit the running batch with the
step's engine time, finish the calls that completed, add the calls that arrived, and ask for a
decision. The queue is held in steady state at N waiting calls spread over P programs. Measured:
the Rust core (`autellix_core.Scheduler.step`, one FFI crossing), the pure-Python reference of the
same policy (`autellix.reference_scheduler`), and, when vLLM is installed, vLLM's own
`PriorityRequestQueue` doing just the queue part (push arrivals, pop admissions; no program
accounting, no preemption), all in the same run.

    python bench/scheduler_latency.py            # full grid, writes bench/results/scheduler_latency.*
    python bench/scheduler_latency.py --quick    # a smaller grid for a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import autellix_core
from autellix.reference_scheduler import ReferenceScheduler

RESULTS = Path(__file__).parent / "results"
STEP_SECONDS = 0.02  # one decode step of an 8B model on a GPU


@dataclass(order=True)
class _VllmLikeRequest:
    """What vLLM's PriorityRequestQueue orders by: (priority, arrival_time, request_id)."""

    priority: int
    arrival_time: float
    request_id: str = field(compare=True)


@dataclass
class Config:
    queued: int
    programs: int
    policy: str
    batch: int
    churn: int  # calls that finish and arrive per step
    ran: str  # "all": every running call ran (ran_all=True, what the plug-in does); "list": ids passed


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_scheduler(make, config: Config, steps: int, seed: int) -> list[int]:
    """Nanoseconds per `step` call, in steady state with `config.queued` calls waiting."""
    rng = random.Random(seed)
    s = make()
    now, next_id = 0.0, 0
    initial = config.queued + config.batch
    ids = list(range(initial))
    s.add_calls(ids, [rng.randrange(config.programs) for _ in ids], now)
    next_id = initial
    running: list[int] = list(s.schedule(now, config.batch).admit)
    samples = []
    for step in range(steps):
        now += STEP_SECONDS
        finished = running[: config.churn]
        new_calls = list(range(next_id, next_id + config.churn))
        next_id += config.churn
        new_programs = [rng.randrange(config.programs) for _ in new_calls]
        ran = {"ran_all": True} if config.ran == "all" else {"ran": running}
        start = time.perf_counter_ns()
        decision = s.step(
            now,
            config.batch,
            ran_seconds=STEP_SECONDS,
            finished=finished,
            new_calls=new_calls,
            new_programs=new_programs,
            **ran,
        )
        samples.append(time.perf_counter_ns() - start)
        gone = set(finished) | set(decision.preempt)
        running = [c for c in running if c not in gone] + list(decision.admit)
    return samples


def measure_vllm_queue(config: Config, steps: int, seed: int) -> list[int] | None:
    """The queue part of a step with vLLM's PriorityRequestQueue, if vLLM is importable."""
    try:
        from vllm.v1.core.sched.request_queue import PriorityRequestQueue
    except Exception:  # vLLM not installed, or it failed to import on this machine
        return None
    rng = random.Random(seed)
    queue = PriorityRequestQueue()
    for i in range(config.queued):
        queue.add_request(_VllmLikeRequest(rng.randrange(8), float(i), str(i)))
    samples, next_id = [], config.queued
    for _ in range(steps):
        arrivals = [_VllmLikeRequest(rng.randrange(8), float(next_id + i), str(next_id + i)) for i in range(config.churn)]
        next_id += config.churn
        start = time.perf_counter_ns()
        for request in arrivals:
            queue.add_request(request)
        for _ in range(config.churn):
            queue.pop_request()
        samples.append(time.perf_counter_ns() - start)
    return samples


def summarise(runs: list[list[int]]) -> dict:
    """Median over runs of each run's median and p99, in microseconds."""
    medians = [statistics.median(r) / 1000 for r in runs]
    p99s = [_percentile(r, 0.99) / 1000 for r in runs]
    return {"median_us": statistics.median(medians), "p99_us": statistics.median(p99s), "runs": len(runs)}


def machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
        "autellix_core": autellix_core.__version__,
    }


def run(configs: list[Config], repeats: int, rust_steps: int, python_steps: int) -> list[dict]:
    rows = []
    for n, config in enumerate(configs, 1):
        kwargs = {"starvation_ratio": 4.0}
        rust_runs, python_runs, vllm_runs = [], [], []
        for repeat in range(repeats):
            seed = 1000 * n + repeat
            rust_runs.append(measure_scheduler(lambda: autellix_core.Scheduler(config.policy, **kwargs), config, rust_steps, seed))
            python_runs.append(measure_scheduler(lambda: ReferenceScheduler(config.policy, **kwargs), config, python_steps, seed))
            vllm = measure_vllm_queue(config, rust_steps, seed)
            if vllm is not None:
                vllm_runs.append(vllm)
        row = {
            **config.__dict__,
            "rust": summarise(rust_runs),
            "python_reference": summarise(python_runs),
            "vllm_priority_queue": summarise(vllm_runs) if vllm_runs else None,
        }
        row["speedup_vs_python"] = row["python_reference"]["median_us"] / row["rust"]["median_us"]
        rows.append(row)
        _progress(
            f"[{n}/{len(configs)}] {config.policy} ran={config.ran} queued={config.queued:>6} programs={config.programs:>5}: "
            f"rust {row['rust']['median_us']:.2f} us, python {row['python_reference']['median_us']:.1f} us, "
            f"x{row['speedup_vs_python']:.0f}"
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| policy | ran | queued | programs | Rust median (us) | Rust p99 (us) | Python median (us) | Python p99 (us) | Python/Rust | vLLM queue median (us) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        vllm = r["vllm_priority_queue"]
        vllm_median = "n/a" if vllm is None else f"{vllm['median_us']:.2f}"
        lines.append(
            f"| {r['policy']} | {r['ran']} | {r['queued']} | {r['programs']} | {r['rust']['median_us']:.2f} | {r['rust']['p99_us']:.2f} "
            f"| {r['python_reference']['median_us']:.1f} | {r['python_reference']['p99_us']:.1f} "
            f"| {r['speedup_vs_python']:.0f}x | {vllm_median} |"
        )
    return "\n".join(lines)


def _series(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows grouped by (policy, programs, ran), each group ordered by queue size."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["policy"], row["programs"], row["ran"]), []).append(row)
    return {key: sorted(group, key=lambda r: r["queued"]) for key, group in sorted(groups.items())}


def growth(rows: list[dict]) -> list[dict]:
    """Cost at the largest queue over cost at the smallest, against what O(log n) allows."""
    out = []
    for (policy, programs, ran), series in _series(rows).items():
        if len(series) >= 2:
            small, large = series[0], series[-1]
            out.append(
                {
                    "policy": policy,
                    "programs": programs,
                    "ran": ran,
                    "from": small["queued"],
                    "to": large["queued"],
                    "rust_cost_ratio": large["rust"]["median_us"] / small["rust"]["median_us"],
                    "log_n_ratio": math.log(large["queued"]) / math.log(small["queued"]),
                }
            )
    return out


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _progress("matplotlib is not installed (pip install -e '.[bench]'): skipping the plot")
        return
    fig, ax = plt.subplots(figsize=(10, 5))
    for (policy, programs, ran), series in _series(rows).items():
        xs = [r["queued"] for r in series]
        label = f"{policy}, {programs} programs, ran={ran}"
        ax.plot(xs, [r["rust"]["median_us"] for r in series], "o-", label=f"Rust core: {label}")
        ax.plot(xs, [r["python_reference"]["median_us"] for r in series], "s--", label=f"Python reference: {label}")
    # vLLM's queue knows no policies or programs: one series (from the first group) is enough.
    first = rows[0]
    vllm = [
        (r["queued"], r["vllm_priority_queue"]["median_us"])
        for r in _series(rows)[(first["policy"], first["programs"], first["ran"])]
        if r["vllm_priority_queue"]
    ]
    if vllm:
        ax.plot(*zip(*vllm), "k^:", label="vLLM PriorityRequestQueue (queue ops only)")
    ax.set(xscale="log", yscale="log", xlabel="queued calls", ylabel="median time per engine step (us)")
    ax.set_title("Scheduler cost per engine step, batch of 64 (lower is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small grid and few steps (smoke run)")
    parser.add_argument("--queued", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--programs", type=int, nargs="+", default=[100, 10_000])
    parser.add_argument("--policies", nargs="+", default=["plas", "atlas"], choices=["fcfs", "mlfq", "plas", "atlas"])
    parser.add_argument("--batch", type=int, default=64, help="running calls per step (the engine's batch)")
    parser.add_argument("--churn", type=int, default=4, help="calls finishing and arriving per step")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "scheduler_latency")
    args = parser.parse_args(argv)
    rust_steps, python_steps = 3000, 600
    if args.quick:
        args.queued, args.programs, args.policies, args.repeats = [1_000, 10_000], [100], ["plas"], 3
        rust_steps, python_steps = 500, 100
    configs = [
        Config(queued, programs, policy, args.batch, args.churn, ran)
        for policy in args.policies
        for ran in ("all", "list")
        for programs in args.programs
        for queued in args.queued
    ]
    rows = run(configs, args.repeats, rust_steps, python_steps)
    result = {"machine": machine(), "step_seconds": STEP_SECONDS, "rows": rows, "growth": growth(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = table(rows)
    growth_lines = [
        f"- {g['policy']}, ran={g['ran']}, {g['programs']} programs: {g['from']} -> {g['to']} queued calls, Rust cost x{g['rust_cost_ratio']:.2f} "
        f"(log n grows x{g['log_n_ratio']:.2f})"
        for g in result["growth"]
    ]
    header = (
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, Python {result['machine']['python']}. "
        f"Batch {args.batch} running calls, {args.churn} finish and {args.churn} arrive per step; "
        f"median of {args.repeats} runs of each run's median / p99.\n\n"
    )
    args.out.with_suffix(".md").write_text(header + markdown + "\n\nGrowth with queue size:\n" + "\n".join(growth_lines) + "\n")
    plot(rows, args.out.with_suffix(".png"))
    print(header + markdown)
    print("\n".join(growth_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
