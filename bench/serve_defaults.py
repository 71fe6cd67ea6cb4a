#!/usr/bin/env python3
"""`autellix serve` on its defaults against `autellix serve --policy vllm`, end to end.

The issue's own check, as a new user would run it: two servers on the same engine settings
(`--model tiny --max-num-seqs 8 --kv-cache-memory 256MiB`, no scheduler flags), one with
Autellix's scheduler (plas) and one with vanilla vLLM's (`--policy vllm`, prefix caching on as in
vLLM), both up for the whole run, and `examples/load_generator.py` (openai SDK clients over HTTP)
replaying the same seeded agent load on each in turn, point by point. The report: mean token
latency, mean and P95 program latency and throughput per rate, the median of the seeds, and the
ratios against vLLM in the same run. Writes `bench/results/serve/<name>.{json,md,png}`.

    .venv/bin/python bench/serve_defaults.py                     # the issue's load, 4 rates x 2 seeds (~7 min)
    .venv/bin/python bench/serve_defaults.py --rates 5 --seeds 0 --no-write   # one point
    .venv/bin/python bench/serve_defaults.py --call-fraction 0.25 --programs 96 --rates 1 2 3 5 8 --name tails   # heavy tails kept
    .venv/bin/python bench/serve_defaults.py --call-fraction 0.25 --programs 96 --merge a.json b.json --name both
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "serve"
ENGINE_FLAGS = ["--model", "tiny", "--max-num-seqs", "8", "--kv-cache-memory", "256MiB"]
SERIES = {"autellix": [], "vllm": ["--policy", "vllm"]}  # extra `autellix serve` flags
# The issue's load: mixed programs, lengths x0.25, each program's first 8 calls, delays x0.25.
ISSUE_LOAD = ["--workload", "mixed", "--token-scale", "0.25", "--max-calls", "8", "--delay-scale", "0.25"]


def load_flags(call_fraction: float | None, tell_calls_left: bool) -> list[str]:
    """The load generator's flags: the issue's load, or with --call-fraction a random share of each
    program's calls instead of its first 8 (the engine bench's scaling, which keeps heavy programs
    heavy); with --tell-calls-left the clients say how many calls each program has left."""
    flags = list(ISSUE_LOAD)
    if call_fraction is not None:
        at = flags.index("--max-calls")
        flags[at : at + 2] = ["--call-fraction", f"{call_fraction:g}"]
    return flags + (["--tell-calls-left"] if tell_calls_left else [])


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    return model or platform.processor() or platform.machine()


def progress(message: str) -> None:
    print(f"[serve_defaults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def start_server(extra: list[str], port: int, log: Path) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "autellix"), "serve", *ENGINE_FLAGS, "--port", str(port), *extra]
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)


def wait_ready(server: subprocess.Popen, port: int, timeout_s: float = 600.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server on port {port} exited with {server.returncode}: see its log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"the server on port {port} was not ready in {timeout_s:.0f} s")


COUNTERS = {"preemptions": "autellix:preemptions_total", "promotions": "autellix:starvation_promotions_total"}


def counters(port: int) -> dict[str, float]:
    """The scheduler's counters on the server's /metrics, summed over engines (0 where absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    totals = dict.fromkeys(COUNTERS, 0.0)
    names = {metric: name for name, metric in COUNTERS.items()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names:
                totals[names[sample.name]] += sample.value
    return totals


def run_load(port: int, rate: float, seed: int, programs: int, load: list[str]) -> dict:
    """The load generator's report for one point, with the scheduler's counters over it."""
    before = counters(port)
    command = [
        sys.executable, str(ROOT / "examples" / "load_generator.py"), "--base-url", f"http://127.0.0.1:{port}",
        *load, "--programs", str(programs), "--rate", str(rate), "--seed", str(seed), "--json",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    after = counters(port)
    return report | {name: after[name] - before[name] for name in COUNTERS}


METRICS = {
    "token_latency_mean": ("mean token latency (ms)", 1e3),
    "latency_mean": ("mean program latency (s)", 1.0),
    "latency_p95": ("P95 program latency (s)", 1.0),
    "throughput_programs_per_s": ("programs/s", 1.0),
}


def summarise(points: list[dict]) -> list[dict]:
    """Median over seeds per (series, rate), and each metric's ratio to vLLM's at that rate."""
    rows = []
    for rate in sorted({p["rate"] for p in points}):
        row: dict = {"rate": rate}
        for series in SERIES:
            reports = [p["report"] for p in points if p["rate"] == rate and p["series"] == series]
            row[series] = {key: statistics.median(r[key] for r in reports) for key in METRICS}
            row[series]["completed"] = min(r["completed"] for r in reports)
            row[series]["call_errors"] = sum(r["call_errors"] for r in reports)
            for name in COUNTERS:
                row[series][name] = statistics.median(r[name] for r in reports)
        row["autellix_over_vllm"] = {key: row["autellix"][key] / row["vllm"][key] for key in METRICS}
        rows.append(row)
    return rows


def table(rows: list[dict], programs: int, seeds: list[int], load: list[str] = ISSUE_LOAD) -> str:
    head = "| rate (programs/s) | " + " | ".join(f"{label}: autellix / vllm (ratio)" for label, _ in METRICS.values())
    lines = [head + " | completed | call errors | autellix preemptions / promotions |", "|---:|" + "---:|" * (len(METRICS) + 3)]
    for row in rows:
        cells = [
            f"{row['autellix'][key] * scale:.2f} / {row['vllm'][key] * scale:.2f} ({row['autellix_over_vllm'][key]:.2f}x)"
            for key, (_, scale) in METRICS.items()
        ]
        done = f"{row['autellix']['completed']} / {row['vllm']['completed']} of {programs}"
        errors = f"{row['autellix']['call_errors']} / {row['vllm']['call_errors']}"
        scheduler = f"{row['autellix']['preemptions']:.0f} / {row['autellix']['promotions']:.0f}"
        lines.append(f"| {row['rate']:g} | " + " | ".join(cells) + f" | {done} | {errors} | {scheduler} |")
    return (
        f"`autellix serve {' '.join(ENGINE_FLAGS)}` on its defaults (plas) against the same with "
        f"`--policy vllm`; load `{' '.join(load)} --programs {programs}`, "
        f"seeds {seeds}, "
        "median of the seeds (completed: the fewest of any seed; preemptions and starvation "
        "promotions a point from the server's /metrics). Ratios below 1 favour Autellix, "
        "except programs/s.\n\n" + "\n".join(lines) + "\n"
    )


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["token_latency_mean", "latency_p95"]
    fig, axes = plt.subplots(1, len(keys), figsize=(10, 4))
    for ax, key in zip(axes, keys):
        label, scale = METRICS[key]
        for series, style in zip(SERIES, ["o-", "s--"]):
            ax.plot([r["rate"] for r in rows], [r[series][key] * scale for r in rows], style, label=series)
        ax.set(xlabel="program arrivals per second", ylabel=label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("autellix serve on defaults vs --policy vllm (tiny model, CPU, lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def measure(args: argparse.Namespace, load: list[str]) -> list[dict]:
    """Both servers up for the whole run, the points in turns; each point the load generator's report."""
    ports = {series: 8200 + i for i, series in enumerate(SERIES)}
    logs = Path(tempfile.mkdtemp(prefix="serve_defaults-")) if args.no_write else RESULTS  # the servers' logs
    servers = {s: start_server(SERIES[s], ports[s], logs / f"{args.name}-{s}.log") for s in SERIES}
    points = []
    try:
        for series, server in servers.items():
            wait_ready(server, ports[series])
        progress(f"servers up: {ports}")
        order = list(SERIES)
        for seed in args.seeds:
            for rate in args.rates:
                for series in order:
                    report = run_load(ports[series], rate, seed, args.programs, load)
                    points.append({"series": series, "rate": rate, "seed": seed, "report": report})
                    progress(
                        f"seed {seed} rate {rate:g} {series}: {report['token_latency_mean'] * 1e3:.2f} ms/token, "
                        f"P95 {report['latency_p95']:.2f} s, {report['completed']}/{report['programs']} done"
                    )
                order.reverse()  # whoever went second goes first next, so drift hits both alike
    finally:
        for server in servers.values():
            server.terminate()
        for server in servers.values():
            server.wait(timeout=60)
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[1.5, 3.0, 5.0, 8.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--programs", type=int, default=48)
    parser.add_argument("--name", default="defaults-vs-vllm")
    parser.add_argument(
        "--tell-calls-left", action="store_true",
        help="clients tell each call's calls left (X-Autellix-Calls-Left; vanilla vLLM ignores it)",
    )
    parser.add_argument(
        "--call-fraction", type=float, default=None,
        help="each program keeps this random share of its calls instead of its first 8 (heavy programs stay heavy)",
    )
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument(
        "--merge", type=Path, nargs="+", metavar="JSON",
        help="no servers: the table and plot again from these runs' results (the same load), their points together",
    )
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    load = load_flags(args.call_fraction, args.tell_calls_left)
    if args.merge:
        points = [point for path in args.merge for point in json.loads(path.read_text())["points"]]
        args.seeds = sorted({p["seed"] for p in points})
    else:
        points = measure(args, load)
    rows = summarise(points)
    text = table(rows, args.programs, args.seeds, load)
    print(text)
    if not args.no_write:
        machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
        out = RESULTS / args.name
        out.with_suffix(".json").write_text(json.dumps({"machine": machine, "points": points, "rows": rows}, indent=1))
        out.with_suffix(".md").write_text(f"# {args.name}\n\nMachine: {machine}\n\n{text}")
        plot(rows, out.with_suffix(".png"))
        progress(f"wrote {out}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
