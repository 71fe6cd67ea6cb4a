"""Engine presets: the step-time model ``a + b * tokens_in_step + c * kv_tokens_attended`` plus the
engine's limits.

``a100-llama8b`` — Llama-3.1-8B-Instruct (bf16) on one A100-SXM4-80GB under vLLM, derived from the
published specifications, with efficiency factors in the range vLLM reaches on that GPU:

* weights: 8.03 B parameters x 2 bytes = 16.1 GB (Meta's model card); A100 HBM2e bandwidth 2,039 GB/s
  and 312 TFLOPS dense bf16 (NVIDIA A100 datasheet).
* ``a`` = 7.0 ms: one step streams all weights once (16.1 GB / 2.04 TB/s = 7.9 ms at peak; vLLM with
  CUDA graphs reaches ~80-90 % of peak bandwidth for the GEMVs, the rest overlaps), i.e. ~130 tokens/s
  for a single stream, the usual single-request decode speed reported for 8B models on an A100.
* ``b`` = 75 us per token in the step: 2 x 8.03 GFLOP per token = 16 GFLOP; at ~70 % of 312 TFLOPS that
  is ~73 us, i.e. ~13,000 prefill tokens/s, the compute-bound prefill rate.
* ``c`` = 80 ns per KV token attended: the KV of one token is 2 (K, V) x 32 layers x 8 KV heads x 128
  x 2 bytes = 128 KiB (Llama-3.1-8B config: GQA with 8 KV heads); reading it at 2.04 TB/s takes 64 ns,
  80 ns with paged-attention overheads.
* ``kv_tokens`` = 400,000: 0.9 x 80 GB - 16.1 GB weights - ~4 GB activations and CUDA graphs
  = ~52 GB / 128 KiB per token (vLLM logs ~25,000 16-token blocks for this setup).
* ``max_running`` = 256 (vLLM's ``max_num_seqs`` default), ``token_budget`` = 2,048 per step
  (chunked prefill, vLLM's ``max_num_batched_tokens`` for latency-bound serving).
* swap: 128 KiB per token over PCIe 4.0 x16 at ~25 GB/s = ~5 us per token each way.

With these numbers a full decode batch of 256 calls at ~600 tokens of context takes
7 + 19 + 12 = ~38 ms per step, ~6,700 output tokens/s: in line with published vLLM throughput
benchmarks of Llama-3-8B on one A100-80GB (~5-7 k output tokens/s at high concurrency).

``cpu-vllm`` — the real vLLM 0.32 CPU engine of bench/engine_programs.py: the tiny random-weight Llama
(hidden 128, 4 layers) on 2 AMD EPYC cores shared with other work, one OpenMP thread, enforce_eager.
Fitted by ``bench/engine/fit_preset.py`` (raw steps in bench/results/engine/cpu_vllm_fit.json): 610
hand-stepped engine steps (batches of 1-32 calls, prompts of 32-1,536 tokens, 24 decode steps each),
each timed around ``step()``, with the step's scheduled tokens and the KV tokens its calls attend;
least squares, refitted without the 96 steps beyond 3 MADs (noise from the shared cores):

* ``a`` = 6.2 ms: a decode step of one call takes 5.5-6.5 ms (Python and vLLM bookkeeping, not math).
* ``b`` = 591 us per token in the step: a decode batch of 8 takes ~12 ms, of 16 ~20 ms; a 4,096-token
  prefill step 1.6-2.5 s (vLLM's CPU prefill path is slow for this model, ~400-600 us a token).
* ``c`` = 0.86 us per KV token attended (weakly determined: context length barely moves a decode step).
* median |relative error| 25 % on decode steps, 33 % on prefill steps (the model is linear; the
  engine's per-token cost differs between decode and prefill).
* ``kv_tokens`` = 262,144 (256 MiB of KV cache), ``token_budget`` = 4,096 (vLLM's default
  max_num_batched_tokens here), ``max_running`` = 8 (the bench's max_num_seqs), ``multi_step`` = 1
  (vLLM V1 schedules every step).

Any preset can also be loaded from a JSON file with the :class:`EngineConfig` field names
(``autellix simulate --engine-config FILE``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PRESETS", "EngineConfig", "get_preset", "load_engine_config"]


@dataclass(frozen=True)
class EngineConfig:
    """One engine replica's model. Times in seconds, sizes in tokens."""

    name: str = "custom"
    step_base: float = 0.007  # a
    step_per_token: float = 75e-6  # b
    step_per_kv_token: float = 80e-9  # c
    max_running: int = 256
    token_budget: int = 2048
    kv_tokens: int = 400_000
    prefix_caching: bool = True
    # False: vLLM V0 without chunked prefill (the paper's plain-vLLM baseline): a step that has prefills
    # carries only whole prompts (up to token_budget; a longer prompt runs alone) and decoding stalls
    chunked_prefill: bool = True
    preemption: str = "recompute"  # or "swap"
    swap_per_token: float = 5e-6
    multi_step: int = 8  # schedule at least every this many decode steps (and whenever a call ends)

    def __post_init__(self) -> None:
        for f in ("step_base", "step_per_token", "step_per_kv_token", "swap_per_token"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"engine config: {f} must be a number >= 0, got {v!r}")
        if self.step_base <= 0 and self.step_per_token <= 0:
            raise ValueError("engine config: a step must take time (step_base or step_per_token > 0)")
        for f in ("max_running", "token_budget", "kv_tokens", "multi_step"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"engine config: {f} must be an integer >= 1, got {v!r}")
        if self.token_budget < self.max_running:
            raise ValueError("engine config: token_budget must be >= max_running (one decode token per call)")
        if self.preemption not in ("recompute", "swap"):
            raise ValueError(f"engine config: preemption must be 'recompute' or 'swap', got {self.preemption!r}")

    def replace(self, **changes: object) -> EngineConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


PRESETS: dict[str, EngineConfig | None] = {
    "a100-llama8b": EngineConfig(name="a100-llama8b"),
    # fitted by bench/engine/fit_preset.py, see the module docstring
    "cpu-vllm": EngineConfig(name="cpu-vllm", step_base=6.21e-3, step_per_token=591e-6, step_per_kv_token=0.86e-6,
                             max_running=8, token_budget=4096, kv_tokens=262_144, multi_step=1),
}


def get_preset(name: str) -> EngineConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown engine preset {name!r}; choose from {', '.join(PRESETS)}")
    cfg = PRESETS[name]
    if cfg is None:
        raise ValueError(
            f"engine preset {name!r} has not been fitted yet: fit the step-time model to the real engine "
            "and pass it with --engine-config FILE.json"
        )
    return cfg


def load_engine_config(path: str | Path) -> EngineConfig:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: an engine config must be a JSON object")
    names = {f.name for f in dataclasses.fields(EngineConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{path}: unknown engine config field {unknown[0]!r}")
    return EngineConfig(**data)
