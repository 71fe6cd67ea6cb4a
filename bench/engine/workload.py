"""The simulator's workloads, shrunk to what a 2-core CPU engine serves in seconds.

Lengths are multiplied by ``token_scale`` and capped, delays by ``delay_scale`` (the tiny model's context is 2,048 tokens);
chains keep their first ``max_calls`` calls and LATS its first ``lats_iterations`` iterations
(5 parallel expansions + 1 evaluation each), so the DAG shapes and the prefix sharing stay those
of the trace while a program costs a fraction of a second of engine time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from autellix.sim.trace import Call, Program
from autellix.sim.workloads import PROFILES, generate


@dataclass(frozen=True)
class Scaling:
    token_scale: float = 0.25
    max_prompt: int = 768
    max_output: int = 192
    max_calls: int = 8  # chains (sharegpt, bfcl)
    lats_iterations: int = 2
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


def shrink(program: Program, s: Scaling) -> Program:
    """A smaller copy of one program: fewer calls, shorter prompts and outputs."""
    if program.workload == "lats":
        keep = s.lats_iterations * (PROFILES["lats"].width + 1)
    else:
        keep = s.max_calls
    calls = [_scale_call(c, s) for c in program.calls[:keep]]
    system = min(round(program.system_tokens * s.token_scale), min(c.prompt_tokens for c in calls))
    return replace(program, calls=calls, system_tokens=system)


def programs_for_point(workload: str, rate: float, count: int, seed: int, s: Scaling) -> list[Program]:
    """``count`` programs of the workload arriving at ``rate`` programs/s, shrunk by ``s``."""
    return [shrink(p, s) for p in generate(workload, rate, count, seed)]


def output_tokens(programs: list[Program]) -> int:
    return sum(p.output_tokens for p in programs)
