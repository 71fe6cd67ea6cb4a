"""Scaling across engine replicas: the highest program arrival rate whose mean token latency stays
at or under a fixed target, for N replicas and a load balancer (the paper's "throughput at equal
latency", Section 6), found by a search over the rate.

* :func:`search_rate`: geometric bracketing from a starting rate, then geometric bisection, over a
  ``measure(rate)`` function. It returns the highest rate *simulated* to meet the target and the
  lowest rate simulated to miss it, within ``rel_tol`` of each other (when ``exact``).
* :func:`measure_point`: one bounded simulation (the programs arriving in a fixed window), with a
  sound early stop: once the running lower bound on the mean token latency (finished programs
  exactly, unfinished ones as if they finished now) is above the target, the point misses it
  whatever happens next, and the simulation stops.
* :func:`scaling_curve`: the search for every replica count, balancer and seed.
* Workloads: the generator's (:mod:`autellix.sim.workloads`), or ``<name>-accum``: the same programs
  with *accumulated* context (:func:`accumulate_context`), so a program's context grows call by call
  and only the engine that ran its previous call holds it in its prefix cache.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from autellix.contract import CORE_POLICIES
from autellix.sim.metrics import summarize
from autellix.sim.presets import EngineConfig, get_preset
from autellix.sim.simulator import SimResult, Simulator
from autellix.sim.trace import Call, Program
from autellix.sim.workloads import WORKLOADS, generate

__all__ = [
    "ACCUM_SUFFIX",
    "Search",
    "accumulate_context",
    "make_programs",
    "measure_point",
    "scaling_curve",
    "scaling_rows",
    "search_rate",
    "unloaded_latency",
]

ACCUM_SUFFIX = "-accum"
MAX_CONTEXT = 32_768  # cap of an accumulated context (Llama-3.1 allows 128 k; bfcl-accum peaks ~15 k)


# ----- workloads


def accumulate_context(
    programs: Sequence[Program], max_context: int = MAX_CONTEXT
) -> list[Program]:
    """The programs with accumulated context: a call's prompt is its parents' whole context (the
    longest parent's prompt + output) followed by the call's own new tokens, the part of its drawn
    prompt that the generator does not mark as shared (``prompt - prefix``); its ``prefix_tokens`` is
    that parent context, which an engine's prefix cache can serve only if it ran the parent (or the
    program's longest earlier call). Roots are unchanged. A context that would exceed
    ``max_context`` keeps only its most recent history (the prefix shrinks to fit)."""
    out = []
    for p in programs:
        ctx: dict[str, int] = {}
        calls = []
        for c in p.calls:
            new = c.prompt_tokens - c.prefix_tokens
            base = max((ctx[q] for q in c.parents), default=0)
            base = max(0, min(base, max_context - new - c.output_tokens - 1))
            prompt = base + new
            calls.append(
                Call(c.call_id, prompt, c.output_tokens, c.parents, c.delay, base)
            )
            ctx[c.call_id] = prompt + c.output_tokens
        out.append(Program(p.program_id, p.arrival, calls, p.system_tokens, p.workload))
    return out


_TRACES: dict[tuple[str, int], list[Program]] = {}


def _base_trace(workload: str, programs: int, seed: int) -> list[Program]:
    """The first ``programs`` programs of ``workload`` at 1 program/s (cached per workload and seed)."""
    key = (workload, seed)
    have = _TRACES.get(key)
    if have is None or len(have) < programs:
        if workload.endswith(ACCUM_SUFFIX):
            base = workload[: -len(ACCUM_SUFFIX)]
            if base not in WORKLOADS:
                raise ValueError(f"unknown workload {workload!r}")
            have = accumulate_context(generate(base, 1.0, programs, seed))
        else:
            have = generate(workload, 1.0, programs, seed)
        if len(_TRACES) >= 4:
            _TRACES.clear()
        _TRACES[key] = have
    return have[:programs]


def make_programs(
    workload: str, rate: float, programs: int, seed: int
) -> list[Program]:
    """``programs`` programs of ``workload`` (a generator workload, or one with the ``-accum``
    suffix) arriving at ``rate``: the programs of the seed's trace at 1 program/s with their arrival
    times divided by ``rate``, which is :func:`autellix.sim.workloads.generate` at ``rate`` up to
    rounding (its gaps are ``expovariate(rate)``). So the same seed gives the same programs at every
    rate, and a longer trace starts with the shorter one."""
    if not rate > 0 or math.isinf(rate):
        raise ValueError(
            f"rate must be a positive number of programs per second, got {rate!r}"
        )
    return [
        Program(p.program_id, p.arrival / rate, p.calls, p.system_tokens, p.workload)
        for p in _base_trace(workload, programs, seed)
    ]


# ----- one simulation


class _Missed(Exception):
    def __init__(self, bound: float):
        self.bound = bound


def _lower_bound(sim: Simulator, now: float) -> float:
    """A lower bound on the final mean token latency: finished programs exactly, unfinished ones
    that have arrived as if they finished at ``now`` (they finish later), the rest as 0."""
    total = 0.0
    for p in sim.programs:
        if p.finish >= 0:
            total += (p.finish - p.arrival) / p.output_tokens
        elif p.arrival < now:
            total += (now - p.arrival) / p.output_tokens
    return total / len(sim.programs) if sim.programs else 0.0


def _result(sim: Simulator, wall: float, stopped: bool, now: float) -> SimResult:
    """A SimResult of a simulation interrupted at ``now`` (its engine counters so far)."""
    return SimResult(
        policy=sim.policy,
        engines=len(sim.engines),
        balancer=sim.balancer_name,
        programs=sim.programs,
        engine_stats=[e.stats.as_dict() for e in sim.engines],
        scheduler_stats=[],
        wall_seconds=wall,
        events=0,
        config=sim.cfg,
        extra={"stopped_early": stopped, "sim_time": now},
    )


def _busy_imbalance(engine_stats: Sequence[dict[str, float]]) -> float:
    busy = [e["busy_time"] for e in engine_stats]
    mean = sum(busy) / len(busy) if busy else 0.0
    return max(busy) / mean if mean > 0 else math.nan


KEEP = (
    "programs",
    "completed",
    "calls",
    "mean_token_latency",
    "p95_token_latency",
    "p99_token_latency",
    "mean_latency",
    "throughput",
    "token_throughput",
    "engine_utilization",
    "prefix_hit_rate",
    "preemptions",
    "kv_preemptions",
    "makespan",
    "sim_time",
    "sim_wall_seconds",
)


def measure_point(
    workload: str,
    rate: float,
    engines: int,
    balancer: str,
    seed: int,
    window: float,
    config: EngineConfig | None = None,
    target: float | None = None,
    policy: str = "plas",
    clock: str = "work",
    min_programs: int = 50,
    programs: int | None = None,
    wall_limit: float | None = None,
    short_call_tokens: int = 2048,
) -> dict[str, Any]:
    """Simulates the programs arriving in ``window`` seconds at ``rate`` (at least
    ``min_programs``; ``programs`` fixes the count instead) on ``engines`` replicas.

    Returns the simulation's metrics plus ``search_latency``: the mean token latency when the
    simulation ran to the end; with a ``target``, a simulation stops as soon as a lower bound on
    its mean token latency exceeds the target (``missed_early``; ``search_latency`` is then that
    bound, the other metrics are partial). A ``wall_limit`` stop (real seconds) gives ``inf``.
    """
    n = (
        programs
        if programs is not None
        else max(min_programs, math.ceil(rate * window))
    )
    progs = make_programs(workload, rate, n, seed)
    opts: dict[str, Any] = {"stale_after": math.inf} if policy in CORE_POLICIES else {}
    sim = Simulator(
        progs,
        policy,
        engines,
        balancer,
        config or get_preset("a100-llama8b"),
        opts,
        short_call_tokens,
        clock=clock,
    )
    # the bound costs O(programs): check it every `every` x 4096 events
    every = max(1, n // 2000)
    calls = 0
    last = 0.0

    def check(done: int, total: int, now: float) -> None:
        nonlocal calls, last
        calls += 1
        last = now
        if target is not None and done < total and calls % every == 0:
            bound = _lower_bound(sim, now)
            if bound > target:
                raise _Missed(bound)

    t0 = time.perf_counter()
    missed: float | None = None
    try:
        res = sim.run(check, wall_limit)
    except _Missed as m:
        missed = m.bound
        res = _result(sim, time.perf_counter() - t0, True, last)
    s = summarize(res)
    out: dict[str, Any] = {
        "workload": workload,
        "engines": engines,
        "balancer": balancer if engines > 1 else None,
        "rate": rate,
        "seed": seed,
    }
    out.update({k: s[k] for k in KEEP})
    out["busy_imbalance"] = _busy_imbalance(res.engine_stats)
    out["missed_early"] = missed is not None
    out["wall_limited"] = bool(s["stopped_early"]) and missed is None
    if missed is not None:
        out["search_latency"] = missed
    elif out["wall_limited"] or s["completed"] < s["programs"]:
        out["search_latency"] = math.inf
    else:
        out["search_latency"] = s["mean_token_latency"]
    out["wall"] = time.perf_counter() - t0
    return out


def unloaded_latency(
    workload: str,
    seed: int = 0,
    config: EngineConfig | None = None,
    policy: str = "plas",
    clock: str = "work",
    rate: float = 0.01,
    programs: int = 200,
) -> dict[str, Any]:
    """Mean token latency on one engine with programs so far apart (``rate``) that nearly every
    one runs alone."""
    return measure_point(
        workload,
        rate,
        1,
        "autellix",
        seed,
        0.0,
        config,
        None,
        policy,
        clock,
        programs=programs,
    )


# ----- the search


def _round(rate: float) -> float:
    return float(f"{rate:.4g}")


@dataclass
class Search:
    """The outcome of :func:`search_rate`. ``rate``: the highest rate simulated to meet the target
    (0.0 if none did down to the floor); ``upper``: the lowest rate simulated to miss it (None if
    none did up to the cap); ``exact``: both found and ``upper / rate <= 1 + rel_tol``."""

    rate: float
    upper: float | None
    exact: bool
    target: float
    points: list[dict[str, Any]] = field(default_factory=list)

    def point(self, rate: float | None) -> dict[str, Any] | None:
        return next((p for p in self.points if p["rate"] == rate), None)


def search_rate(
    measure: Callable[[float], dict[str, Any]],
    target: float,
    start: float,
    step: float = 1.25,
    rel_tol: float = 0.05,
    floor: float | None = None,
    cap: float | None = None,
    max_evals: int = 16,
) -> Search:
    """The highest rate whose ``measure(rate)["search_latency"]`` is <= ``target``.

    From ``start``: up by ``step`` while the target is met, or down by ``step`` while it is missed
    (not below ``floor``, not above ``cap``), until a rate that meets it and one that misses it are
    found; then geometric bisection until ``upper / rate <= 1 + rel_tol`` or ``max_evals``
    simulations. Rates are rounded to 4 significant digits. Assumes latency grows with the rate;
    where it does not, the answer is still a rate that met the target with a nearby one that missed.
    """
    if not (step > 1 and rel_tol > 0 and start > 0 and target > 0):
        raise ValueError("need step > 1, rel_tol > 0, start > 0, target > 0")
    res = Search(0.0, None, False, target)
    seen: dict[float, bool] = {}

    def ok(rate: float) -> bool:
        if rate not in seen:
            m = measure(rate)
            m = dict(m, rate=rate, ok=m["search_latency"] <= target)
            res.points.append(m)
            seen[rate] = m["ok"]
        return seen[rate]

    lo: float | None = None
    hi: float | None = None
    r = _round(start)
    if ok(r):
        lo = r
        while len(res.points) < max_evals:
            nxt = _round(lo * step)
            if cap is not None and nxt > cap:
                nxt = _round(cap)
                if nxt <= lo:
                    break
            if ok(nxt):
                lo = nxt
                if cap is not None and lo >= cap:
                    break
            else:
                hi = nxt
                break
    else:
        hi = r
        while len(res.points) < max_evals:
            nxt = _round(hi / step)
            if floor is not None and nxt < floor:
                break
            if ok(nxt):
                lo = nxt
                break
            hi = nxt
    if lo is not None and hi is not None:
        while hi / lo > 1 + rel_tol and len(res.points) < max_evals:
            mid = _round(math.sqrt(lo * hi))
            if mid in (lo, hi):
                break
            if ok(mid):
                lo = mid
            else:
                hi = mid
    res.rate = lo if lo is not None else 0.0
    res.upper = hi
    res.exact = lo is not None and hi is not None and hi / lo <= 1 + rel_tol
    return res


# ----- the curve


def _measurer(
    workload: str,
    n: int,
    bal: str,
    seed: int,
    window: float,
    cfg: EngineConfig,
    target: float,
    policy: str,
    clock: str,
    min_programs: int,
    wall_limit: float | None,
    say: Callable[[str], None],
    t0: float,
    short_call_tokens: int = 2048,
) -> Callable[[float], dict[str, Any]]:
    """``measure(rate)`` for :func:`search_rate`: :func:`measure_point`, with a progress line."""
    count = 0

    def measure(rate: float) -> dict[str, Any]:
        nonlocal count
        m = measure_point(
            workload,
            rate,
            n,
            bal,
            seed,
            window,
            cfg,
            target,
            policy,
            clock,
            min_programs,
            wall_limit=wall_limit,
            short_call_tokens=short_call_tokens,
        )
        count += 1
        verdict = "ok  " if m["search_latency"] <= target else "MISS"
        how = " (stopped: bound over target)" if m["missed_early"] else ""
        if m["wall_limited"]:
            how = " (stopped: wall limit)"
        say(
            f"[{time.monotonic() - t0:6.0f}s] {workload} seed={seed} N={n} "
            f"{bal if n > 1 else '-'} #{count} rate={rate:g} {verdict} "
            f"{m['search_latency'] * 1e3:.1f} ms/token hit={m['prefix_hit_rate']:.2f} "
            f"util={m['engine_utilization']:.2f} {m['completed']}/{m['programs']} progs "
            f"{m['wall']:.1f}s{how}"
        )
        return m

    return measure


def scaling_curve(
    workload: str,
    replicas: Sequence[int],
    balancers: Sequence[str],
    seeds: Sequence[int],
    window: float,
    target_x: float,
    config: EngineConfig | None = None,
    policy: str = "plas",
    clock: str = "work",
    step: float = 1.25,
    rel_tol: float = 0.05,
    start: float = 1.0,
    min_programs: int = 50,
    wall_limit: float | None = None,
    log: Callable[[str], None] | None = None,
    short_call_tokens: int = 2048,
) -> dict[str, Any]:
    """For every seed, replica count (ascending) and balancer: :func:`search_rate` at the target
    ``target_x`` x the one-replica unloaded mean token latency (seed ``seeds[0]``). One replica
    needs no balancer: its search is shared by all balancers. Starting rates: one replica starts at
    ``start`` with bracketing steps of 2; N replicas start at the answer for the previous replica
    count scaled by N / N_prev (the rate scales roughly with N), later seeds at the first seed's
    answer for the same N and balancer. ``short_call_tokens``: the autellix balancer's threshold
    (calls with more prompt tokens are pinned to their program's engine)."""
    cfg = config or get_preset("a100-llama8b")
    t0 = time.monotonic()
    say = log or (lambda s: None)
    base = unloaded_latency(workload, seeds[0], cfg, policy, clock)
    target = target_x * base["mean_token_latency"]
    say(
        f"{workload}: unloaded mean token latency {base['mean_token_latency'] * 1e3:.2f} ms, "
        f"target {target_x:g}x = {target * 1e3:.2f} ms/token"
    )
    searches: list[dict[str, Any]] = []
    answers: dict[tuple[int, int, str], float] = {}
    reps = sorted(replicas)
    for si, seed in enumerate(seeds):
        for ni, n in enumerate(reps):
            for bal in balancers if n > 1 else balancers[:1]:
                measure = _measurer(
                    workload,
                    n,
                    bal,
                    seed,
                    window,
                    cfg,
                    target,
                    policy,
                    clock,
                    min_programs,
                    wall_limit,
                    say,
                    t0,
                    short_call_tokens,
                )
                kw: dict[str, Any] = {"step": step}
                one = answers.get((seeds[0], 1, balancers[0]))
                if (
                    si > 0
                    and (seeds[0], n, bal) in answers
                    and answers[(seeds[0], n, bal)] > 0
                ):
                    first = answers[(seeds[0], n, bal)]
                elif ni == 0:
                    first, kw["step"] = start, 2.0
                else:
                    prev = reps[ni - 1]
                    prev_rate = answers.get(
                        (seed, prev, bal if prev > 1 else balancers[0]), 0.0
                    )
                    first = (
                        prev_rate * n / prev if prev_rate > 0 else (one or start) * n
                    )
                if one:
                    kw["floor"] = one * n / 200
                s = search_rate(measure, target, first, rel_tol=rel_tol, **kw)
                answers[(seed, n, bal)] = s.rate
                searches.append(
                    {
                        "seed": seed,
                        "engines": n,
                        "balancer": bal if n > 1 else None,
                        "rate": s.rate,
                        "upper": s.upper,
                        "exact": s.exact,
                        "start": first,
                        "points": s.points,
                    }
                )
    return {
        "workload": workload,
        "target_x": target_x,
        "target": target,
        "short_call_tokens": short_call_tokens,
        "unloaded": base,
        "searches": searches,
        "elapsed": time.monotonic() - t0,
    }


def _at(search: dict[str, Any], key: str) -> float:
    p = next((q for q in search["points"] if q["rate"] == search["rate"]), None)
    return float(p[key]) if p is not None else math.nan


def scaling_rows(
    curve: dict[str, Any], balancers: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per replica count: per balancer the median over seeds of the rate found, of the
    prefix hit rate, engine utilization and busy-time imbalance at that rate; the ratios of the
    first balancer to the others; scaling efficiency = rate(N) / (N x rate(1))."""
    by: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for s in curve["searches"]:
        n = s["engines"]
        for bal in [s["balancer"]] if n > 1 else list(balancers):
            by.setdefault((n, bal), []).append(s)
    rows = []
    ns = sorted({n for n, _ in by})
    one = {
        b: statistics.median(x["rate"] for x in by[(ns[0], b)])
        for b in balancers
        if (ns[0], b) in by
    }
    for n in ns:
        row: dict[str, Any] = {"engines": n}
        for b in balancers:
            ss = by.get((n, b))
            if not ss:
                continue
            rate = statistics.median(x["rate"] for x in ss)
            row[b] = {
                "rate": rate,
                "rates": [x["rate"] for x in ss],
                "exact": all(x["exact"] for x in ss),
                "open": any(x["upper"] is None for x in ss),
                "prefix_hit_rate": statistics.median(
                    _at(x, "prefix_hit_rate") for x in ss
                ),
                "engine_utilization": statistics.median(
                    _at(x, "engine_utilization") for x in ss
                ),
                "busy_imbalance": statistics.median(
                    _at(x, "busy_imbalance") for x in ss
                ),
                "efficiency": rate / (n / ns[0] * one[b]) if one.get(b) else math.nan,
            }
        first = balancers[0]
        for b in balancers[1:]:
            if first in row and b in row and row[b]["rate"] > 0:
                row[f"{first}/{b}"] = row[first]["rate"] / row[b]["rate"]
        rows.append(row)
    return rows
