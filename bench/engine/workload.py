"""The simulator's workloads, shrunk to what a 2-core CPU engine serves in seconds.

Lengths are multiplied by ``token_scale`` and capped, delays by ``delay_scale`` (the tiny model's
context is 2,048 tokens). The number of calls is cut one of two ways:

* ``call_fraction`` (the default): each program keeps a random ``call_fraction`` of its calls
  (stochastically rounded, at least one), so a program with 80 calls still has ~20 and the heavy
  tail that least-attained-service exploits survives. Chains keep a random subset of their calls,
  in order, re-linked into a chain; LATS keeps whole iterations (5 parallel expansions + the
  evaluation that joins them), re-linked so the DAG stays valid. The sample depends only on the
  workload, the seed and the program (not on the rate or the scheduler): every scheduler, and every
  rate of a seed, serves the same programs.
* truncation (``call_fraction=None``): chains keep their first ``max_calls`` calls, LATS its first
  ``lats_iterations`` iterations (the bench's earlier scaling: every program is light).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from autellix.sim.trace import Call, Program
from autellix.sim.workloads import PROFILES, generate, sample_calls


@dataclass(frozen=True)
class Scaling:
    token_scale: float = 0.25
    max_prompt: int = 768
    max_output: int = 192
    call_fraction: float | None = 0.25  # None: truncate with max_calls / lats_iterations
    max_calls: int = 8  # chains (sharegpt, bfcl), truncation only
    lats_iterations: int = 2  # truncation only
    # Tool and think time between calls, scaled like the calls themselves: a call here takes a
    # fraction of the A100 call time the trace's delays were drawn against.
    delay_scale: float = 0.25


def _scale(tokens: int, scale: float, cap: int) -> int:
    return max(1, min(cap, round(tokens * scale)))


def _scale_call(call: Call, s: Scaling) -> Call:
    prompt = _scale(call.prompt_tokens, s.token_scale, s.max_prompt)
    prefix = min(prompt - 1, round(call.prefix_tokens * s.token_scale)) if call.prefix_tokens else 0
    return replace(call, prompt_tokens=prompt, delay=call.delay * s.delay_scale, output_tokens=_scale(call.output_tokens, s.token_scale, s.max_output),
                   prefix_tokens=max(prefix, 0))


def shrink(program: Program, s: Scaling, seed: int = 0) -> Program:
    """A smaller copy of one program: fewer calls, shorter prompts and outputs."""
    lats = program.workload == "lats"
    if s.call_fraction is None:
        keep = s.lats_iterations * (PROFILES["lats"].width + 1) if lats else s.max_calls
        kept = program.calls[:keep]
    else:
        kept = sample_calls(program, s.call_fraction, seed)
    calls = [_scale_call(c, s) for c in kept]
    system = min(round(program.system_tokens * s.token_scale), min(c.prompt_tokens for c in calls))
    return replace(program, calls=calls, system_tokens=system)


def programs_for_point(workload: str, rate: float, count: int, seed: int, s: Scaling) -> list[Program]:
    """``count`` programs of the workload arriving at ``rate`` programs/s, shrunk by ``s``. The
    programs (and their sampled calls) are the same at every rate of a seed; only arrivals scale."""
    return [shrink(p, s, seed) for p in generate(workload, rate, count, seed)]


def output_tokens(programs: list[Program]) -> int:
    return sum(p.output_tokens for p in programs)
