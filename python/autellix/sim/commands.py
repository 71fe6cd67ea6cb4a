"""The simulator's subcommands: ``workload``, ``simulate`` and ``sweep`` (registered by autellix.cli).

Heavy imports happen inside the handlers, so ``autellix --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from autellix.arg_types import nonneg_int, positive_float, positive_int
from autellix.contract import CORE_POLICIES
from autellix.sim.engine import CLOCKS

__all__ = ["register"]

POLICIES = (*CORE_POLICIES, "srpt")  # srpt: the simulator's clairvoyant oracle
BALANCERS = ("autellix", "least-used", "round-robin")
WORKLOADS = ("sharegpt", "bfcl", "lats", "mixed")


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None


def _choices_list(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} (comma-separated), got {text!r}")
        return items

    return parse


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine model")
    g.add_argument("--preset", default="a100-llama8b", help="engine preset (default a100-llama8b; see bench/sim/README.md)")
    g.add_argument("--engine-config", metavar="FILE", help="engine model from a JSON file (EngineConfig fields)")
    g.add_argument("--max-running", type=positive_int, help="max calls running at once per engine")
    g.add_argument("--token-budget", type=positive_int, help="max tokens per step (chunked prefill)")
    g.add_argument("--kv-tokens", type=positive_int, help="KV cache size per engine, in tokens")
    g.add_argument("--preemption", choices=("recompute", "swap"), help="how a preempted call's KV is handled")
    g.add_argument("--multi-step", type=positive_int, help="schedule at least every N decode steps")
    g.add_argument("--no-prefix-cache", action="store_true", help="disable the per-engine prefix cache")
    g.add_argument("--no-chunked-prefill", action="store_true",
                   help="prefill-only steps of whole prompts, decoding stalls (vLLM V0 without chunked prefill)")
    s = p.add_argument_group("scheduler (core policies)")
    s.add_argument("--clock", choices=CLOCKS, default="work",
                   help="the scheduler's clock: 'work' = engine work units (one decode token = 1 unit, prefill "
                        "1/128 unit per prompt token), each call credited its own work in a step, as the vLLM "
                        "plug-in runs it, with the ladder 8, 16, ..., 65536 units unless --queue-boundaries is "
                        "given; 'step-work' = the same units, every call in a step credited the step's (the "
                        "plug-in with own_work_credit off); 'seconds' = simulated seconds, with the core's 1, "
                        "2, ..., 64 s ladder (default work)")
    s.add_argument("--queue-boundaries", type=_float_list, metavar="S1,S2,...",
                   help="K-1 attained-service thresholds in the scheduler's clock: engine work units, or "
                        "seconds with --clock seconds")
    s.add_argument("--quanta", type=_float_list, metavar="Q1,...,QK",
                   help="K per-queue quanta in the scheduler's clock: engine work units, or seconds with "
                        "--clock seconds")
    s.add_argument("--starvation-ratio", type=float, help="anti-starvation beta (inf disables)")


def _engine_config(args: argparse.Namespace) -> Any:
    from autellix.sim.presets import get_preset, load_engine_config

    cfg = load_engine_config(args.engine_config) if args.engine_config else get_preset(args.preset)
    changes: dict[str, Any] = {}
    for name in ("max_running", "token_budget", "kv_tokens", "preemption", "multi_step"):
        v = getattr(args, name)
        if v is not None:
            changes[name] = v
    if args.no_prefix_cache:
        changes["prefix_caching"] = False
    if args.no_chunked_prefill:
        changes["chunked_prefill"] = False
    return cfg.replace(**changes) if changes else cfg


def _scheduler_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.queue_boundaries is not None:
        opts["queue_boundaries"] = args.queue_boundaries
    if args.quanta is not None:
        opts["quanta"] = args.quanta
    if args.starvation_ratio is not None:
        opts["starvation_ratio"] = args.starvation_ratio
    return opts


# ----- workload

def _cmd_workload(args: argparse.Namespace) -> int:
    from autellix.sim.trace import dump_trace
    from autellix.sim.workloads import generate

    programs = generate(args.workload, args.rate, args.programs, args.seed)
    if args.output and args.output != "-":
        dump_trace(programs, args.output)
    else:
        dump_trace(programs, sys.stdout)
    return 0


# ----- simulate

def _cmd_simulate(args: argparse.Namespace) -> int:
    from autellix.sim.metrics import summarize
    from autellix.sim.progress import Progress
    from autellix.sim.simulator import simulate
    from autellix.sim.sweep import clean_json
    from autellix.sim.trace import load_trace
    from autellix.sim.workloads import generate

    if args.trace:
        if args.workload or args.rate or args.programs is not None:
            raise SystemExit("autellix simulate: give either --trace or --workload/--rate/--programs, not both")
        programs = load_trace(sys.stdin if args.trace == "-" else args.trace)
        source: dict[str, Any] = {"trace": args.trace}
    else:
        if not (args.workload and args.rate and args.programs is not None):
            raise SystemExit("autellix simulate: give --trace FILE, or --workload, --rate and --programs")
        programs = generate(args.workload, args.rate, args.programs, args.seed)
        source = {"workload": args.workload, "rate": args.rate, "seed": args.seed}
    source["clock"] = args.clock
    if args.policy != "srpt" and args.engines == 1 and args.balancer != "autellix":
        pass  # a balancer only matters with several engines
    cfg = _engine_config(args)
    progress = Progress("simulate", enabled=not args.no_progress)
    res = simulate(programs, args.policy, args.engines, args.balancer, cfg, _scheduler_options(args),
                   progress=progress, short_call_tokens=args.short_call_tokens, clock=args.clock)
    out = summarize(res, source)
    if args.json:
        json.dump(clean_json(out), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        w = max(len(k) for k in out)
        for k, v in out.items():
            if isinstance(v, float):
                v = f"{v:.6g}"
            print(f"{k:<{w}}  {v}")
    return 0


# ----- sweep

def _cmd_sweep(args: argparse.Namespace) -> int:
    from autellix.sim.sweep import Series, default_rates, run_sweep, write_outputs

    cfg = _engine_config(args)
    opts = tuple(sorted(_scheduler_options(args).items()))

    def opts_for(pol: str) -> tuple[tuple[str, Any], ...]:
        # srpt takes no options; fcfs has a single queue, so queue boundaries and quanta do not apply
        if pol == "srpt":
            return ()
        if pol == "fcfs":
            return tuple((k, v) for k, v in opts if k not in ("queue_boundaries", "quanta"))
        return opts

    series: list[Series] = []
    if args.balancers:
        for pol in args.policies:
            for bal in args.balancers:
                label = bal if len(args.policies) == 1 else f"{pol}/{bal}"
                series.append(Series(label, pol, args.engines, bal, opts_for(pol)))
    else:
        for pol in args.policies:
            series.append(Series(pol, pol, args.engines, "autellix", opts_for(pol)))
    rates = {}
    for w in args.workloads:
        rates[w] = args.rates if args.rates else default_rates(w, cfg, args.engines, args.points)
    log = None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    results = run_sweep(args.workloads, series, rates, args.programs, args.seed, cfg, args.jobs, args.wall_limit, log,
                        args.duration, clock=args.clock)
    meta = {"workloads": args.workloads, "series": [s.label for s in series], "engines": args.engines,
            "programs": args.programs if args.duration is None else f"rate x {args.duration:g} s (>= 50)", "seed": args.seed, "rates": rates, "engine": cfg,
            "clock": args.clock, "scheduler_options": dict(opts), "metric": "mean_token_latency", "slos": args.slo}
    paths = write_outputs(results, args.out, args.name, meta, args.slo, plots=not args.no_plot)
    for p in paths.values():
        print(p)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("workload", help="generate a workload trace (JSONL) on stdout",
                       description="Generate a seeded workload trace in the JSONL trace format.")
    p.add_argument("--workload", "-w", required=True, choices=WORKLOADS)
    p.add_argument("--rate", "-r", required=True, type=positive_float, help="program arrival rate (programs/s)")
    p.add_argument("--programs", "-n", required=True, type=nonneg_int, help="number of programs")
    p.add_argument("--seed", "-s", type=int, default=0)
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(func=_cmd_workload)

    p = sub.add_parser("simulate", help="simulate a trace or a generated workload",
                       description="Simulate programs on modelled engines driven by the Autellix core.")
    src = p.add_argument_group("programs")
    src.add_argument("--trace", "-t", metavar="FILE", help="JSONL trace ('-' for stdin)")
    src.add_argument("--workload", "-w", choices=WORKLOADS)
    src.add_argument("--rate", "-r", type=positive_float, help="program arrival rate (programs/s)")
    src.add_argument("--programs", "-n", type=nonneg_int)
    src.add_argument("--seed", "-s", type=int, default=0)
    p.add_argument("--policy", "-p", choices=POLICIES, default="plas")
    p.add_argument("--engines", "-e", type=positive_int, default=1)
    p.add_argument("--balancer", "-b", choices=BALANCERS, default="autellix")
    p.add_argument("--short-call-tokens", type=positive_int, default=2048,
                   help="autellix balancer: calls up to this many prompt tokens go to the least-used engine")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress output on stderr")
    _add_engine_args(p)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("sweep", help="rate sweeps: plots and throughput at equal latency",
                       description="Sweep program arrival rates for several policies and workloads; writes "
                                   "NAME.json, NAME.md (throughput at equal latency) and NAME.png to --out.")
    p.add_argument("--workloads", type=_choices_list(WORKLOADS), default=list(WORKLOADS),
                   help=f"comma-separated, from {','.join(WORKLOADS)} (default all)")
    p.add_argument("--policies", type=_choices_list(POLICIES), default=["fcfs", "mlfq", "plas", "atlas", "srpt"],
                   help=f"comma-separated, from {','.join(POLICIES)} (default all)")
    p.add_argument("--balancers", type=_choices_list(BALANCERS),
                   help="compare these balancers (one series per policy x balancer)")
    p.add_argument("--engines", "-e", type=positive_int, default=1)
    p.add_argument("--rates", type=_float_list, help="rates to sweep (default: from ~0.2x to 6x the estimated capacity)")
    p.add_argument("--points", type=positive_int, default=11, help="number of default rates (<= 11)")
    p.add_argument("--programs", "-n", type=positive_int, default=1000, help="programs per point")
    p.add_argument("--duration", type=positive_float,
                   help="instead of --programs: simulate the programs arriving in this many seconds (rate x duration)")
    p.add_argument("--seed", "-s", type=int, default=0)
    p.add_argument("--slo", type=_float_list, default=[2.0, 5.0, 10.0],
                   help="latency targets as multiples of the unloaded mean token latency")
    p.add_argument("--jobs", "-j", type=positive_int, default=1, help="points simulated in parallel")
    p.add_argument("--wall-limit", type=positive_float, default=None,
                   help="stop a point after this many seconds (it counts as saturated)")
    p.add_argument("--out", default="bench/results/sim", help="output folder")
    p.add_argument("--name", default="sweep", help="output file stem")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--quiet", "-q", action="store_true")
    _add_engine_args(p)
    p.set_defaults(func=_cmd_sweep)
