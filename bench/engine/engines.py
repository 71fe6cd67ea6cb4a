"""Starting the engines under comparison, all with the same vLLM settings.

A series is a name for one engine configuration: `vllm` (vanilla vLLM, FCFS, prefix caching on:
the paper's vLLM-opt, the baseline), `vllm-noprefix` (the same without prefix caching: the paper's
plain vLLM) and the Autellix policies (`plas`, `atlas`, ...). Autellix engines get no queue
boundaries or quanta from the bench: the plug-in's defaults (autellix.work_units, in engine work
units) apply, so the results are what an out-of-the-box deployment gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autellix.contract import ENGINE_SCHEDULERS, VANILLA_VLLM
from autellix.engine.driver import EngineDriver
from autellix.engine.options import EngineOptions

# series -> (scheduler, extra engine args, plug-in settings)
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "vllm-noprefix": (VANILLA_VLLM, {"enable_prefix_caching": False}, {}),
    # Each call credited the step's work instead of its own (autellix.work_units).
    "plas-step-credit": ("plas", {}, {"own_work_credit": False}),
    # Anti-starvation off (a finite ratio no wait reaches: the setting travels as JSON).
    "plas-no-starvation": ("plas", {}, {"starvation_ratio": 1e12}),
    # Running calls demoted after at least 64 units in a queue (the quanta of the old ladder's top).
    "plas-quanta-64": ("plas", {}, {"quanta": [64.0, 64.0, 64.0, 64.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 4096.0]}),
    # The default ladder with three finer queues on top (8, 16, 32 units).
    "plas-fine-top": ("plas", {}, {"queue_boundaries": [8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0]}),
    # Defaults; the replay tells the engine each program's calls left with every call.
    "plas-calls-left": ("plas", {}, {}),
}
SERIES = (*ENGINE_SCHEDULERS, *VARIANTS)
# Series whose clients tell their programs' calls left (what an agent's step budget would say).
TELL_CALLS_LEFT = frozenset({"plas-calls-left"})


def scheduler_of(series: str) -> str:
    return VARIANTS[series][0] if series in VARIANTS else series


@dataclass(frozen=True)
class EngineSettings:
    max_num_seqs: int = 8
    max_model_len: int = 2048
    kv_cache_mib: int = 256
    max_num_batched_tokens: int | None = None
    starvation_ratio: float | None = None  # None: the core's default
    # KV block size in tokens (None: vLLM's CPU default, 128). A call preempted by recompute
    # loses its last, partly filled block; prefix caching keeps the full ones.
    block_size: int | None = None

    def engine_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"enforce_eager": True, "disable_log_stats": True}
        if self.max_num_batched_tokens is not None:
            args["max_num_batched_tokens"] = self.max_num_batched_tokens
        if self.block_size is not None:
            args["block_size"] = self.block_size
        return args


def options(series: str, settings: EngineSettings) -> EngineOptions:
    if series not in SERIES:
        raise ValueError(f"unknown series {series!r}: expected one of {', '.join(SERIES)}")
    scheduler = scheduler_of(series)
    _, extra, plugin_settings = VARIANTS.get(series, (scheduler, {}, {}))
    return EngineOptions(
        model="tiny",
        scheduler=scheduler,
        max_num_seqs=settings.max_num_seqs,
        max_model_len=settings.max_model_len,
        kv_cache_memory_bytes=settings.kv_cache_mib << 20,
        starvation_ratio=settings.starvation_ratio if scheduler != VANILLA_VLLM else None,
        engine_args=settings.engine_args() | extra,
        plugin_settings=plugin_settings,
    )


async def start(series: str, settings: EngineSettings) -> EngineDriver:
    driver = EngineDriver(options(series, settings))
    await driver.start()
    return driver
