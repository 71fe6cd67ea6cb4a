"""How far one front end scales: calls/s through `autellix serve`'s app and balancer when the
engines are never the limit.

The server is the real one (aiohttp app, program identity and table, vLLM's OpenAI serving layer
rendering and validating each call, the replica router and the Rust load balancer) over N
STAND-IN replicas (`autellix.engine.stand_in.StandInReplica`): no engine, no model run; each
answers a call with vLLM `RequestOutput`s of `max_tokens` tokens at once (or at
`--tokens-per-s` per call), with the tiny model's real config, renderer and tokenizer. One
server per N, all up for the whole run in this process (uvloop, as `autellix serve`); the points
are interleaved so that load drift on the shared box hits them alike.

The load comes from a SEPARATE process per point (this script with `--client`): C concurrent
workers on a raw aiohttp client (cheaper per call than the openai SDK, so the load generator is
not the limit), each a program of its own (`X-Autellix-Program`), posting short /v1/completions
calls back to back (32 prompt token ids, `ignore_eos`; `--shapes`: max_tokens 1 and 16 answered
as one JSON body, and 16 streamed, one server-sent event a token).
After a warm-up it counts the calls finished in a fixed window, and reads the server process's
CPU time from /proc over the same window (whole process, and its event-loop thread alone): near
100% of one core is the front end being the limit. By default the server is pinned to CPU 0 and
the load generator to CPU 1 (`--no-pin`: neither); other work on the box shares both.

    .venv/bin/python bench/frontend_ceiling.py          # 3 runs x 5 concurrencies x 3 N x 3 shapes, ~11 min
    .venv/bin/python bench/frontend_ceiling.py --runs 1 --concurrency 1,16 --replicas 1 --no-write   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
PROMPT = list(range(10, 42))  # 32 token ids
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pin_to(cpu: int | None) -> None:
    """Keep this process (every thread it has and will have) on one CPU."""
    if cpu is None:
        return
    for task in Path("/proc/self/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_seconds(stat_path: str) -> float:
    """utime + stime of a process or thread, from /proc/.../stat."""
    text = Path(stat_path).read_text()
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def machine() -> dict[str, Any]:
    model = "unknown CPU"
    try:
        lscpu = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True
        ).stdout
        model = next(
            line.split(":", 1)[1].strip()
            for line in lscpu.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return {"cpu": model, "cores": os.cpu_count()}


# -- the load generator (a process of its own) -----------------------------------------------------


async def client(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    body = {
        "model": "tiny",
        "prompt": PROMPT,
        "max_tokens": args.max_tokens,
        "ignore_eos": True,
        "temperature": 0,
    }
    if args.stream:
        body["stream"] = True
    url = f"{args.client}/v1/completions"
    state = {"measuring": False, "stop": False}
    latencies: list[float] = []
    errors: list[str] = []
    done = [0]

    async def worker(http: aiohttp.ClientSession, index: int) -> None:
        headers = {"X-Autellix-Program": f"{args.program_prefix}-{index}"}
        while not state["stop"]:
            started = time.perf_counter()
            async with http.post(url, json=body, headers=headers) as response:
                payload = await response.read()
                if response.status != 200 or (
                    args.stream and not payload.rstrip().endswith(b"data: [DONE]")
                ):
                    errors.append(f"{response.status}: {payload[:200]!r}")
                    continue
            if state["measuring"]:
                done[0] += 1
                latencies.append(time.perf_counter() - started)

    server_stat = f"/proc/{args.server_pid}/stat"
    loop_stat = f"/proc/{args.server_pid}/task/{args.server_pid}/stat"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks = [asyncio.create_task(worker(http, i)) for i in range(args.concurrency)]
        await asyncio.sleep(args.warmup)
        server0, loop0, client0 = (
            cpu_seconds(server_stat),
            cpu_seconds(loop_stat),
            time.process_time(),
        )
        started = time.perf_counter()
        state["measuring"] = True
        await asyncio.sleep(args.duration)
        state["measuring"] = False
        elapsed = time.perf_counter() - started
        server1, loop1, client1 = (
            cpu_seconds(server_stat),
            cpu_seconds(loop_stat),
            time.process_time(),
        )
        calls = done[0]
        state["stop"] = True
        await asyncio.gather(*tasks)
    return {
        "calls": calls,
        "seconds": elapsed,
        "calls_per_s": calls / elapsed,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "latency_median_ms": 1e3 * statistics.median(latencies) if latencies else None,
        "latency_p99_ms": 1e3 * percentile(latencies, 0.99) if latencies else None,
        "server_cpu": (server1 - server0)
        / elapsed,  # cores: 1.0 = one core busy all the time
        "server_loop_cpu": (loop1 - loop0) / elapsed,  # the event-loop thread alone
        "client_cpu": (client1 - client0) / elapsed,
        "load_average": os.getloadavg()[0],
    }


# -- the servers and the sweep (this process) ------------------------------------------------------


async def start_server(
    replicas: int, tokens_per_s: float | None
) -> tuple[Any, Any, str]:
    from aiohttp import web
    from autellix.engine import EngineOptions
    from autellix.engine.stand_in import StandInDriver
    from autellix.server import ServerSettings, make_app

    options = EngineOptions(
        model="tiny",
        engines=replicas,
        max_model_len=1024,
        kv_cache_memory_bytes=64 << 20,
    )
    driver = StandInDriver(options, tokens_per_s=tokens_per_s)
    await driver.start()
    app = make_app(ServerSettings(), driver=driver)
    runner = web.AppRunner(
        app, access_log=None, handler_cancellation=True
    )  # as `autellix serve`
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return driver, runner, f"http://127.0.0.1:{port}"


async def run_client(
    url: str, concurrency: int, shape: str, args: argparse.Namespace, prefix: str
) -> dict[str, Any]:
    max_tokens, stream = parse_shape(shape)
    command = [
        sys.executable, __file__, "--client", url, "--server-pid", str(os.getpid()),
        "--concurrency", str(concurrency), "--max-tokens", str(max_tokens),
        "--warmup", str(args.warmup), "--duration", str(args.duration), "--program-prefix", prefix,
        *(["--stream"] if stream else []),
        *(["--cpu", str(args.client_cpu)] if args.client_cpu is not None else []),
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed ({process.returncode})")
    return json.loads(out)


def summarize(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over runs of each measure of one point."""
    keys = [
        "calls_per_s",
        "latency_median_ms",
        "latency_p99_ms",
        "server_cpu",
        "server_loop_cpu",
        "client_cpu",
        "load_average",
    ]
    summary = {k: statistics.median(p[k] for p in points) for k in keys}
    # The server's CPU per call (ms): robust to other work taking CPU from it; 1000 / it is the
    # calls/s one fully busy core would route.
    summary["server_cpu_ms_per_call"] = statistics.median(
        1e3 * p["server_cpu"] / p["calls_per_s"] for p in points
    )
    summary["calls_per_s_runs"] = [round(p["calls_per_s"], 1) for p in points]
    summary["errors"] = sum(p["errors"] for p in points)
    return summary


async def sweep(args: argparse.Namespace) -> dict[str, Any]:
    servers: dict[int, tuple[Any, Any, str]] = {}
    try:
        for n in args.replicas:
            log(f"starting a server over {n} stand-in replica(s)")
            servers[n] = await start_server(n, args.tokens_per_s)
        warm = argparse.Namespace(**{**vars(args), "warmup": 0.5, "duration": 0.5})
        for (
            _,
            _,
            url,
        ) in servers.values():  # warm up every server (first calls build caches)
            await run_client(url, 4, "1", warm, "warm")
        points: dict[str, list[dict[str, Any]]] = {}
        for run in range(args.runs):
            for concurrency in args.concurrency:
                for n, (_, _, url) in servers.items():
                    for shape in args.shapes:
                        key = f"{n}/{concurrency}/{shape}"
                        point = await run_client(
                            url, concurrency, shape, args, f"r{run}-c{concurrency}"
                        )
                        points.setdefault(key, []).append(point)
                        log(
                            f"run {run + 1}/{args.runs} N={n} C={concurrency} {shape_label(shape)}: "
                            f"{point['calls_per_s']:.0f} calls/s, server CPU {100 * point['server_cpu']:.0f}% "
                            f"(loop thread {100 * point['server_loop_cpu']:.0f}%), client CPU "
                            f"{100 * point['client_cpu']:.0f}%, load {point['load_average']:.1f}, errors {point['errors']}"
                        )
    finally:
        for driver, runner, _ in servers.values():
            await runner.cleanup()
            await driver.shutdown()
    return {
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "replica": "StandInReplica (no engine): "
        + (
            "every token at once"
            if args.tokens_per_s is None
            else f"{args.tokens_per_s:g} tokens/s per call"
        ),
        "load_generator": "raw aiohttp client, one process per point, "
        + (
            "pinned to CPU 1 (the server to CPU 0)"
            if args.client_cpu is not None
            else "on the same cores as the server"
        ),
        "settings": {
            "runs": args.runs,
            "warmup_s": args.warmup,
            "window_s": args.duration,
            "replicas": args.replicas,
            "concurrency": args.concurrency,
            "shapes": args.shapes,
            "prompt_tokens": len(PROMPT),
            "tokens_per_s": args.tokens_per_s,
            "pinned": args.client_cpu is not None,
        },
        "summary": {key: summarize(p) for key, p in points.items()},
        "per_run": points,
    }


# -- results ---------------------------------------------------------------------------------------


def ceiling(result: dict[str, Any]) -> dict[str, Any]:
    best = max(result["summary"].items(), key=lambda kv: kv[1]["calls_per_s"])
    n, c, shape = best[0].split("/")
    return {
        "calls_per_s": best[1]["calls_per_s"],
        "replicas": int(n),
        "concurrency": int(c),
        "shape": shape,
    }


def markdown(result: dict[str, Any]) -> str:
    s, summary = result["settings"], result["summary"]
    top = result["ceiling"]
    loads = [p["load_average"] for p in summary.values()]
    where = (
        f"{result['date']}, {result['machine']['cpu']}, {result['machine']['cores']} cores shared with other"
        f" sessions' work (load average, 1 min, {min(loads):.1f}-{max(loads):.1f} during the points)."
    )
    what = (
        f"Replicas: {result['replica']}. Load: {result['load_generator']}; C workers, each its own program,"
        f" /v1/completions calls of {s['prompt_tokens']} prompt token ids, back to back."
    )
    how = (
        f"Each cell: median over {s['runs']} runs of the calls/s finished in a {s['window_s']:g} s window"
        f" (after {s['warmup_s']:g} s of warm-up), and in brackets the server process's CPU over that window"
        " (1.00 = one core busy all the time). CPU/call: the server's CPU time per call (ms), which other work"
        " on the box does not inflate; 1000 / CPU/call is what one fully busy core routes."
    )
    best = (
        f"Ceiling: **{top['calls_per_s']:.0f} calls/s** (N={top['replicas']}, C={top['concurrency']},"
        f" {shape_label(top['shape'])})."
    )
    lines = [
        "# Front-end routing ceiling (`bench/frontend_ceiling.py`)",
        "",
        where,
        what,
        how,
        "",
        best,
        "",
    ]
    first = s["replicas"][0]
    for shape in s["shapes"]:
        lines += [
            f"{shape_label(shape)}:",
            "",
            "| concurrency | "
            + " | ".join(f"N={n}: calls/s (CPU)" for n in s["replicas"])
            + f" | CPU/call N={first} (ms) | p50 / p99 latency N={first} (ms) |",
            "|---:|" + "---:|" * len(s["replicas"]) + "---:|---:|",
        ]
        for c in s["concurrency"]:
            cells = [
                f"{summary[f'{n}/{c}/{shape}']['calls_per_s']:.0f} ({summary[f'{n}/{c}/{shape}']['server_cpu']:.2f})"
                for n in s["replicas"]
            ]
            p = summary[f"{first}/{c}/{shape}"]
            tail = f"{p['server_cpu_ms_per_call']:.3f} | {p['latency_median_ms']:.1f} / {p['latency_p99_ms']:.1f}"
            lines.append(f"| {c} | " + " | ".join(cells) + f" | {tail} |")
        lines.append("")
    errors = sum(p["errors"] for p in summary.values())
    loop = max(abs(p["server_loop_cpu"] - p["server_cpu"]) for p in summary.values())
    lines.append(
        f"The event-loop thread's CPU is within {loop:.2f} cores of the whole process's at every point"
        " (the process is its one loop). Errors (non-200 answers) over all points: "
        f"{errors}."
    )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, summary = result["settings"], result["summary"]
    fig, axes = plt.subplots(
        1, len(s["shapes"]), figsize=(5.5 * len(s["shapes"]), 4.2), squeeze=False
    )
    for ax, shape in zip(axes[0], s["shapes"], strict=True):
        for n in s["replicas"]:
            ys = [summary[f"{n}/{c}/{shape}"]["calls_per_s"] for c in s["concurrency"]]
            ax.plot(s["concurrency"], ys, marker="o", label=f"N={n} stand-in replicas")
        per_core = [
            1e3 / summary[f"{s['replicas'][0]}/{c}/{shape}"]["server_cpu_ms_per_call"]
            for c in s["concurrency"]
        ]
        ax.plot(
            s["concurrency"], per_core, color="black", linestyle="--", linewidth=1,
            label=f"one busy core: 1000 / CPU ms per call (N={s['replicas'][0]})",
        )  # fmt: skip
        cpu = [
            summary[f"{s['replicas'][-1]}/{c}/{shape}"]["server_cpu"]
            for c in s["concurrency"]
        ]
        twin = ax.twinx()
        twin.plot(
            s["concurrency"],
            cpu,
            color="grey",
            linestyle=":",
            marker=".",
            label="server CPU (cores), largest N",
        )
        twin.set_ylim(0, 2)
        twin.set_ylabel("server process CPU (cores)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(s["concurrency"], [str(c) for c in s["concurrency"]])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("calls/s (median of runs)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"/v1/completions, {shape_label(shape)}", fontsize=9)
        lines, labels = ax.get_legend_handles_labels()
        more, more_labels = twin.get_legend_handles_labels()
        ax.legend(lines + more, labels + more_labels, fontsize=7, loc="upper left")
    fig.suptitle(
        f"One Autellix front end over stand-in replicas ({result['machine']['cpu']}, 2 cores shared)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_shape(shape: str) -> tuple[int, bool]:
    """ "16" -> 16 tokens, one JSON answer; "16s" -> 16 tokens streamed (one SSE event a token)."""
    return int(shape.rstrip("s")), shape.endswith("s")


def shape_label(shape: str) -> str:
    max_tokens, stream = parse_shape(shape)
    return f"max_tokens={max_tokens}" + (", streamed" if stream else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--replicas", type=ints, default=[1, 4, 16], help="stand-in replicas per server"
    )
    parser.add_argument("--concurrency", type=ints, default=[1, 4, 16, 64, 256])
    parser.add_argument(
        "--shapes",
        type=lambda t: [x for x in t.split(",") if x],
        default=["1", "16", "16s"],
        help="calls: max_tokens, with 's' for a streamed call",
    )
    parser.add_argument(
        "--tokens-per-s",
        type=float,
        default=None,
        help="each stand-in call's token rate (default: at once)",
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of load before each window"
    )
    parser.add_argument(
        "--duration", type=float, default=3.0, help="seconds each point is measured"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS / "frontend_ceiling",
        help="results path, without suffix",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only, write no results"
    )
    # The load generator's own arguments (this script run as the client process).
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--program-prefix", default="w", help=argparse.SUPPRESS)
    parser.add_argument("--max-tokens", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the server to CPU 0 and the load generator to CPU 1",
    )
    parser.add_argument(
        "--rewrite",
        type=Path,
        help="write the .md and .png again from this results JSON",
    )
    args = parser.parse_args()
    pinned = not args.no_pin and os.cpu_count() and os.cpu_count() >= 2  # type: ignore[operator]
    args.client_cpu = 1 if pinned else None
    pin_to(args.cpu if args.client else (0 if pinned else None))
    import uvloop

    if args.client:
        args.concurrency = args.concurrency[0]
        print(json.dumps(uvloop.run(client(args))))
        return
    if (
        args.rewrite
    ):  # the tables and plot again, from a results JSON (summaries recomputed)
        result = json.loads(args.rewrite.read_text())
        result["summary"] = {key: summarize(p) for key, p in result["per_run"].items()}
    else:
        result = uvloop.run(sweep(args))
    result["ceiling"] = ceiling(result)
    print(json.dumps(result["summary"], indent=2))
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(result))
        plot(result, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
