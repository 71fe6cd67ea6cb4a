"""Seeded workload generators modelled on the paper's evaluation (Section 6).

Programs arrive as a Poisson process of the given rate (exponential inter-arrival times). Every
count and length below is drawn from a discretised, clipped log-normal: heavy-tailed like the real
data sets (a few very long conversations, outputs and searches), with the ``mean`` set so that the
clipped, rounded distribution lands near the paper's per-program means. ``sigma`` is the
log-normal's shape (larger = heavier tail). The parameters live in :data:`PROFILES`.

``sharegpt``  multi-turn chat (ShareGPT): a chain of calls (turn k needs turn k-1); calls per program
              mean 6.66 (sigma 1.0, max 80); prompt mean 256 (sigma 1.0, max 8,192), output mean 277
              (sigma 0.9, max 2,048). Turns follow each other without think time (a replay, as in the
              paper). Half of a later turn's prompt is the history: ``prefix_tokens`` = 50 %.
``bfcl``      ReAct tool use (BFCL v3): a chain of calls with a tool call between them; calls mean
              10.75 (sigma 0.8, max 70); prompt mean 735 (sigma 0.5, max 8,192), output mean 34
              (sigma 0.8, max 1,024); tool delay log-normal mean 0.5 s (sigma 1.0, max 30 s). The
              function descriptions are a 256-token system prompt shared by all bfcl programs, and a
              later call's prompt repeats 80 % of the earlier context.
``lats``      tree search (LATS on HotpotQA): iterations of `width` = 5 parallel expansion calls
              (children of the previous iteration's evaluation call, each after a tool delay with
              mean 0.2 s, sigma 1.0) followed by one evaluation call that joins them; iterations mean
              26.6 (sigma 0.6, 2..80), so calls per program ~ 160; prompt mean 467 (sigma 0.5, max
              8,192), output mean 73 (sigma 0.8, max 1,024); 70 % of a later prompt is shared
              (question and trajectory).
``mixed``     each program is one of the three with equal probability.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from autellix.sim.trace import Call, Program

__all__ = ["PROFILES", "WORKLOADS", "generate", "lognormal_int", "sample_calls"]


def lognormal_int(rng: random.Random, mean: float, sigma: float, lo: int, hi: int) -> int:
    """A log-normal draw with the given (unclipped) mean and shape, rounded and clipped to [lo, hi]."""
    mu = math.log(mean) - sigma * sigma / 2.0
    return min(hi, max(lo, int(round(rng.lognormvariate(mu, sigma)))))


def lognormal_seconds(rng: random.Random, mean: float, sigma: float, hi: float) -> float:
    if mean <= 0:
        return 0.0
    mu = math.log(mean) - sigma * sigma / 2.0
    return min(hi, rng.lognormvariate(mu, sigma))


@dataclass(frozen=True)
class Dist:
    mean: float
    sigma: float
    lo: int
    hi: int

    def draw(self, rng: random.Random) -> int:
        return lognormal_int(rng, self.mean, self.sigma, self.lo, self.hi)


@dataclass(frozen=True)
class Profile:
    calls: Dist  # calls per program (lats: iterations)
    prompt: Dist
    output: Dist
    delay_mean: float  # seconds between a call's parents finishing and its issue
    delay_sigma: float
    prefix_share: float  # fraction of a non-root call's prompt shared with earlier calls
    system_tokens: int = 0
    width: int = 1  # lats: parallel expansions per iteration


PROFILES: dict[str, Profile] = {
    "sharegpt": Profile(
        calls=Dist(6.66, 1.0, 1, 80),
        prompt=Dist(256, 1.0, 4, 8192),
        output=Dist(277, 0.9, 1, 2048),
        delay_mean=0.0,
        delay_sigma=0.0,
        prefix_share=0.5,
    ),
    "bfcl": Profile(
        calls=Dist(10.75, 0.8, 1, 70),
        prompt=Dist(735, 0.5, 300, 8192),
        output=Dist(34, 0.8, 1, 1024),
        delay_mean=0.5,
        delay_sigma=1.0,
        prefix_share=0.8,
        system_tokens=256,
    ),
    "lats": Profile(
        calls=Dist(26.6, 0.6, 2, 80),
        prompt=Dist(467, 0.5, 16, 8192),
        output=Dist(73, 0.8, 1, 1024),
        delay_mean=0.2,
        delay_sigma=1.0,
        prefix_share=0.7,
        width=5,
    ),
}


def _chain(rng: random.Random, prof: Profile, pid: str, arrival: float, name: str) -> Program:
    n = prof.calls.draw(rng)
    calls = []
    for k in range(n):
        prompt = prof.prompt.draw(rng)
        output = prof.output.draw(rng)
        delay = 0.0 if k == 0 else lognormal_seconds(rng, prof.delay_mean, prof.delay_sigma, 30.0)
        prefix = 0 if k == 0 else int(prompt * prof.prefix_share)
        parents = () if k == 0 else (f"c{k - 1}",)
        calls.append(Call(f"c{k}", prompt, output, parents, delay, prefix))
    return Program(pid, arrival, calls, min(prof.system_tokens, min(c.prompt_tokens for c in calls)), name)


def _lats(rng: random.Random, prof: Profile, pid: str, arrival: float, name: str) -> Program:
    iterations = prof.calls.draw(rng)
    calls: list[Call] = []
    parent: str | None = None
    idx = 0
    for _ in range(iterations):
        children = []
        for _ in range(prof.width):
            prompt = prof.prompt.draw(rng)
            output = prof.output.draw(rng)
            delay = lognormal_seconds(rng, prof.delay_mean, prof.delay_sigma, 30.0) if parent else 0.0
            prefix = int(prompt * prof.prefix_share) if parent else 0
            cid = f"c{idx}"
            idx += 1
            calls.append(Call(cid, prompt, output, (parent,) if parent else (), delay, prefix))
            children.append(cid)
        prompt = prof.prompt.draw(rng)
        output = prof.output.draw(rng)
        cid = f"c{idx}"
        idx += 1
        calls.append(Call(cid, prompt, output, tuple(children), 0.0, int(prompt * prof.prefix_share)))
        parent = cid
    return Program(pid, arrival, calls, 0, name)


_BUILDERS: dict[str, Callable[[random.Random, Profile, str, float, str], Program]] = {
    "sharegpt": _chain,
    "bfcl": _chain,
    "lats": _lats,
}

WORKLOADS = ("sharegpt", "bfcl", "lats", "mixed")


def generate(workload: str, rate: float, programs: int, seed: int = 0) -> list[Program]:
    """``programs`` programs of ``workload`` arriving as a Poisson process of ``rate`` programs/s."""
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"rate must be a positive number of programs per second, got {rate!r}")
    if programs < 0:
        raise ValueError(f"programs must be >= 0, got {programs}")
    rng = random.Random(f"{workload}:{seed}")
    out = []
    t = 0.0
    kinds = ("sharegpt", "bfcl", "lats")
    for i in range(programs):
        t += rng.expovariate(rate)
        kind = rng.choice(kinds) if workload == "mixed" else workload
        out.append(_BUILDERS[kind](rng, PROFILES[kind], f"p{i}", t, kind))
    return out


def sample_calls(program: Program, fraction: float, seed: int = 0) -> list[Call]:
    """A random `fraction` of a program's calls, to shrink a workload without cutting its heavy tail
    (a program with 80 calls keeps ~20, where cutting at 8 calls makes every program alike). Chains
    keep a subset of their calls in order, re-linked into a chain; LATS keeps whole iterations (its
    parallel expansions and the evaluation joining them), re-linked so the DAG stays valid. The
    sample depends only on the workload, the seed and the program, so every scheduler and every
    rate of a seed serves the same programs."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    rng = random.Random(f"calls:{program.workload}:{seed}:{program.program_id}")
    sample = _sample_lats if program.workload == "lats" else _sample_chain
    return sample(program.calls, fraction, rng)


def _keep_count(n: int, fraction: float, rng: random.Random) -> int:
    """round(n * fraction), stochastically (so the expected kept share is exactly ``fraction``), >= 1."""
    exact = n * fraction
    k = math.floor(exact) + (rng.random() < exact - math.floor(exact))
    return max(1, min(n, k))


def _as_root(call: Call) -> Call:
    return replace(call, parents=(), delay=0.0, prefix_tokens=0)


def _sample_chain(calls: list[Call], fraction: float, rng: random.Random) -> list[Call]:
    keep = sorted(rng.sample(range(len(calls)), _keep_count(len(calls), fraction, rng)))
    out: list[Call] = []
    for j, i in enumerate(keep):
        c = replace(calls[i], call_id=f"c{j}", parents=(f"c{j - 1}",) if j else ())
        out.append(c if j else _as_root(c))
    return out


def _sample_lats(calls: list[Call], fraction: float, rng: random.Random) -> list[Call]:
    size = PROFILES["lats"].width + 1  # expansions, then the evaluation joining them
    iterations = [calls[i:i + size] for i in range(0, len(calls), size)]
    keep = sorted(rng.sample(range(len(iterations)), _keep_count(len(iterations), fraction, rng)))
    out: list[Call] = []
    parent: str | None = None
    for i in keep:
        *expansions, evaluation = iterations[i]
        children = []
        for c in expansions:
            cid = f"c{len(out)}"
            c = replace(c, call_id=cid, parents=(parent,)) if parent else _as_root(replace(c, call_id=cid))
            out.append(c)
            children.append(cid)
        parent = f"c{len(out)}"
        out.append(replace(evaluation, call_id=parent, parents=tuple(children)))
    return out
