"""The simulator's scaling curve across engine replicas (issue 11): for N = 1, 2, 4, ..., 64 replicas
and each balancer, the highest program arrival rate whose mean token latency stays at or under one
fixed target (a multiple of the one-replica unloaded mean token latency). The search is
:mod:`autellix.sim.scaling`; this script runs it and writes bench/results/sim/scaling-<workload>.json
(every simulation's metrics), .md (the table) and .png (programs/s vs N, log-log).

    nice -n 10 python bench/sim/scaling.py --workloads bfcl-accum --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from autellix.sim.presets import get_preset
from autellix.sim.scaling import scaling_curve, scaling_rows
from autellix.sim.sweep import clean_json

BALANCERS = ("autellix", "least-used", "round-robin")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def core_version() -> str:
    """The git commit, and whether rust/ (the core) has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "rust"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted rust/ changes" if dirty else "")


def _fmt(v: float, nd: int = 3) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{nd}g}"


def markdown(
    curve: dict[str, Any], rows: list[dict[str, Any]], meta: dict[str, Any]
) -> str:
    bals = meta["balancers"]
    first = bals[0]
    unl = curve["unloaded"]
    lines = [
        f"# Scaling across replicas: `{curve['workload']}`",
        "",
        f"- command: `{meta['command']}`",
        (
            f"- machine: {meta['machine']}; total run time {meta['elapsed'] / 60:.1f} min "
            f"({meta['simulations']} simulations), commit {meta['commit']}"
        ),
        (
            f"- preset `{meta['preset']}`, policy `{meta['policy']}`, clock `{meta['clock']}`, "
            f"seeds {meta['seeds']} (the table: median over seeds); autellix balancer pins calls "
            f"over {meta['short_call_tokens']} prompt tokens"
        ),
        (
            f"- arrival window {meta['window']:g} s per simulation (at least "
            f"{meta['min_programs']} programs), so the program count grows with the rate, i.e. "
            "with N"
        ),
        (
            f"- target: mean token latency <= {curve['target_x']:g}x the one-replica unloaded "
            f"mean token latency ({unl['mean_token_latency'] * 1e3:.2f} ms/token, "
            f"{unl['programs']} programs at {unl['rate']:g} programs/s) = "
            f"{curve['target'] * 1e3:.1f} ms/token, the same for every N"
        ),
        (
            f"- search: bracketing by x{meta['step']:g} from the previous N's answer x N/N_prev, "
            f"then bisection to {meta['rel_tol'] * 100:g} % (the rate shown met the target; one "
            f"at most {meta['rel_tol'] * 100:g} % higher missed it); `~`: the bracket did not "
            "close within that (per seed: `upper` in the JSON), `>=`: no rate tried missed it"
        ),
        "",
        "Programs/s at equal mean token latency; efficiency = rate(N) / (N x rate(1)).",
        "",
    ]
    head = ["N", *[f"{b} (prog/s)" for b in bals]]
    head += [f"{first} / {b}" for b in bals[1:]]
    head += [f"efficiency {b}" for b in bals]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["engines"])]
        for b in bals:
            x = r.get(b)
            mark = "" if x is None or x["exact"] else ">=" if x.get("open") else "~"
            cells.append(mark + _fmt(x["rate"]) if x else "")
        for b in bals[1:]:
            v = r.get(f"{first}/{b}")
            cells.append(f"{v:.2f}x" if v is not None else "")
        for b in bals:
            x = r.get(b)
            cells.append(f"{x['efficiency']:.2f}" if x else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        (
            "At the rate found (median over seeds): prefix-cache hit rate (cached / (cached + "
            "computed) prompt tokens), engine utilization (busy time / (makespan x N)) and "
            "busy-time imbalance (the busiest engine's busy time / the mean)."
        ),
        "",
    ]
    head = ["N", *[f"hit {b}" for b in bals], *[f"util {b}" for b in bals]]
    head += [f"imbalance {b}" for b in bals]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["engines"])]
        for key in ("prefix_hit_rate", "engine_utilization", "busy_imbalance"):
            for b in bals:
                x = r.get(b)
                cells.append(f"{x[key]:.2f}" if x and math.isfinite(x[key]) else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"![programs/s vs replicas](scaling-{curve['workload']}.png)", ""]
    return "\n".join(lines)


def plot(
    curve: dict[str, Any], rows: list[dict[str, Any]], bals: list[str], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.2))
    ns = [r["engines"] for r in rows]
    one = rows[0][bals[0]]["rate"] / rows[0]["engines"]
    ax.plot(
        ns, [one * n for n in ns], color="grey", ls="--", lw=1, label="ideal linear"
    )
    for b in bals:
        pts = [(r["engines"], r[b]) for r in rows if b in r and r[b]["rate"] > 0]
        ax.plot(
            [n for n, _ in pts], [x["rate"] for _, x in pts], marker="o", ms=4, label=b
        )
        bx.plot(
            [n for n, _ in pts],
            [x["prefix_hit_rate"] for _, x in pts],
            marker="o",
            ms=4,
            label=b,
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("replicas N")
    ax.set_ylabel("programs/s at equal mean token latency")
    ax.set_title(
        f"{curve['workload']}: target {curve['target'] * 1e3:.0f} ms/token", fontsize=10
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    bx.set_xscale("log", base=2)
    bx.set_xlabel("replicas N")
    bx.set_ylabel("prefix-cache hit rate at that rate")
    bx.set_ylim(0, 1)
    bx.grid(True, which="both", alpha=0.3)
    bx.legend(fontsize=8)
    for a in (ax, bx):
        a.set_xticks(ns, [str(n) for n in ns])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--workloads",
        type=_names,
        default=["bfcl-accum"],
        help="generator workloads, or NAME-accum (accumulated context); default bfcl-accum",
    )
    p.add_argument("--replicas", type=_ints, default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--balancers", type=_names, default=list(BALANCERS))
    p.add_argument("--seeds", type=_ints, default=[0])
    p.add_argument(
        "--window", type=float, default=300.0, help="arrival window per simulation, s"
    )
    p.add_argument("--min-programs", type=int, default=50)
    p.add_argument(
        "--target-x",
        type=float,
        default=3.0,
        help="latency target, x the one-replica unloaded mean token latency",
    )
    p.add_argument("--step", type=float, default=1.25, help="bracketing factor")
    p.add_argument(
        "--rel-tol",
        type=float,
        default=0.05,
        help="bisection stops at upper/lower <= 1 + this",
    )
    p.add_argument(
        "--start", type=float, default=1.0, help="first rate tried on one replica"
    )
    p.add_argument(
        "--wall-limit",
        type=float,
        default=None,
        help="real seconds per simulation (a miss)",
    )
    p.add_argument(
        "--short-call-tokens",
        type=int,
        default=2048,
        help="autellix balancer: calls with more prompt tokens are pinned (default 2048, the paper's)",
    )
    p.add_argument("--preset", default="a100-llama8b")
    p.add_argument("--policy", default="plas")
    p.add_argument("--clock", default="work")
    p.add_argument("--out", default="bench/results/sim")
    p.add_argument(
        "--prefix", default="scaling", help="output names: PREFIX-<workload>.*"
    )
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    cfg = get_preset(args.preset)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    for w in args.workloads:
        t0 = time.monotonic()
        curve = scaling_curve(
            w,
            args.replicas,
            args.balancers,
            args.seeds,
            args.window,
            args.target_x,
            cfg,
            args.policy,
            args.clock,
            args.step,
            args.rel_tol,
            args.start,
            args.min_programs,
            args.wall_limit,
            log,
            args.short_call_tokens,
        )
        rows = scaling_rows(curve, args.balancers)
        meta = {
            "command": "nice -n 10 python "
            + " ".join(["bench/sim/scaling.py", *(argv or sys.argv[1:])]),
            "machine": machine(),
            "commit": core_version(),
            "preset": cfg.name,
            "engine": cfg,
            "policy": args.policy,
            "clock": args.clock,
            "seeds": args.seeds,
            "replicas": args.replicas,
            "balancers": args.balancers,
            "window": args.window,
            "min_programs": args.min_programs,
            "short_call_tokens": args.short_call_tokens,
            "step": args.step,
            "rel_tol": args.rel_tol,
            "elapsed": time.monotonic() - t0,
            "simulations": sum(len(s["points"]) for s in curve["searches"]) + 1,
            "search_latency": "mean token latency of the run; when a run stopped early (missed_early) a "
            "lower bound on it that was already over the target",
        }
        stem = f"{args.prefix}-{w}"
        with open(out / f"{stem}.json", "w", encoding="utf-8") as f:
            json.dump(
                clean_json({"meta": meta, "rows": rows, **curve}),
                f,
                indent=1,
                allow_nan=False,
            )
            f.write("\n")
        (out / f"{stem}.md").write_text(markdown(curve, rows, meta), encoding="utf-8")
        print(out / f"{stem}.json")
        print(out / f"{stem}.md")
        if not args.no_plot:
            plot(curve, rows, args.balancers, out / f"{stem}.png")
            print(out / f"{stem}.png")
        log(f"{w}: {meta['simulations']} simulations in {meta['elapsed'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
