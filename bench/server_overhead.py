"""What `autellix serve` adds per call over calling EngineDriver directly, in one run.

One driver (tiny model, one engine) serves both paths from the same process and event loop
(uvloop): "direct" runs `driver.generate` itself; "http" posts /v1/completions to the aiohttp app
over loopback (client and server share the loop, so the client's own work counts too). Calls
are sequential and tiny (token-id prompt, one output token) so the front end's share shows; the
two paths alternate so load drift hits both alike.

    .venv/bin/python bench/server_overhead.py --calls 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import aiohttp
import uvloop
from aiohttp import web

from autellix.engine import EngineDriver, EngineOptions
from autellix.server import ServerSettings, make_app

PROMPT = list(range(10, 42))  # 32 token ids


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(calls: int, policy: str) -> dict:
    from vllm import SamplingParams

    options = EngineOptions(
        model="tiny", scheduler=policy, max_num_seqs=8, max_model_len=1024,
        kv_cache_memory_bytes=64 << 20, engine_args={"enforce_eager": True},
    )
    driver = EngineDriver(options)
    await driver.start()
    runner = web.AppRunner(make_app(ServerSettings(), driver=driver), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    params = SamplingParams(max_tokens=1, ignore_eos=True, temperature=0)
    body = {"model": driver.served_model_name, "prompt": PROMPT, "max_tokens": 1, "ignore_eos": True, "temperature": 0}
    times: dict[str, list[float]] = {"direct": [], "http": [], "http_program": []}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/v1/programs") as r:
                program = (await r.json())["id"]
            program_int = 10**12  # a program of the direct path's own

            async def direct(i: int) -> None:
                async for _ in driver.generate(f"direct-{i}", PROMPT, params, program_id=program_int):
                    pass

            async def over_http(headers: dict[str, str]) -> None:
                async with http.post(f"{url}/v1/completions", json=body, headers=headers) as r:
                    assert r.status == 200, await r.text()
                    await r.read()

            for i in range(20):  # warm up both paths
                await direct(-i - 1)
                await over_http({})
            for i in range(calls):
                for name, run in (
                    ("direct", lambda: direct(i)),
                    ("http", lambda: over_http({})),
                    ("http_program", lambda: over_http({"X-Autellix-Program": program})),
                ):
                    started = time.perf_counter()
                    await run()
                    times[name].append(time.perf_counter() - started)
    finally:
        await runner.cleanup()
        await driver.shutdown()
    summary = {
        name: {"median_ms": 1e3 * statistics.median(v), "p99_ms": 1e3 * percentile(v, 0.99)}
        for name, v in times.items()
    }
    for name in ("http", "http_program"):
        summary[f"{name}_overhead"] = {
            "median_ms": summary[name]["median_ms"] - summary["direct"]["median_ms"],
            "p99_ms": summary[name]["p99_ms"] - summary["direct"]["p99_ms"],
        }
    return {"calls": calls, "policy": policy, "prompt_tokens": len(PROMPT), "max_tokens": 1, "results": summary}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--policy", default="plas")
    args = parser.parse_args()
    print(json.dumps(uvloop.run(main(args.calls, args.policy)), indent=2))
