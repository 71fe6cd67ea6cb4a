"""Two measurements on the baseline engine before the sweep.

* queue unit: the median service time of a call served alone (a sample of the workloads' calls
  issued one at a time, so latency = service). The Autellix queue boundaries are this unit times
  the core's default multiples, identically for plas and atlas.
* capacity: programs/s the engine sustains on a workload's call mix with its batch full; the rate
  sweep is a range of multiples of it.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from autellix.engine.driver import EngineDriver

from engine.prompts import PromptBuilder
from engine.workload import Scaling, programs_for_point


async def queue_unit(driver: EngineDriver, scaling: Scaling, calls: int = 16, seed: int = 99) -> float:
    from vllm import SamplingParams

    sample = [c for p in programs_for_point("mixed", 1.0, 8, seed, scaling) for c in p.calls]
    step = max(1, len(sample) // calls)
    times = []
    for i, call in enumerate(sample[::step][:calls]):
        prompt = [16 + (i * 7 + k) % 3000 for k in range(call.prompt_tokens)]
        params = SamplingParams(max_tokens=call.output_tokens, ignore_eos=True, detokenize=False)
        t0 = time.monotonic()
        async for _ in driver.generate(f"calibrate-{i}", prompt, params, program_id=10**9 + i):
            pass
        times.append(time.monotonic() - t0)
    return statistics.median(times)


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
