"""Starting the engines under comparison, all with the same vLLM settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autellix.engine.driver import EngineDriver
from autellix.engine.options import EngineOptions

# The core's default boundaries (1, 2, ... 64 s of attained service) in units of its first one:
# they are for an A100-sized engine whose short calls take about a second. Here the unit is this
# engine's median call service time (see calibrate.queue_unit), so the queues keep their meaning.
DEFAULT_BOUNDARY_MULTIPLES = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class EngineSettings:
    max_num_seqs: int = 8
    max_model_len: int = 2048
    kv_cache_mib: int = 256
    max_num_batched_tokens: int | None = None
    starvation_ratio: float | None = None  # None: the core's default
    quanta_scale: float = 1.0  # x the core's default quanta (each queue's range width)
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


def queue_boundaries(unit: float) -> list[float]:
    return [round(unit * m, 6) for m in DEFAULT_BOUNDARY_MULTIPLES]


def quanta(unit: float, scale: float) -> list[float]:
    """The core's default quanta (the width of each queue's range, the last repeated), scaled."""
    bounds = [0.0, *queue_boundaries(unit)]
    widths = [hi - lo for lo, hi in zip(bounds, bounds[1:])]
    return [round(w * scale, 6) for w in [*widths, widths[-1]]]


def options(scheduler: str, settings: EngineSettings, unit: float | None) -> EngineOptions:
    autellix = scheduler != "vllm"
    scaled = autellix and unit and settings.quanta_scale != 1.0
    return EngineOptions(
        model="tiny",
        scheduler=scheduler,
        max_num_seqs=settings.max_num_seqs,
        max_model_len=settings.max_model_len,
        kv_cache_memory_bytes=settings.kv_cache_mib << 20,
        queue_boundaries=queue_boundaries(unit) if autellix and unit else None,
        quanta=quanta(unit, settings.quanta_scale) if scaled and unit else None,
        starvation_ratio=settings.starvation_ratio if autellix else None,
        engine_args=settings.engine_args(),
    )


async def start(scheduler: str, settings: EngineSettings, unit: float | None) -> EngineDriver:
    driver = EngineDriver(options(scheduler, settings, unit))
    await driver.start()
    return driver
