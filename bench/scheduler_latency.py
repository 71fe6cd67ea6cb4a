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
    python bench/scheduler_latency.py --baseline-core old/_core.abi3.so   # call by call against another build
"""

from __future__ import annotations

import argparse
import bisect
import importlib.machinery
import importlib.util
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

import autellix_core
from autellix.reference_scheduler import ReferenceScheduler
from autellix_core._core import _NullScheduler

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
    # "all": every running call ran (ran_all=True, what the plug-in does); "list": their ids passed,
    # in another order than the core's batch (which it would take as ran_all), so each is validated
    ran: str


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
        ran = {"ran_all": True} if config.ran == "all" else {"ran": running[::-1]}
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


class PlainDequeScheduler:
    """The floor a researcher would write in plain Python: PLAS without anti-starvation,
    preemption, demotion or validation. A call enters the queue its program's attained service
    falls in (the core's default ladder) and waits FIFO in it; admission takes the queues top-down."""

    def __init__(self, boundaries: list[float]) -> None:
        self.boundaries = boundaries
        self.queues: list[deque[int]] = [deque() for _ in range(len(boundaries) + 1)]
        self.program_of: dict[int, int] = {}
        self.service: dict[int, float] = defaultdict(float)
        self.waiting: set[int] = set()
        self.running: set[int] = set()

    def add_call(self, call_id: int, program_id: int, now: float) -> None:
        self.program_of[call_id] = program_id
        self.waiting.add(call_id)
        self.queues[bisect.bisect_right(self.boundaries, self.service[program_id])].append(call_id)

    def record_service(self, call_ids: list[int], seconds: float, now: float) -> None:
        service, program_of = self.service, self.program_of
        for call_id in call_ids:
            service[program_of[call_id]] += seconds

    def finish_call(self, call_id: int, now: float) -> None:
        self.running.discard(call_id)
        self.waiting.discard(call_id)
        del self.program_of[call_id]

    def schedule(self, now: float, capacity: int) -> list[int]:
        admit: list[int] = []
        free = capacity - len(self.running)
        for queue in self.queues:
            while free > 0 and queue:
                call_id = queue.popleft()
                if call_id in self.waiting:
                    self.waiting.discard(call_id)
                    admit.append(call_id)
                    free -= 1
        self.running.update(admit)
        return admit


class NullScheduler:
    """Decides nothing and keeps nothing: the same loop against it times the interpreter's own part
    of a step (the calls, the arguments, the loop), a floor no scheduler driven from Python gets
    under. It admits arrivals into the free capacity, so the driver's batch stays full as with a
    real scheduler. `autellix_core._NullScheduler` is the same in Rust: what calling into the core
    costs before the core does anything."""

    def __init__(self) -> None:
        self.arrived: list[int] = []
        self.admitted = 0  # arrivals before this index were admitted (one slice a step, no shifting)
        self.running = 0

    def add_call(self, call_id: int, program_id: int, now: float) -> None:
        self.arrived.append(call_id)

    def record_service(self, call_ids: list[int], seconds: float, now: float) -> None:
        pass

    def finish_call(self, call_id: int, now: float) -> None:
        self.running -= 1

    def schedule(self, now: float, capacity: int) -> list[int]:
        admit = self.arrived[self.admitted : self.admitted + capacity - self.running]
        self.admitted += len(admit)
        self.running += len(admit)
        return admit


def measure_call_by_call(make, config: Config, steps: int, seed: int) -> list[int]:
    """Nanoseconds per engine step driven one operation at a time, as a researcher drives the
    core from Python: `record_service` for the running batch, `finish_call` and `add_call` per
    call, then `schedule`."""
    rng = random.Random(seed)
    s = make()
    now = 0.0
    initial = config.queued + config.batch
    for call_id in range(initial):
        s.add_call(call_id, rng.randrange(config.programs), now)
    next_id = initial
    running = _admitted(s.schedule(now, config.batch))
    samples = []
    for _ in range(steps):
        now += STEP_SECONDS
        finished = running[: config.churn]
        arrivals = [(next_id + i, rng.randrange(config.programs)) for i in range(config.churn)]
        next_id += config.churn
        start = time.perf_counter_ns()
        s.record_service(running, STEP_SECONDS, now)
        for call_id in finished:
            s.finish_call(call_id, now)
        for call_id, program_id in arrivals:
            s.add_call(call_id, program_id, now)
        decision = s.schedule(now, config.batch)
        samples.append(time.perf_counter_ns() - start)
        gone = set(finished) | set(getattr(decision, "preempt", ()))
        running = [c for c in running if c not in gone] + _admitted(decision)
    return samples


def _admitted(decision) -> list[int]:
    return list(decision.admit) if hasattr(decision, "admit") else list(decision)


def load_baseline_core(path: Path):
    """Another build of the core (its `_core.abi3.so`, e.g. from `maturin build` at an earlier
    revision), loaded beside this one under a name of its own."""
    name = "baseline_autellix_core._core"
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:
        raise SystemExit(f"--baseline-core: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def run_call_by_call(config: Config, repeats: int, steps: int, baseline=None) -> dict:
    """The core against the plain-Python floor, both driven call by call, same seeds; and against
    a baseline build of the core, taking turns with it run by run so both see the same machine."""
    core_runs, plain_runs, null_runs, ffi_runs, baseline_runs = [], [], [], [], []
    boundaries = autellix_core.Scheduler(config.policy).queue_boundaries
    cores = [(autellix_core, core_runs)] + ([(baseline, baseline_runs)] if baseline else [])
    for repeat in range(repeats):
        seed = 7000 + repeat
        for core, runs in cores if repeat % 2 == 0 else cores[::-1]:
            runs.append(
                measure_call_by_call(lambda: core.Scheduler(config.policy, starvation_ratio=4.0), config, steps, seed)
            )
        plain_runs.append(measure_call_by_call(lambda: PlainDequeScheduler(boundaries), config, steps, seed))
        null_runs.append(measure_call_by_call(NullScheduler, config, steps, seed))
        ffi_runs.append(measure_call_by_call(_NullScheduler, config, steps, seed))
    row = {
        **config.__dict__,
        "rust": summarise(core_runs),
        "plain_python": summarise(plain_runs),
        "interpreter_floor": summarise(null_runs),
        "ffi_floor": summarise(ffi_runs),
    }
    row["speedup_vs_plain_python"] = row["plain_python"]["median_us"] / row["rust"]["median_us"]
    # What a step 5x faster than the plain-Python floor leaves the core for its own work.
    row["five_x_budget_us"] = row["plain_python"]["median_us"] / 5 - row["ffi_floor"]["median_us"]
    if baseline:
        row["baseline_core"] = summarise(baseline_runs)
        # Each run against the baseline's run beside it, so a slow spell of the machine cancels out.
        row["vs_baseline_core"] = statistics.median(
            statistics.median(ours) / statistics.median(theirs) for ours, theirs in zip(core_runs, baseline_runs)
        )
    _progress(
        f"call by call, {config.policy} queued={config.queued} batch={config.batch} churn={config.churn}: "
        f"rust {row['rust']['median_us']:.2f} us, plain python {row['plain_python']['median_us']:.2f} us, "
        f"x{row['speedup_vs_plain_python']:.1f}, interpreter floor {row['interpreter_floor']['median_us']:.2f} us, "
        f"FFI floor {row['ffi_floor']['median_us']:.2f} us"
    )
    return row


def call_by_call_table(rows: list[dict]) -> str:
    baseline = any("baseline_core" in r for r in rows)
    extra_head = " baseline core median (us) | Rust / baseline, run by run |" if baseline else ""
    lines = [
        (
            "| policy | queued | programs | batch | finish + arrive per step | Rust median (us) | Rust p99 (us) "
            "| plain Python median (us) | plain Python p99 (us) | plain Python / Rust "
            "| interpreter floor (us) | FFI floor (us) | Rust above the FFI floor (us) "
            "| left for the core's work at 5x plain Python (us) |" + extra_head
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if baseline else ""),
    ]
    for r in rows:
        extra = f" {r['baseline_core']['median_us']:.2f} | {r['vs_baseline_core']:.2f}x |" if baseline else ""
        lines.append(
            f"| {r['policy']} | {r['queued']} | {r['programs']} | {r['batch']} | {r['churn']} + {r['churn']} "
            f"| {r['rust']['median_us']:.2f} | {r['rust']['p99_us']:.2f} | {r['plain_python']['median_us']:.2f} "
            f"| {r['plain_python']['p99_us']:.2f} | {r['speedup_vs_plain_python']:.1f}x "
            f"| {r['interpreter_floor']['median_us']:.2f} | {r['ffi_floor']['median_us']:.2f} "
            f"| {r['rust']['median_us'] - r['ffi_floor']['median_us']:.2f} | {r['five_x_budget_us']:.2f} |"
            + extra
        )
    return "\n".join(lines)


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


def _pyplot():
    """matplotlib's pyplot on a file backend, or None (said once per plot) if it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _progress("matplotlib is not installed (pip install -e '.[bench]'): skipping the plot")
        return None
    return plt


def plot(rows: list[dict], path: Path) -> None:
    plt = _pyplot()
    if plt is None:
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


def plot_call_by_call(rows: list[dict], path: Path) -> None:
    """The per-call step against its floors and the 5x line, one group of bars per configuration."""
    plt = _pyplot()
    if plt is None:
        return
    series = [
        ("plain Python", "plain_python", "tab:orange"),
        ("Rust core", "rust", "tab:blue"),
        ("FFI floor", "ffi_floor", "tab:gray"),
        ("interpreter floor", "interpreter_floor", "lightgray"),
    ]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(series)
    for i, (label, key, color) in enumerate(series):
        xs = [n + (i - 1.5) * width for n in range(len(rows))]
        ax.bar(xs, [r[key]["median_us"] for r in rows], width, label=label, color=color)
    for n, r in enumerate(rows):
        ax.hlines(r["plain_python"]["median_us"] / 5, n - 0.45, n + 0.45, colors="black", linestyles="dashed",
                  label="5x faster than plain Python" if n == 0 else None)
    ax.set_xticks(range(len(rows)), [f"{r['policy']}, {r['programs']} programs" for r in rows])
    ax.set(ylabel="median time per step (us)")
    ax.set_title(f"Per-call API: one step of {rows[0]['batch']} running, {rows[0]['churn']} finishes and arrivals, "
                 f"{rows[0]['queued']} queued")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
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
    parser.add_argument(
        "--call-by-call-queued", type=int, default=10_000, help="queued calls of the call-by-call measurement"
    )
    parser.add_argument(
        "--baseline-core", type=Path, help="another build's _core.abi3.so, measured call by call in turns with this one"
    )
    args = parser.parse_args(argv)
    baseline = load_baseline_core(args.baseline_core) if args.baseline_core else None
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
    # The per-call API at the load: 256 running, 16 finishing and 16 arriving a step.
    by_call = [
        run_call_by_call(
            Config(args.call_by_call_queued, programs, policy, 256, 16, "list"), args.repeats, rust_steps, baseline
        )
        for policy in args.policies
        for programs in args.programs
    ]
    result = {
        "machine": machine(),
        "step_seconds": STEP_SECONDS,
        "rows": rows,
        "growth": growth(rows),
        "call_by_call": by_call,
        "baseline_core": None if baseline is None else str(args.baseline_core),
    }
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
    by_call_section = (
        "\n\nDriven call by call (`record_service` of the batch, `finish_call` and `add_call` per call, "
        "`schedule`), against the plain-Python floor (`PlainDequeScheduler`: PLAS queues as deques, no "
        "anti-starvation, preemption, demotion or validation), same seeds. The interpreter floor is the same "
        "loop against `NullScheduler`, which does nothing: what any scheduler driven from Python pays on top of "
        "its own work. The FFI floor is the same loop against `autellix_core._NullScheduler`, which takes the core's "
        "arguments the same way and decides nothing: what any scheduler behind this module pays to be called; the last "
        "column is what a step 5x faster than the plain-Python floor leaves the core for its own work."
        + (f" The baseline core is `{args.baseline_core}`, run in turns with this one." if baseline else "")
        + "\n\n" + call_by_call_table(by_call) + "\n"
    )
    args.out.with_suffix(".md").write_text(
        header + markdown + "\n\nGrowth with queue size:\n" + "\n".join(growth_lines) + by_call_section
    )
    plot(rows, args.out.with_suffix(".png"))
    plot_call_by_call(by_call, args.out.parent / f"{args.out.name}-call-by-call.png")
    print(header + markdown)
    print("\n".join(growth_lines))
    print(by_call_section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
