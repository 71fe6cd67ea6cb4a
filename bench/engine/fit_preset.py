"""Fit the simulator's step-time model ``a + b * tokens_in_step + c * kv_tokens_attended`` to the
real vLLM CPU engine (tiny model) on this machine: the `cpu-vllm` preset.

One in-process engine (vanilla vLLM scheduler, same settings as the bench: one OpenMP thread,
enforce_eager, prefix
caching off so every prompt token is computed) serves batches of n identical-length calls for n in
1..32 and prompt lengths 32..1536, stepped by hand. Each step is timed around `step()`; a thin
wrapper on the scheduler records the step's scheduled tokens and the KV tokens its calls attend
(their computed tokens after the step). Least squares over all steps, then again without the
steps whose residual is beyond 3 MADs (other work on the shared cores shows up as outliers).

    .venv/bin/python bench/engine/fit_preset.py [--out bench/results/engine/cpu_vllm_fit.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

BATCHES = (1, 2, 4, 8, 16, 32)
PROMPTS = (32, 256, 768, 1536)
DECODE_STEPS = 24
KV_CACHE_MIB = 256


def _engine(max_num_seqs: int):
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    # the bench's threading (see bench/engine_programs.py): one OpenMP thread, not bound
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from vllm import LLM

    from autellix.models import resolve_model
    from autellix.vllm.cpu_amx import disable_amx_attention

    disable_amx_attention()
    return LLM(model=str(resolve_model("tiny")), enforce_eager=True, kv_cache_memory_bytes=KV_CACHE_MIB << 20,
               max_model_len=2048, max_num_seqs=max_num_seqs, enable_prefix_caching=False, seed=0)


def measure(llm) -> list[tuple[int, int, float]]:
    """(tokens in step, KV tokens attended, seconds) for every step of every scenario."""
    from vllm import SamplingParams

    engine = llm.llm_engine
    scheduler = engine.engine_core.engine_core.scheduler
    shapes: list[tuple[int, int]] = []
    inner = scheduler.schedule

    def schedule(*args, **kwargs):
        out = inner(*args, **kwargs)
        attended = sum(scheduler.requests[r].num_computed_tokens for r in out.num_scheduled_tokens)
        shapes.append((out.total_num_scheduled_tokens, attended))
        return out

    scheduler.schedule = schedule
    samples: list[tuple[int, int, float]] = []
    request = 0
    for prompt in PROMPTS:
        for n in BATCHES:
            params = SamplingParams(max_tokens=DECODE_STEPS, ignore_eos=True, detokenize=False)
            for _ in range(n):
                request += 1
                ids = [16 + (request * 131 + k * 7) % 3900 for k in range(prompt)]
                engine.add_request(f"fit-{request}", {"prompt_token_ids": ids}, params)
            while engine.has_unfinished_requests():
                shapes.clear()
                t0 = time.perf_counter()
                engine.step()
                dt = time.perf_counter() - t0
                if len(shapes) == 1 and shapes[0][0] > 0:
                    samples.append((*shapes[0], dt))
    return samples


def least_squares(samples: list[tuple[int, int, float]]) -> tuple[float, float, float]:
    import numpy as np

    x = np.array([[1.0, t, k] for t, k, _ in samples])
    y = np.array([s for _, _, s in samples])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return tuple(float(v) for v in coef)  # type: ignore[return-value]


def robust_fit(samples: list[tuple[int, int, float]]) -> tuple[tuple[float, float, float], int]:
    a, b, c = least_squares(samples)
    residuals = [s - (a + b * t + c * k) for t, k, s in samples]
    mad = statistics.median(abs(r) for r in residuals) or 1e-9
    kept = [smp for smp, r in zip(samples, residuals) if abs(r) <= 3 * 1.4826 * mad]
    return least_squares(kept), len(kept)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results" / "engine" / "cpu_vllm_fit.json")
    args = ap.parse_args(argv)
    llm = _engine(max(BATCHES))
    try:
        config = llm.llm_engine.vllm_config
        blocks = config.cache_config.num_gpu_blocks
        kv_tokens = blocks * config.cache_config.block_size
        budget = config.scheduler_config.max_num_batched_tokens
        started = time.monotonic()
        load_before = os.getloadavg()
        samples = measure(llm)
        (a, b, c), kept = robust_fit(samples)
    finally:
        llm.llm_engine.engine_core.shutdown()
    result = {
        "step_base": a, "step_per_token": b, "step_per_kv_token": c,
        "steps_measured": len(samples), "steps_kept": kept, "seconds": round(time.monotonic() - started, 1),
        "kv_tokens_at_256MiB": kv_tokens, "max_num_batched_tokens": budget,
        "loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "batches": BATCHES, "prompts": PROMPTS, "decode_steps": DECODE_STEPS,
        "samples": [[t, k, round(s, 6)] for t, k, s in samples],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"a = {a * 1e3:.3f} ms, b = {b * 1e6:.3f} us/token, c = {c * 1e9:.3f} ns/KV token "
          f"({kept}/{len(samples)} steps kept); kv_tokens {kv_tokens}, token budget {budget}; wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
