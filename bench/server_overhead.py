"""What `autellix serve` adds per call over calling EngineDriver directly, in one run.

One driver (tiny model, one engine) serves every path from the same process and event loop
(uvloop). "direct" runs `driver.generate` itself; "http" posts /v1/completions to the aiohttp app
over loopback (client and server share the loop, so the client's own work counts too);
"http_program" is the same with an X-Autellix-Program header (a program of many calls). "chat"
posts /v1/chat/completions (one user message, a 1-token answer), "chat_tools" the same with three
function tools, as agents send them with every call; "direct_chat" and "direct_chat_tools" run
the direct path on the very token ids and SamplingParams vLLM's chat serving hands the engine for
them. "http_floor" posts the completion body to a no-op aiohttp handler: what loopback HTTP
itself costs, no code of ours or vLLM's.

Calls are sequential and tiny (one output token) so the front end's share shows; the paths
alternate call by call so load drift hits all alike. A call without a program header is a
one-call program, ended in the engines in the background after its answer (a utility call to the
engine core): the bench waits for that between calls, untimed, so that it does not land on the
next path's call, and reports it apart (`background_ms`). The measurement is repeated `--runs`
times (same engine); each run gives a median and a p99 per path, the summary is the median over
runs of each.

    .venv/bin/python bench/server_overhead.py                 # 5 runs x 300 calls a path, ~2.5 min
    .venv/bin/python bench/server_overhead.py --runs 1 --calls 50 --no-write   # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from aiohttp import web

from autellix.engine import EngineDriver, EngineOptions
from autellix.server import ServerSettings, make_app
from autellix.server.state import CALLS

PROMPT = list(range(10, 42))  # 32 token ids
CHAT_MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def _tool(name: str, description: str) -> dict[str, Any]:
    parameters = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to look up"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 20},
            "unit": {"type": "string", "enum": ["metric", "imperial"]},
        },
        "required": ["query"],
        "additionalProperties": False,
    }
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


TOOLS = [_tool("search", "Search the web"), _tool("weather", "Weather for a city"), _tool("lookup", "Look up a fact")]
RESULTS = Path(__file__).parent / "results"
PATHS = ("direct", "http_floor", "http", "http_program", "direct_chat", "chat", "direct_chat_tools", "chat_tools")
# front-end path -> the direct path it is compared with
OVERHEADS = {"http": "direct", "http_program": "direct", "chat": "direct_chat", "chat_tools": "direct_chat_tools"}
LABELS = {
    "direct": "direct (driver.generate)",
    "http_floor": "aiohttp no-op round trip (no engine)",
    "http": "http /v1/completions",
    "http_program": "http + program header",
    "direct_chat": "direct, chat's tokens",
    "chat": "http /v1/chat/completions",
    "direct_chat_tools": "direct, chat+tools' tokens",
    "chat_tools": "http chat, 3 tools",
}


SHORT_LABELS = {
    "direct": "direct",
    "http_floor": "aiohttp\nno-op",
    "http": "http\ncompletions",
    "http_program": "http\n+ program",
    "direct_chat": "direct\n(chat tokens)",
    "chat": "http chat",
    "direct_chat_tools": "direct\n(chat+tools)",
    "chat_tools": "http chat\n+ 3 tools",
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def machine() -> str:
    models = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
    return f"{models[0] if models else 'unknown CPU'}, {os.cpu_count()} cores"


def summarize_run(times: dict[str, list[float]], background: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Median and p99 (ms) per path, and each front-end path's excess over its direct path."""
    run = {name: {"median_ms": 1e3 * statistics.median(v), "p99_ms": 1e3 * percentile(v, 0.99)} for name, v in times.items()}
    for name, v in background.items():
        run[name]["background_ms"] = 1e3 * statistics.median(v)
    for name, base in OVERHEADS.items():
        run[f"{name}_overhead"] = {stat: run[name][stat] - run[base][stat] for stat in ("median_ms", "p99_ms")}
    return run


def median_over_runs(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {name: {stat: statistics.median(r[name][stat] for r in runs) for stat in runs[0][name]} for name in runs[0]}


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def floor_app() -> web.Application:
    """One handler that reads the body and answers a constant: aiohttp's own share."""

    async def floor(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b'{"ok": true}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/completions", floor)
    return app


async def engine_request(driver: EngineDriver, http: aiohttp.ClientSession, url: str, chat: dict[str, Any]) -> tuple[list[int], Any]:
    """The token ids and SamplingParams vLLM's chat serving hands the engine for a chat request
    (with tools, vLLM adds a structural-tag grammar for the tool calls: the direct path must
    carry it too to do the same engine work)."""
    router = driver.client
    seen: list[Any] = []

    def spy(prompt: Any, params: Any, request_id: str, **kwargs: Any) -> Any:
        seen.append(params)
        return type(router).generate(router, prompt, params, request_id, **kwargs)

    setattr(router, "generate", spy)  # vLLM calls it on the instance: this shadows the method
    try:
        async with http.post(f"{url}/v1/chat/completions", json={**chat, "return_token_ids": True}) as r:
            tokens = (await r.json())["prompt_token_ids"]
    finally:
        del router.generate
    return tokens, seen[0]


async def measure(calls: int, runs: int, policy: str, freeze_gc: bool) -> dict[str, Any]:
    from vllm import SamplingParams

    options = EngineOptions(
        model="tiny", scheduler=policy, max_num_seqs=8, max_model_len=1024,
        kv_cache_memory_bytes=64 << 20, engine_args={"enforce_eager": True},
    )
    driver = EngineDriver(options)
    await driver.start()
    app = make_app(ServerSettings(), driver=driver)
    runner, url = await serve(app)
    floor_runner, floor_url = await serve(floor_app())
    params = SamplingParams(max_tokens=1, ignore_eos=True, temperature=0)
    fixed = {"model": driver.served_model_name, "max_tokens": 1, "ignore_eos": True, "temperature": 0}
    completion = {**fixed, "prompt": PROMPT}
    chat = {**fixed, "messages": CHAT_MESSAGES}
    chat_tools = {**chat, "tools": TOOLS}
    per_run: list[dict[str, dict[str, float]]] = []
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/v1/programs") as r:
                program = (await r.json())["id"]
            chat_tokens, chat_params = await engine_request(driver, http, url, chat)
            chat_tools_tokens, chat_tools_params = await engine_request(driver, http, url, chat_tools)
            program_int = 10**12  # a program of the direct path's own
            count = iter(range(10**9))

            async def direct(tokens: list[int], params: Any = params) -> None:
                async for _ in driver.generate(f"direct-{next(count)}", tokens, params, program_id=program_int):
                    pass

            async def post(route: str, body: dict[str, Any], headers: dict[str, str], base: str = url) -> None:
                async with http.post(f"{base}{route}", json=body, headers=headers) as r:
                    assert r.status == 200, await r.text()
                    await r.read()

            paths: dict[str, Callable[[], Awaitable[None]]] = {
                "direct": lambda: direct(PROMPT),
                "http_floor": lambda: post("/v1/completions", completion, {}, floor_url),
                "http": lambda: post("/v1/completions", completion, {}),
                "http_program": lambda: post("/v1/completions", completion, {"X-Autellix-Program": program}),
                "direct_chat": lambda: direct(chat_tokens, chat_params),
                "chat": lambda: post("/v1/chat/completions", chat, {}),
                "direct_chat_tools": lambda: direct(chat_tools_tokens, chat_tools_params),
                "chat_tools": lambda: post("/v1/chat/completions", chat_tools, {}),
            }
            calls_service = app[CALLS]
            for _ in range(20):  # warm up every path
                for run in paths.values():
                    await run()
                    await calls_service.close()
            if freeze_gc:
                from vllm.utils.gc_utils import freeze_gc_heap

                freeze_gc_heap()
            for _ in range(runs):
                times: dict[str, list[float]] = {name: [] for name in PATHS}
                background: dict[str, list[float]] = {"http": [], "chat": [], "chat_tools": []}
                for _ in range(calls):
                    for name, run in paths.items():
                        started = time.perf_counter()
                        await run()
                        answered = time.perf_counter()
                        await calls_service.close()  # the one-call program's end in the engines
                        times[name].append(answered - started)
                        if name in background:
                            background[name].append(time.perf_counter() - answered)
                per_run.append(summarize_run(times, background))
                print(json.dumps({name: round(v["median_ms"], 3) for name, v in per_run[-1].items()}), flush=True)
    finally:
        await floor_runner.cleanup()
        await runner.cleanup()
        await driver.shutdown()
    return {
        "machine": machine(),
        "load_average_after": os.getloadavg(),  # the box is shared: how busy it was
        "date": datetime.date.today().isoformat(),
        "runs": runs,
        "calls_per_run": calls,
        "policy": policy,
        "gc_frozen": freeze_gc,
        "prompt_tokens": {"completions": len(PROMPT), "chat": len(chat_tokens), "chat_tools": len(chat_tools_tokens)},
        "max_tokens": 1,
        "summary": median_over_runs(per_run),
        "per_run": per_run,
    }


def markdown(result: dict[str, Any]) -> str:
    summary = result["summary"]
    lines = [
        "# Front-end overhead per call (`bench/server_overhead.py`)",
        "",
        f"{result['date']}, {result['machine']} (shared with other work), one tiny-model engine ({result['policy']}),",
        f"{result['runs']} runs x {result['calls_per_run']} sequential calls a path, paths interleaved call by call;",
        f"prompts of {result['prompt_tokens']['completions']} token ids (completions), {result['prompt_tokens']['chat']}"
        f" tokens (the chat template's rendering of one user message) and {result['prompt_tokens']['chat_tools']}"
        " (the same with 3 function tools); 1 output token.",
        "Each cell: the median over runs of that run's median / p99 (ms). Overheads: against `direct`,",
        "chat against the direct path on the chat's own tokens (same run). Background: engine work a one-call program",
        "leaves after its answer (ending it in the engines), waited for between calls, untimed.",
        "",
        "| path | median | p99 | overhead median | overhead p99 | background |",
        "|---|---|---|---|---|---|",
    ]
    for name in PATHS:
        row = summary[name]
        over = summary.get(f"{name}_overhead")
        extra = f"{over['median_ms']:+.2f} | {over['p99_ms']:+.2f}" if over else "- | -"
        background = f"{row['background_ms']:.2f}" if "background_ms" in row else "-"
        lines.append(f"| {LABELS[name]} | {row['median_ms']:.2f} | {row['p99_ms']:.2f} | {extra} | {background} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    x = range(len(PATHS))
    fig, ax = plt.subplots(figsize=(11, 4.8))
    medians = [summary[n]["median_ms"] for n in PATHS]
    p99s = [summary[n]["p99_ms"] for n in PATHS]
    ax.bar([i - 0.2 for i in x], medians, width=0.4, label="median")
    ax.bar([i + 0.2 for i in x], p99s, width=0.4, label="p99")
    for i, name in enumerate(PATHS):
        over = summary.get(f"{name}_overhead")
        if over:
            ax.annotate(f"{over['median_ms']:+.2f}", (i - 0.2, medians[i]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), [SHORT_LABELS[n] for n in PATHS], fontsize=8)
    ax.set_yscale("log")  # p99 on a shared box is tens of ms; medians a few
    ax.set_ylabel("latency per call (ms, log scale)")
    ax.set_title(
        f"autellix serve vs driver.generate, 1-token calls: median over {result['runs']} runs of each run's median"
        " and p99 (labels: median overhead, ms)",
        fontsize=9,
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per path and run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--policy", default="plas")
    parser.add_argument("--freeze-gc", action="store_true", help="freeze the start-up heap first, as `vllm serve` does")
    parser.add_argument("--out", type=Path, default=RESULTS / "server_overhead", help="results path, without suffix")
    parser.add_argument("--no-write", action="store_true", help="print only, write no results")
    args = parser.parse_args()
    result = uvloop.run(measure(args.calls, args.runs, args.policy, args.freeze_gc))
    print(json.dumps(result["summary"], indent=2))
    if not args.no_write:
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(result))
        plot(result, args.out.with_suffix(".png"))
