"""The paper's experiment on a real vLLM engine: programs replayed against vanilla vLLM and Autellix.

The simulator's workloads (sharegpt, bfcl, lats, mixed), shrunk to this machine (see
bench/engine/workload.py: a random quarter of each program's calls, so heavy programs stay heavy),
are replayed in real time against engines with identical vLLM settings (tiny random-weight Llama,
CPU) that differ only in the scheduler: vLLM's own FCFS with prefix caching (`vllm`, the paper's
vLLM-opt and the baseline), the same without prefix caching (`vllm-noprefix`), or Autellix's
plug-in on its defaults (`plas`, `atlas`: no queue ladder, quanta or calibration from the bench).
Every engine stays up for the whole sweep and the series take turns point by point, so noise from
other work on the machine hits them alike.

    .venv/bin/python bench/engine_programs.py            # the default run: mixed, 2 seeds, 4 series
    .venv/bin/python bench/engine_programs.py --quick    # ~2 min smoke run

Outputs under bench/results/engine/: NAME.json (every point, per seed and median), NAME.md (tables),
NAME.png (mean and P95 token latency vs rate, one line per scheduler). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
# One OpenMP thread per engine. vLLM's CPU default binds one thread per core; on 2 cores shared
# with other work its threads spin-wait on each other whenever a core is taken, and a decode step
# of the tiny model went from ~10 ms to ~200 ms (measured, see bench/README.md). Both schedulers
# get the same setting; set these variables yourself to override.
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from engine import calibrate, engines  # noqa: E402
from engine.metrics import add_overhead, add_slowdowns, median_over_seeds, summarize_point  # noqa: E402
from engine.prompts import PromptBuilder  # noqa: E402
from engine.replay import replay, snapshot_counters  # noqa: E402
from engine.report import write  # noqa: E402
from engine.workload import Scaling, programs_for_point  # noqa: E402

WORKLOADS = ("sharegpt", "bfcl", "lats", "mixed")
SCHEDULERS = ("vllm", "vllm-noprefix", "plas", "atlas")
# x the measured capacity: far enough that every series crosses 20x its unloaded latency or
# saturates (the point wall limit bounds a saturated point's time)
RATE_FACTORS = (0.75, 1.5, 3.0, 5.0, 8.0, 12.0)
BASELINES = ("vllm", "vllm-noprefix")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a 1-2 minute run: mixed only, 2 rates, 1 seed")
    ap.add_argument("--workloads", default="mixed",
                    help=f"comma-separated, of {', '.join(WORKLOADS)} (default: mixed, the issue's target)")
    ap.add_argument("--schedulers", default=",".join(SCHEDULERS),
                    help=f"comma-separated series, of {', '.join(engines.SERIES)}; must include vllm (the baseline)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1; results are the median over seeds")
    ap.add_argument("--programs", type=int, default=48,
                    help="programs per point: enough that past capacity a queue builds up and persists")
    ap.add_argument("--rates", type=_floats, default=None,
                    help="programs/s, the same for every workload (default: --rate-factors x measured capacity)")
    ap.add_argument("--rate-factors", type=_floats, default=list(RATE_FACTORS))
    ap.add_argument("--token-scale", type=float, default=0.25, help="multiplies prompt and output lengths")
    ap.add_argument("--max-prompt", type=int, default=768)
    ap.add_argument("--max-output", type=int, default=192)
    ap.add_argument("--call-fraction", type=float, default=0.25,
                    help="each program keeps this random fraction of its calls (at least one; LATS: of its "
                         "iterations), the same sample for every series and rate of a seed")
    ap.add_argument("--max-calls", type=int, default=None,
                    help="instead of --call-fraction: chains (sharegpt, bfcl) keep their first N calls "
                         "(the earlier scaling; with --lats-iterations, default 8)")
    ap.add_argument("--lats-iterations", type=int, default=None,
                    help="instead of --call-fraction: LATS keeps its first N iterations (6 calls each; default 2)")
    ap.add_argument("--delay-scale", type=float, default=0.25, help="multiplies tool/think delays between calls")
    ap.add_argument("--max-num-seqs", type=int, default=8, help="vLLM batch size limit, for every engine")
    ap.add_argument("--kv-cache-mib", type=int, default=256)
    ap.add_argument("--max-num-batched-tokens", type=int, default=None)
    ap.add_argument("--block-size", type=int, default=32,
                    help="KV block size in tokens (vLLM's CPU default is 128: coarse prefix-cache hits, and a "
                         "call preempted by recompute redoes up to a block)")
    ap.add_argument("--starvation-ratio", type=float, default=None,
                    help="Autellix beta (default: the core's); the queue ladder and quanta are always the plug-in's")
    ap.add_argument("--point-wall-limit", type=float, default=120.0,
                    help="seconds after the last arrival; a point still running then is aborted (saturated)")
    ap.add_argument("--calibrate", action="store_true",
                    help="re-measure the capacities even if calibration.json has them")
    ap.add_argument("--slos", type=_floats, default=[2.0, 5.0, 10.0, 20.0],
                    help="latency targets, x the unloaded (lowest-rate) latency")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "engine")
    ap.add_argument("--name", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        quick = {"workloads": "mixed", "seeds": 1, "programs": 6, "rate_factors": [0.5, 1.5],
                 "call_fraction": 0.1, "point_wall_limit": 20.0}
        for key, value in quick.items():
            if getattr(args, key) == ap.get_default(key):
                setattr(args, key, value)
    args.name = args.name or ("quick" if args.quick else "engine_programs")
    return args


def autellix_defaults(starvation_ratio: float | None) -> dict[str, Any]:
    """What the Autellix engines run with: the plug-in's own ladder (autellix.work_units)."""
    from autellix import work_units
    from autellix.vllm.settings import AutellixSettings

    credit = "its own work" if AutellixSettings().own_work_credit else "the step's work"
    return {"clock": f"engine work units (1 = a decode token; + prefill tokens / {work_units.PREFILL_TOKENS_PER_UNIT}), "
                     f"each call credited {credit}",
            "queue_boundaries_units": list(work_units.QUEUE_BOUNDARIES), "quanta_units": list(work_units.QUANTA),
            "starvation_ratio": starvation_ratio if starvation_ratio is not None else "core default"}


def machine() -> dict[str, Any]:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "")
    except OSError:
        model = ""
    load = os.getloadavg()
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load]}


class Log:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.0f}s] {message}", flush=True)


async def start_engines(schedulers: list[str], settings: engines.EngineSettings,
                        drivers: dict[str, Any], log: Log) -> None:
    """Start the engines not yet running, side by side (their start-up is mostly waiting)."""
    others = [s for s in schedulers if s not in drivers]
    if not others:
        return
    log(f"starting the {', '.join(others)} engine(s)")
    started = await asyncio.gather(*(engines.start(s, settings) for s in others), return_exceptions=True)
    for s, d in zip(others, started):
        if not isinstance(d, BaseException):
            drivers[s] = d
    for d in started:
        if isinstance(d, BaseException):
            raise d


async def calibration(args: argparse.Namespace, workloads: list[str], scaling: Scaling,
                      settings: engines.EngineSettings, drivers: dict[str, Any], log: Log) -> dict[str, Any]:
    """Per-workload capacities: stored by an earlier run with the same settings, else measured
    now on the vllm engine (and stored). Not needed when --rates is given."""
    # what the baseline engine's numbers depend on (not the Autellix knobs)
    baseline = {k: v for k, v in vars(settings).items() if k != "starvation_ratio"}
    key = json.loads(json.dumps({"scaling": vars(scaling), "engine": baseline}))
    path = args.out / "calibration.json"
    # one entry per set of settings (the default run's and --quick's live side by side)
    entries: list[dict[str, Any]] = json.loads(path.read_text()).get("entries", []) if path.exists() else []
    stored = next((e for e in entries if e["key"] == key), {}) if not args.calibrate else {}
    cal: dict[str, Any] = {"key": key, "capacity": dict(stored.get("capacity", {})),
                           "measured_at": stored.get("measured_at")}
    missing = [] if args.rates else [w for w in workloads if w not in cal["capacity"]]
    if not missing:
        return cal
    await start_engines(["vllm"], settings, drivers, log)
    for w in missing:
        cal["capacity"][w] = await calibrate.capacity(drivers["vllm"], w, scaling, calls=4 * settings.max_num_seqs)
        log(f"{w}: capacity {cal['capacity'][w]:.2f} programs/s (its call mix with the batch full)")
    cal["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    cal["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [e for e in entries if e["key"] != key] + [cal]
    path.write_text(json.dumps({"entries": entries}, indent=1) + "\n")
    return cal


async def run(args: argparse.Namespace) -> dict[str, Path]:
    log = Log()
    workloads = [w for w in args.workloads.split(",") if w]
    schedulers = [s for s in args.schedulers.split(",") if s]
    if "vllm" not in schedulers:
        raise SystemExit("--schedulers must include vllm: it is the baseline")
    unknown = [s for s in schedulers if s not in engines.SERIES]
    if unknown:
        raise SystemExit(f"--schedulers: unknown {', '.join(unknown)}; expected some of {', '.join(engines.SERIES)}")
    truncate = args.max_calls is not None or args.lats_iterations is not None
    scaling = Scaling(args.token_scale, args.max_prompt, args.max_output,
                      None if truncate else args.call_fraction,
                      args.max_calls if args.max_calls is not None else 8,
                      args.lats_iterations if args.lats_iterations is not None else 2, args.delay_scale)
    settings = engines.EngineSettings(args.max_num_seqs, 2048, args.kv_cache_mib, args.max_num_batched_tokens,
                                      args.starvation_ratio, args.block_size)
    meta: dict[str, Any] = {"machine": machine(), "scaling": vars(scaling), "engine": vars(settings) | {"model": "tiny"},
                            "programs_per_point": args.programs, "seeds": args.seeds,
                            "point_wall_limit_s": f"arrival span + {args.point_wall_limit:g}"}
    drivers: dict[str, Any] = {}
    try:
        cal = await calibration(args, workloads, scaling, settings, drivers, log)
        rates = {w: list(args.rates) if args.rates else [round(cal["capacity"][w] * f, 3) for f in args.rate_factors]
                 for w in workloads}
        meta.update(autellix=autellix_defaults(args.starvation_ratio), rates=rates,
                    capacity={w: cal["capacity"][w] for w in workloads if w in cal["capacity"]},
                    calibrated_at=cal.get("measured_at"))
        log(f"Autellix on the plug-in's defaults {meta['autellix']}; rates {rates}")
        await start_engines(schedulers, settings, drivers, log)
        raw = await sweep(drivers, workloads, schedulers, rates, scaling, args, log)
    finally:
        await asyncio.gather(*(d.shutdown() for d in drivers.values()), return_exceptions=True)
    meta["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    meta["wall_s"] = round(time.monotonic() - log.t0, 1)
    add_slowdowns(raw)
    points = median_over_seeds(raw)
    paths = write(args.out, args.name, meta, raw, points, args.slos, BASELINES)
    log(f"wrote {', '.join(str(p) for p in paths.values())}")
    return paths


async def sweep(drivers, workloads, schedulers, rates, scaling, args, log) -> list[dict[str, Any]]:
    total = sum(len(rates[w]) for w in workloads) * args.seeds * len(schedulers)
    raw: list[dict[str, Any]] = []
    for w in workloads:
        for rate in rates[w]:
            for seed in range(args.seeds):
                programs = programs_for_point(w, rate, args.programs, seed, scaling)
                for s in schedulers:
                    label = f"[{len(raw) + 1}/{total}] {w} rate={rate:g} seed={seed} {s}"

                    def progress(done: int, count: int, live: int, label: str = label) -> None:
                        log(f"{label}: {done}/{count} programs done, {live} calls in flight")

                    before = snapshot_counters(await drivers[s].snapshots())
                    run_ = await replay(drivers[s], programs, PromptBuilder(f"{w}:{rate}:{seed}", scaling.max_prompt),
                                        tag=f"{w}-{rate}-{seed}-{s}",
                                        wall_limit=max(p.arrival for p in programs) + args.point_wall_limit,
                                        on_progress=progress, tell_calls_left=s in engines.TELL_CALLS_LEFT)
                    point = summarize_point(run_)
                    # the 1-minute load average as the point ends: other work on the shared machine
                    point.update(workload=w, rate=rate, seed=seed, series=s, loadavg_1m=round(os.getloadavg()[0], 2))
                    add_overhead(point, before, snapshot_counters(await drivers[s].snapshots()))
                    raw.append(point)
                    share = ""
                    if "scheduler_share" in point:
                        share = (f", scheduler {point['scheduler_share'] * 100:.2f}% of a {point['mean_step_seconds'] * 1000:.1f} ms "
                                 f"step, {point['priority_preemptions']:.0f} preemptions, {point['requeued']:.0f} requeued, "
                                 f"running {point['mean_running'] or 0:.1f} / waiting {point['mean_waiting'] or 0:.1f}")
                    log(f"{label}: mean token latency {point['mean_token_latency'] * 1000:.1f} ms, "
                        f"{point['completed']}/{point['programs']} done in {point['wall']:.1f}s{share}, load {point['loadavg_1m']:g}")
    return raw


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
