"""What keeps Autellix from the srpt oracle on the A100 preset (issue 10's target: within 0.8x of
srpt's throughput at 10x the unloaded latency on every workload).

On each workload's seeded traces, Autellix's policy on its defaults runs beside variants that each
lift one of its limits: a ladder three times finer (ratio 2^(1/3) over the default span, 8 .. 65536 units),
no anti-starvation, and step crediting (every call in a step credited the step's work, the plug-in's
old default); then mlfq, fcfs and srpt, which ranks programs by their true remaining work. If no
non-clairvoyant variant comes near srpt, what limits Autellix is what srpt knows and it does not.

With `--predictors` the variants are srpt's instead, each knowing less (`SrptKnowledge`): its
remaining work misestimated by a log-normal factor per call (spread 0.5 or 1.0: within 1.65x or
2.7x of the truth for two calls in three), or only the calls issued so far (what a predictor of each
call's output length could know, never a program's later calls), exact or misestimated; and the
Gittins rank (only the distribution of programs' total work and each program's attained work: the
best a ranking that does not know a program's size can do), from all programs or from those of the
program's own workload (on mixed, knowing which kind of agent a program is). On lats and mixed
plas, the plug-in's default, runs beside atlas. Last, the core itself (plas) with each program's
client telling it the calls the program has left (`Scheduler.set_calls_left`), exactly or from a
budget of up to 3x the calls it makes (what an agent's step limit would say). Where they cross
0.8x of srpt says what a predictor of remaining work must know, and how well, for Autellix to.

    .venv/bin/python bench/sim/srpt_gap.py                 # sharegpt, bfcl, lats, mixed (~15 min, 2 jobs)
    .venv/bin/python bench/sim/srpt_gap.py --workloads sharegpt --jobs 1
    .venv/bin/python bench/sim/srpt_gap.py --predictors    # srpt knowing less

Writes bench/results/sim/srpt-gap.{json,md,png}, or srpt-predictors.* (the sweep's files, plus a gap
table in the .md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autellix import work_units
from autellix.sim.presets import get_preset
from autellix.sim.simulator import CLIENT_CALLS_LEFT
from autellix.sim.sweep import Series, default_rates, estimate_capacity, run_sweep, throughput_table, write_outputs

OUT = Path(__file__).resolve().parents[2] / "bench" / "results" / "sim"
# Autellix's policy per workload, as in bench/results/sim/defaults-summary.md.
AUTELLIX = {"sharegpt": "plas", "bfcl": "plas", "lats": "atlas", "mixed": "atlas"}
DURATION_S = 600.0  # programs arriving in this window, per point (as bench/sim/run_sweeps.sh)
MAX_LOAD = {"sharegpt": 6.0, "bfcl": 6.0, "lats": 4.0, "mixed": 4.0}  # x capacity, as run_sweeps.sh


def finer_ladder(ratio: float = 2 ** (1 / 3)) -> tuple[list[float], list[float]]:
    """The default ladder's span (8 .. 65536 units) with boundaries `ratio` apart; quanta = widths."""
    low, high = work_units.QUEUE_BOUNDARIES[0], work_units.QUEUE_BOUNDARIES[-1]
    bounds = [low]
    while bounds[-1] * ratio < high * 1.0001:
        bounds.append(bounds[-1] * ratio)
    edges = [0.0, *bounds]
    widths = [hi - lo for lo, hi in zip(edges, edges[1:])]
    return bounds, [*widths, widths[-1]]


def series_for(workload: str) -> list[Series]:
    policy = AUTELLIX[workload]
    bounds, quanta = finer_ladder()
    return [
        Series(policy, policy),
        Series(f"{policy} finer ladder", policy, scheduler_options=(("queue_boundaries", bounds), ("quanta", quanta))),
        Series(f"{policy} no anti-starvation", policy, scheduler_options=(("starvation_ratio", float("inf")),)),
        Series(f"{policy} step credit", policy, clock="step-work"),
        Series("mlfq", "mlfq"),
        Series("fcfs", "fcfs"),
        Series("srpt", "srpt"),
    ]


def predictor_series(workload: str) -> list[Series]:
    policy = AUTELLIX[workload]
    return [
        Series(policy, policy),
        Series("srpt", "srpt"),
        Series("srpt, error 0.5", "srpt", scheduler_options=(("error", 0.5),)),
        Series("srpt, error 1.0", "srpt", scheduler_options=(("error", 1.0),)),
        Series("srpt, issued calls", "srpt", scheduler_options=(("knows", "issued"),)),
        Series("srpt, issued calls, error 0.5", "srpt", scheduler_options=(("knows", "issued"), ("error", 0.5))),
        Series("gittins oracle", "srpt", scheduler_options=(("knows", "distribution"),)),
        Series("gittins oracle by kind", "srpt", scheduler_options=(("knows", "distribution by kind"),)),
        *([Series("plas", "plas")] if policy != "plas" else []),
        Series("plas, clients tell calls left", "plas", scheduler_options=((CLIENT_CALLS_LEFT, 0.0),)),
        Series("plas, clients tell a budget <= 3x", "plas", scheduler_options=((CLIENT_CALLS_LEFT, 2.0),)),
    ]


def gap_table(rows: list[dict], slo: float = 10.0) -> str:
    """Each series' throughput at `slo` x the unloaded latency as a fraction of srpt's."""
    lines = [
        f"| workload | series | throughput at {slo:g}x (programs/s) | / srpt |",
        "|---|---|---|---|",
    ]
    for row in rows:
        if row["slo"] != slo:
            continue
        bound = "" if row["exact"] else ">="
        ratio = row.get("vs_srpt")
        lines.append(
            f"| {row['workload']} | {row['series']} | {bound}{row['throughput']:.3g} "
            f"| {'' if ratio is None else f'{ratio:.2f}x'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="sharegpt,bfcl,lats,mixed")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--predictors", action="store_true", help="srpt knowing less, instead of Autellix's variants")
    parser.add_argument("--name", help="results name (default srpt-gap, or srpt-predictors)")
    args = parser.parse_args(argv)
    make_series = predictor_series if args.predictors else series_for
    name = args.name or ("srpt-predictors" if args.predictors else "srpt-gap")
    config = get_preset("a100-llama8b")
    workloads = [w for w in args.workloads.split(",") if w]
    results = []
    for workload in workloads:
        top = MAX_LOAD[workload] * estimate_capacity(workload, config, 1) * 1.0001
        rates = {workload: [r for r in default_rates(workload, config, 1, 11) if r <= top]}
        results += run_sweep(
            [workload], make_series(workload), rates, 0, args.seed, config, jobs=args.jobs,
            wall_limit=60.0, log=lambda line: print(line, file=sys.stderr, flush=True), duration=DURATION_S,
        )
    series = ", ".join(s.label for s in make_series("sharegpt"))
    meta = {"preset": config.name, "seed": args.seed, "duration_s": DURATION_S, "clock": "work (per series)",
            "series": f"{series} (Autellix's policy is atlas on lats and mixed, with plas beside it in --predictors)"}
    paths = write_outputs(results, OUT, name, meta)
    gap = gap_table(throughput_table(results))
    with open(paths["md"], "a", encoding="utf-8") as f:
        f.write("\n## Throughput at 10x the unloaded latency, against srpt\n\n" + gap)
    print(gap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
