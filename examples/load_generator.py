#!/usr/bin/env python3
"""Replays the simulator's agent workloads against a live Autellix server, over HTTP.

The programs come from ``autellix.sim.workloads.generate`` (the same seeded ShareGPT / BFCL / LATS
models the simulator uses), arrive as a Poisson process of --rate programs per second, and each
becomes a real Autellix program. A call is issued once all its parents have finished plus its
``delay`` (the tool or think time), naming its parents' call ids, so the server sees the true DAG.

Lengths are scaled by --token-scale (and capped by --max-prompt / --max-output) so that a small
model on a CPU can keep up; --call-fraction keeps a random share of each program's calls (heavy
programs stay heavy, as in bench/engine_programs.py), --max-calls its first calls. Prompts are synthetic text of about the wanted length (the words per
token ratio is measured once against the server's tokenizer), keep the trace's shared prefixes
(system prompt across programs, earlier context within a program), and go to /v1/completions with
``ignore_eos`` and ``max_tokens`` set so that every output has exactly its trace length. Each
call is the openai SDK's ``AsyncOpenAI.completions.create`` on a client that
``program.openai_for(thread=..., parents=...)`` tagged.

The report: program latency mean/p50/p95/p99 (from its scheduled arrival to its last call's end),
mean token latency (program latency / its output tokens, averaged over programs), throughput and
errors; --json prints it as one JSON object. A progress line goes to stderr every few seconds.
With --tell-calls-left each call also says how many of its program's calls are not issued yet,
itself included (``X-Autellix-Calls-Left``), as an agent that knows its plan would; plas and atlas
then rank the program by the work that leaves.

    python examples/load_generator.py --base-url http://127.0.0.1:8000 --workload mixed \\
        --programs 20 --rate 0.5 --token-scale 0.1 --max-output 64 --max-calls 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import openai

from autellix.client import AsyncClient, AsyncProgram
from autellix.sim.metrics import percentile
from autellix.sim.trace import Call, Program
from autellix.sim.workloads import WORKLOADS, generate, sample_calls

WORDS = (
    "time year people way day man thing woman life child world school state family student group "
    "country problem hand part place case week company system program question work government number "
    "night point home water room mother area money story fact month lot right study book eye job word "
    "business issue side kind head house service friend father power hour game line end member law car "
    "city community name president team minute idea kid body information back parent face others level"
).split()


# -- the plan: scaled calls and their prompts ------------------------------------------------------


@dataclass(frozen=True)
class PlannedCall:
    index: int
    call_id: str
    parents: tuple[str, ...]
    delay: float
    prompt_tokens: int
    prefix_tokens: int
    output_tokens: int
    thread_id: int


@dataclass(frozen=True)
class PlannedProgram:
    trace_id: str
    workload: str
    arrival: float
    system_tokens: int
    calls: tuple[PlannedCall, ...]

    @property
    def output_tokens(self) -> int:
        return sum(c.output_tokens for c in self.calls)


def plan(programs: list[Program], args: argparse.Namespace) -> list[PlannedProgram]:
    """Scales lengths and delays, keeps a random --call-fraction of each program's calls (heavy
    programs stay heavy) or its first --max-calls calls (parents come before children in a trace,
    so any prefix is still a closed DAG), and numbers threads: calls that share the same parents
    run side by side, each on its own thread."""
    out = []
    for program in programs:
        if args.call_fraction is not None:
            calls = sample_calls(program, args.call_fraction, args.seed)
        else:
            calls = program.calls[: args.max_calls] if args.max_calls else program.calls
        siblings: Counter[tuple[str, ...]] = Counter()
        planned = []
        for i, call in enumerate(calls):
            prompt = min(args.max_prompt, max(1, round(call.prompt_tokens * args.token_scale)))
            output = min(args.max_output, max(1, round(call.output_tokens * args.token_scale)))
            prefix = min(prompt, round(call.prefix_tokens * args.token_scale))
            thread = siblings[call.parents]
            siblings[call.parents] += 1
            planned.append(
                PlannedCall(i, call.call_id, call.parents, call.delay * args.delay_scale, prompt, prefix, output, thread)
            )
        system = min(round(program.system_tokens * args.token_scale), min(c.prompt_tokens for c in planned))
        out.append(PlannedProgram(program.program_id, program.workload or args.workload, program.arrival, system, tuple(planned)))
    return out


class PromptMaker:
    """Synthetic prompts of about N tokens whose leading parts repeat where the trace says so."""

    def __init__(self, seed: int, tokens_per_word: float, overhead: float) -> None:
        self.tokens_per_word = tokens_per_word
        self.overhead = overhead  # tokens the server adds to any prompt (BOS, ...)
        self.system = self._words(random.Random(f"system:{seed}"), 10_000)
        self.seed = seed

    @staticmethod
    def _words(rng: random.Random, n: int) -> list[str]:
        return [rng.choice(WORDS) for _ in range(n)]

    def words_for(self, tokens: float) -> int:
        return max(0, round((tokens - self.overhead) / self.tokens_per_word))

    def prompt(self, program: PlannedProgram, call: PlannedCall, context: list[str]) -> str:
        total = max(1, self.words_for(call.prompt_tokens))
        system = min(total, round(program.system_tokens / self.tokens_per_word))
        shared = min(total - system, round(call.prefix_tokens / self.tokens_per_word))
        rng = random.Random(f"{self.seed}:{program.trace_id}:{call.call_id}")
        while len(context) < shared:  # the program's own growing context, reused by later calls
            context.append(rng.choice(WORDS))
        fresh = self._words(rng, total - system - shared)
        return " ".join(self.system[:system] + context[:shared] + fresh)


async def calibrate(client: AsyncClient, model: str) -> tuple[float, float]:
    """(tokens per word, fixed overhead tokens), from the prompt counts the server reports."""
    small, large = 1, 201
    counts = []
    async with client.program(metadata={"load_generator": "calibration"}) as program:
        for n in (small, large):
            prompt = " ".join(WORDS[i % len(WORDS)] for i in range(n))
            result = await program.openai.completions.create(model=model, prompt=prompt, max_tokens=1)
            if result.usage is None:
                raise RuntimeError("the server reports no usage; cannot size prompts")
            counts.append(result.usage.prompt_tokens)
    per_word = max(0.1, (counts[1] - counts[0]) / (large - small))
    overhead = max(0.0, counts[0] - per_word * small)
    return per_word, overhead


# -- running it ----------------------------------------------------------------------------------


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    programs_done: int = 0
    programs_failed: int = 0
    calls_ok: int = 0
    call_errors: int = 0
    in_flight: int = 0
    output_tokens: int = 0
    prompt_tokens: int = 0
    length_mismatches: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    token_latencies: list[float] = field(default_factory=list)
    last_finish: float = 0.0


async def run_program(
    client: AsyncClient,
    model: str,
    program: PlannedProgram,
    start: float,
    prompts: PromptMaker,
    slots: asyncio.Semaphore,
    stats: Stats,
    tell_calls_left: bool = False,
) -> None:
    arrival = start + program.arrival
    await asyncio.sleep(max(0.0, arrival - time.monotonic()))
    server_ids: dict[str, str] = {}
    finished = {c.call_id: asyncio.Event() for c in program.calls}
    context: list[str] = []
    output_tokens = 0
    issued = 0
    failed = False

    async def run_call(p: AsyncProgram, call: PlannedCall) -> None:
        nonlocal output_tokens, issued, failed
        try:
            for parent in call.parents:
                await finished[parent].wait()
            if any(parent not in server_ids for parent in call.parents):
                return  # a parent failed: this branch of the DAG cannot run
            await asyncio.sleep(call.delay)
            prompt = prompts.prompt(program, call, context)
            # The program's calls not yet issued, this one included, as an agent knowing its plan
            # (a step budget, a search's iterations) would say.
            calls_left = len(program.calls) - issued if tell_calls_left else None
            issued += 1
            async with slots:
                stats.in_flight += 1
                try:
                    parents = [server_ids[parent] for parent in call.parents]
                    oa = p.openai_for(thread=call.thread_id, parents=parents, calls_left=calls_left)
                    result = await oa.completions.create(
                        model=model,
                        prompt=prompt,
                        max_tokens=call.output_tokens,
                        temperature=0.0,
                        extra_body={"ignore_eos": True},  # vLLM's: exactly max_tokens tokens
                    )
                finally:
                    stats.in_flight -= 1
            usage = result.usage
            produced = usage.completion_tokens if usage else 0
            output_tokens += produced
            stats.output_tokens += produced
            stats.prompt_tokens += usage.prompt_tokens if usage else 0
            stats.length_mismatches += produced != call.output_tokens
            stats.calls_ok += 1
            server_ids[call.call_id] = result.id
        except (openai.APIError, RuntimeError, ValueError) as e:
            failed = True
            stats.call_errors += 1
            stats.errors[str(e)[:200]] += 1
        finally:
            finished[call.call_id].set()

    try:
        async with client.program(metadata={"workload": program.workload, "trace_program": program.trace_id}) as p:
            await asyncio.gather(*(run_call(p, call) for call in program.calls))
    except openai.APIError as e:  # starting or ending the program itself failed
        failed = True
        stats.errors[str(e)[:200]] += 1
    now = time.monotonic()
    if failed:
        stats.programs_failed += 1
        return
    stats.programs_done += 1
    stats.last_finish = now
    latency = now - arrival
    stats.latencies.append(latency)
    stats.token_latencies.append(latency / max(1, output_tokens))


async def progress(stats: Stats, total: int, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        print(
            f"[{time.monotonic() - stats.started:7.1f}s] programs {stats.programs_done + stats.programs_failed}/{total} "
            f"done ({stats.programs_failed} failed), calls {stats.calls_ok} ok / {stats.call_errors} errors, "
            f"{stats.in_flight} in flight, {stats.output_tokens} output tokens",
            file=sys.stderr,
            flush=True,
        )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    programs = plan(generate(args.workload, args.rate, args.programs, seed=args.seed), args)
    async with AsyncClient(args.base_url, api_key=args.api_key) as client:
        model = args.model or (await client.openai.models.list()).data[0].id
        per_word, overhead = await calibrate(client, model)
        prompts = PromptMaker(args.seed, per_word, overhead)
        slots = asyncio.Semaphore(args.concurrency)
        stats = Stats()
        reporter = asyncio.create_task(progress(stats, len(programs), args.progress_interval))
        tasks = [asyncio.create_task(run_program(client, model, p, stats.started, prompts, slots, stats, args.tell_calls_left)) for p in programs]
        timed_out = False
        try:
            async with asyncio.timeout(args.duration):
                await asyncio.gather(*tasks)
        except TimeoutError:
            timed_out = True  # the unfinished programs were cancelled (and ended on the server)
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, *tasks, return_exceptions=True)
    elapsed = time.monotonic() - stats.started
    span = (stats.last_finish - stats.started) if stats.programs_done else elapsed
    lat = sorted(stats.latencies)
    return {
        "workload": args.workload,
        "programs": len(programs),
        "completed": stats.programs_done,
        "failed": stats.programs_failed,
        "unfinished": len(programs) - stats.programs_done - stats.programs_failed,
        "timed_out": timed_out,
        "calls": sum(len(p.calls) for p in programs),
        "calls_ok": stats.calls_ok,
        "call_errors": stats.call_errors,
        "errors": [{"message": m, "count": n} for m, n in stats.errors.most_common(5)],
        "latency_mean": sum(lat) / len(lat) if lat else None,
        "latency_p50": percentile(lat, 50) if lat else None,
        "latency_p95": percentile(lat, 95) if lat else None,
        "latency_p99": percentile(lat, 99) if lat else None,
        "token_latency_mean": sum(stats.token_latencies) / len(stats.token_latencies) if stats.token_latencies else None,
        "throughput_programs_per_s": stats.programs_done / span if span > 0 else None,
        "throughput_tokens_per_s": stats.output_tokens / span if span > 0 else None,
        "output_tokens": stats.output_tokens,
        "prompt_tokens": stats.prompt_tokens,
        "length_mismatches": stats.length_mismatches,
        "elapsed_s": elapsed,
        "rate": args.rate,
        "token_scale": args.token_scale,
        "tokens_per_word": per_word,
    }


def print_report(r: dict[str, Any]) -> None:
    def s(v: float | None, fmt: str = ".3f") -> str:
        return "n/a" if v is None else format(v, fmt)

    print(f"Load: {r['workload']}, {r['programs']} programs at {r['rate']:g}/s, token scale {r['token_scale']:g}")
    print(
        f"Programs: {r['completed']} completed, {r['failed']} failed, {r['unfinished']} unfinished "
        f"in {r['elapsed_s']:.1f} s{' (time limit reached)' if r['timed_out'] else ''}"
    )
    print(f"Calls: {r['calls_ok']} ok, {r['call_errors']} errors, {r['length_mismatches']} with an unexpected length")
    print(
        f"Program latency (s): mean {s(r['latency_mean'])} p50 {s(r['latency_p50'])} "
        f"p95 {s(r['latency_p95'])} p99 {s(r['latency_p99'])}"
    )
    print(f"Mean token latency: {s(r['token_latency_mean'], '.4f')} s/token")
    print(
        f"Throughput: {s(r['throughput_programs_per_s'])} programs/s, "
        f"{s(r['throughput_tokens_per_s'], '.1f')} output tokens/s"
    )
    for e in r["errors"]:
        print(f"Error x{e['count']}: {e['message']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--model", default=None, help="default: the server's first model")
    parser.add_argument("--workload", choices=WORKLOADS, default="mixed")
    parser.add_argument("--programs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0.5, help="program arrivals per second (Poisson)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--token-scale", type=float, default=0.1, help="multiplies every prompt and output length")
    parser.add_argument("--max-prompt", type=int, default=512, help="cap on a call's prompt tokens after scaling")
    parser.add_argument("--max-output", type=int, default=64, help="cap on a call's output tokens after scaling")
    calls = parser.add_mutually_exclusive_group()
    calls.add_argument("--max-calls", type=int, default=None, help="keep only each program's first N calls")
    calls.add_argument(
        "--call-fraction", type=float, default=None,
        help="keep a random fraction of each program's calls, at least one (LATS: whole iterations), as bench/engine_programs.py does",
    )
    parser.add_argument("--delay-scale", type=float, default=1.0, help="multiplies tool/think delays")
    parser.add_argument("--concurrency", type=int, default=64, help="most calls in flight at once")
    parser.add_argument("--duration", type=float, default=600.0, help="stop (and end every program) after this many s")
    parser.add_argument("--progress-interval", type=float, default=5.0)
    parser.add_argument(
        "--tell-calls-left", action="store_true",
        help="each call says how many calls its program has not issued yet, itself included (X-Autellix-Calls-Left)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = parser.parse_args(argv)
    if args.token_scale <= 0 or args.max_prompt < 1 or args.max_output < 1 or args.concurrency < 1:
        parser.error("--token-scale must be > 0; --max-prompt, --max-output and --concurrency >= 1")
    if args.max_calls is not None and args.max_calls < 1:
        parser.error("--max-calls must be >= 1")
    if args.call_fraction is not None and not 0 < args.call_fraction <= 1:
        parser.error("--call-fraction must be in (0, 1]")
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
