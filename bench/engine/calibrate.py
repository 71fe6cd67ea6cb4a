"""The one measurement on the baseline engine before the sweep: capacity, the programs/s the
engine sustains on a workload's call mix with its batch full; the rate sweep is a range of
multiples of it. (Autellix needs no calibration: its queue ladder is in engine work units.)
"""

from __future__ import annotations

import asyncio
import time

from autellix.engine.driver import EngineDriver

from engine.prompts import PromptBuilder
from engine.workload import Scaling, programs_for_point


async def capacity(driver: EngineDriver, workload: str, scaling: Scaling, calls: int, seed: int = 98) -> float:
    """Programs/s the engine sustains on this workload's call mix: ``calls`` of its calls issued at
    once (dependencies ignored, so the batch stays full), calls/s divided by calls per program."""
    from vllm import SamplingParams

    programs = programs_for_point(workload, 1.0, 200, seed, scaling)
    per_program = sum(len(p.calls) for p in programs) / len(programs)
    sample = [(p, c) for p in programs for c in p.calls][:: max(1, sum(len(p.calls) for p in programs) // calls)][:calls]
    prompts = PromptBuilder(f"capacity-{workload}", scaling.max_prompt)

    async def one(i: int, program, call) -> None:
        params = SamplingParams(max_tokens=call.output_tokens, ignore_eos=True, detokenize=False)
        async for _ in driver.generate(f"capacity-{workload}-{i}", prompts.prompt(program, call), params,
                                       program_id=2 * 10**9 + i):
            pass

    t0 = time.monotonic()
    await asyncio.gather(*(one(i, p, c) for i, (p, c) in enumerate(sample)))
    return len(sample) / (time.monotonic() - t0) / per_program
