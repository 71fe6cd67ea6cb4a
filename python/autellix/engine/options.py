"""What an engine replica is started with: the model, the scheduler and vLLM's own knobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autellix.contract import DEFAULT_POLICY, ENGINE_SCHEDULERS, VANILLA_VLLM

# "vllm" is vanilla vLLM's own FCFS scheduler (the baseline); the others are Autellix's core.
SCHEDULERS = ENGINE_SCHEDULERS
PLUGIN = "autellix.vllm.scheduler.AutellixScheduler"

# On CPU vLLM reserves most of the RAM for KV cache unless told a size.
DEFAULT_KV_CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class EngineOptions:
    """One set of options for every replica.

    `model` is a name `autellix.models` knows ("tiny", "smollm2-135m-instruct"; None = default)
    or a local model folder. `scheduler` is an Autellix policy or "vllm" for vanilla vLLM.
    """

    model: str | None = None
    engines: int = 1
    scheduler: str = DEFAULT_POLICY
    max_num_seqs: int = 64
    max_model_len: int | None = 2048
    kv_cache_memory_bytes: int = DEFAULT_KV_CACHE_BYTES
    queue_boundaries: list[float] | None = None
    quanta: list[float] | None = None
    starvation_ratio: float | None = None
    short_call_tokens: int = 2048
    served_model_name: str | None = None
    seed: int = 0
    # Scale-out (engine/ray_replicas.py): with `ray_address` ("auto", "host:port") the replicas are
    # Ray actors on that cluster, each asking for `ray_num_cpus` CPUs (one GPU on GPU clusters)
    # and the custom `ray_resources`; Ray restarts a dead one up to `ray_max_restarts` times
    # (-1: always). The model must be at the same path on every node.
    ray_address: str | None = None
    ray_num_cpus: float = 1.0
    ray_resources: dict[str, float] | None = None
    ray_max_restarts: int = 4
    # Anything else AsyncEngineArgs accepts (enforce_eager, dtype, ...), passed through.
    engine_args: dict[str, Any] = field(default_factory=dict)
    # Other plug-in settings (autellix.vllm.settings: preemption_guard, own_work_credit, ...).
    plugin_settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler {self.scheduler!r}: expected one of {', '.join(SCHEDULERS)}")
        if self.engines < 1:
            raise ValueError(f"engines must be at least 1, got {self.engines}")
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be at least 1, got {self.max_num_seqs}")
        if self.kv_cache_memory_bytes < 1 << 20:
            raise ValueError(
                f"kv_cache_memory_bytes={self.kv_cache_memory_bytes} is below 1 MiB: "
                "give the KV cache size in bytes"
            )

    def autellix_config(self) -> dict[str, Any]:
        """The plug-in's settings, as `additional_config["autellix"]`."""
        knobs = {
            "policy": self.scheduler,
            "queue_boundaries": self.queue_boundaries,
            "quanta": self.quanta,
            "starvation_ratio": self.starvation_ratio,
        }
        return {k: v for k, v in knobs.items() if v is not None} | self.plugin_settings

    def vllm_engine_args(self, model_path: str, served_name: str) -> dict[str, Any]:
        """Keyword arguments for vLLM's `AsyncEngineArgs`."""
        args: dict[str, Any] = dict(
            model=model_path,
            served_model_name=[served_name],
            max_num_seqs=self.max_num_seqs,
            max_model_len=self.max_model_len,
            kv_cache_memory_bytes=self.kv_cache_memory_bytes,
            seed=self.seed,
            enable_prefix_caching=True,
        )
        if self.scheduler != VANILLA_VLLM:
            args["scheduler_cls"] = PLUGIN
            args["additional_config"] = {"autellix": self.autellix_config()}
        args.update(self.engine_args)
        return args
