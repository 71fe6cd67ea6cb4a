"""What the Ray path (engine/ray_replicas.py) costs per call and per token over a local replica.

In one run and one process: a driver with one local AsyncLLM replica ("local") and a driver with
one Ray actor replica on a local Ray cluster ("ray"), same tiny model and settings. Both are up
for the whole run and the paths alternate call by call, so load drift hits both alike.

- per call: sequential calls of one output token, timed from the call to its last chunk (what a
  client of `driver.generate` waits; the HTTP layer above is the same for both paths);
- per token: one sequential call of `--tokens` output tokens, the gap between its chunks divided
  by the tokens each chunk brought;
- front-end CPU: the process's CPU time per call and per token (Ray's client work included);
- concurrent: `--concurrency` calls of `--tokens` tokens at once, tokens/s of the whole batch
  (where one long poll per replica carries the outputs of every running call).

    .venv/bin/python bench/ray_overhead.py                 # ~3 min (most of it starting the actor)
    .venv/bin/python bench/ray_overhead.py --calls 30 --no-write   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from vllm import SamplingParams

from autellix.engine import EngineDriver, EngineOptions

PROMPT = list(range(10, 42))  # 32 token ids
OUT = Path(__file__).parent / "results" / "ray"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "p99": pct(values, 0.99), "n": len(values)}


async def one_call(driver: EngineDriver, rid: str, max_tokens: int) -> tuple[float, list[tuple[float, int]]]:
    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0)
    started = time.perf_counter()
    marks: list[tuple[float, int]] = []
    async for chunk in driver.generate(rid, PROMPT, params, program_id=7):
        marks.append((time.perf_counter(), len(chunk.token_ids)))
    return time.perf_counter() - started, marks


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    base = dict(model="tiny", engines=1, max_num_seqs=16, max_model_len=1024, kv_cache_memory_bytes=64 << 20,
                engine_args={"enforce_eager": True})
    drivers = {"local": EngineDriver(EngineOptions(**base)),
               "ray": EngineDriver(EngineOptions(**base, ray_address="auto", ray_num_cpus=1))}
    try:
        for driver in drivers.values():
            await driver.start()
        for name, driver in drivers.items():  # warm up
            for i in range(5):
                await one_call(driver, f"warm-{name}-{i}", 8)
        per_call: dict[str, list[float]] = {k: [] for k in drivers}
        cpu_call: dict[str, list[float]] = {k: [] for k in drivers}
        for i in range(args.calls):
            for name, driver in drivers.items():
                cpu = time.process_time()
                elapsed, _ = await one_call(driver, f"c-{name}-{i}", 1)
                cpu_call[name].append(time.process_time() - cpu)
                per_call[name].append(elapsed)
        per_token: dict[str, list[float]] = {k: [] for k in drivers}
        cpu_token: dict[str, list[float]] = {k: [] for k in drivers}
        for r in range(args.long_calls):
            for name, driver in drivers.items():
                cpu = time.process_time()
                _, marks = await one_call(driver, f"t-{name}-{r}", args.tokens)
                cpu_token[name].append((time.process_time() - cpu) / args.tokens)
                for (t0, _), (t1, n) in zip(marks, marks[1:]):
                    if n:
                        per_token[name].extend([(t1 - t0) / n] * n)
        concurrent: dict[str, float] = {}
        for name, driver in drivers.items():  # the first batch of a new size is slow: warm it up
            await asyncio.gather(*(one_call(driver, f"pw-{name}-{i}", 8) for i in range(args.concurrency)))
        for name, driver in drivers.items():
            started = time.perf_counter()
            results = await asyncio.gather(
                *(one_call(driver, f"p-{name}-{i}", args.tokens) for i in range(args.concurrency))
            )
            tokens = sum(sum(n for _, n in marks) for _, marks in results)
            concurrent[name] = tokens / (time.perf_counter() - started)
    finally:
        for driver in drivers.values():
            await driver.shutdown()
        ray.shutdown()
    ms = lambda d: {k: (v * 1e3 if k != "n" else v) for k, v in d.items()}  # noqa: E731
    return {
        "per_call_ms": {k: ms(summary(v)) for k, v in per_call.items()},
        "per_token_ms": {k: ms(summary(v)) for k, v in per_token.items()},
        "frontend_cpu_per_call_ms": {k: ms(summary(v)) for k, v in cpu_call.items()},
        "frontend_cpu_per_token_ms": {k: ms(summary(v)) for k, v in cpu_token.items()},
        "concurrent_tokens_per_s": concurrent,
        "settings": {"calls": args.calls, "tokens": args.tokens, "long_calls": args.long_calls,
                     "concurrency": args.concurrency, "prompt_tokens": len(PROMPT), "model": "tiny"},
    }


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}"


def write(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ray_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [("per call (1 token), latency", "per_call_ms"), ("per token, gap", "per_token_ms"),
            ("front-end CPU per call", "frontend_cpu_per_call_ms"), ("front-end CPU per token", "frontend_cpu_per_token_ms")]
    lines = [
        "# Ray replica vs local replica (bench/ray_overhead.py)", "",
        f"Machine: {result['machine']}. Run {result['date']}. Tiny model, one replica per path, "
        f"{result['settings']['prompt_tokens']}-token prompts; Ray: a local single-node cluster.", "",
        "| measure | local median | local p99 | Ray median | Ray p99 | Ray - local (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, key in rows:
        lo, ra = result[key]["local"], result[key]["ray"]
        lines.append(f"| {label} (ms) | {lo['median']:.3f} | {lo['p99']:.3f} | {ra['median']:.3f} | {ra['p99']:.3f} | "
                     f"{ra['median'] - lo['median']:+.3f} |")
    c = result["concurrent_tokens_per_s"]
    lines += ["", f"{result['settings']['concurrency']} concurrent calls of {result['settings']['tokens']} tokens: "
              f"local {c['local']:.0f} tokens/s, Ray {c['ray']:.0f} tokens/s.", "",
              "Both engines, the front end and Ray share the same cores here; the Ray actor asks for one CPU, "
              "and Ray sets OMP_NUM_THREADS to an actor's CPU count, so its engine computes on fewer threads "
              "than the local one: the concurrent gap is not all Ray overhead (not yet measured apart).", ""]
    (OUT / "ray_overhead.md").write_text("\n".join(lines))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (label, key) in zip(axes, rows[:2]):
        x = range(2)
        for offset, stat in ((-0.2, "median"), (0.2, "p99")):
            ax.bar([i + offset for i in x], [result[key][p][stat] for p in ("local", "ray")], width=0.4, label=stat)
        ax.set_xticks(list(x), ["local", "Ray"])
        ax.set_ylabel("ms")
        ax.set_title(label)
        ax.legend()
    fig.suptitle(f"Ray path vs local replica ({result['machine'].split(' (')[0]})")
    fig.tight_layout()
    fig.savefig(OUT / "ray_overhead.png", dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--long-calls", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    import uvloop

    result = uvloop.run(bench(args))
    result["machine"] = machine()
    result["date"] = datetime.date.today().isoformat()
    print(json.dumps(result, indent=2))
    if not args.no_write:
        write(result)


if __name__ == "__main__":
    main()
