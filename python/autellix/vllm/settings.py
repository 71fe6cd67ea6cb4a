"""The plug-in's knobs: `--additional-config '{"autellix": {...}}'` first, then AUTELLIX_* env.

Both reach vLLM's engine-core child process: additional_config travels inside VllmConfig, and
child processes inherit the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, cast

from autellix.contract import CORE_POLICIES, DEFAULT_POLICY, CorePolicy


def _floats(value: Any) -> list[float] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return [float(x) for x in value.split(",") if x.strip()]
    return [float(x) for x in value]


def _float(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


@dataclass(frozen=True)
class AutellixSettings:
    policy: CorePolicy = DEFAULT_POLICY
    queue_boundaries: list[float] | None = None
    quanta: list[float] | None = None
    starvation_ratio: float | None = None
    stale_after: float | None = None

    @classmethod
    def from_vllm_config(cls, vllm_config: Any) -> AutellixSettings:
        extra = getattr(vllm_config, "additional_config", None) or {}
        given = dict(extra.get("autellix", {})) if isinstance(extra, dict) else {}

        def pick(key: str) -> Any:
            return given[key] if key in given else os.environ.get(f"AUTELLIX_{key.upper()}")

        policy = pick("policy") or DEFAULT_POLICY
        if policy not in CORE_POLICIES:
            raise ValueError(
                f"autellix policy {policy!r}: expected one of {', '.join(CORE_POLICIES)}"
            )
        return cls(
            policy=cast(CorePolicy, policy),
            queue_boundaries=_floats(pick("queue_boundaries")),
            quanta=_floats(pick("quanta")),
            starvation_ratio=_float(pick("starvation_ratio")),
            stale_after=_float(pick("stale_after")),
        )

    def make_core(self):  # -> autellix_core.Scheduler
        import autellix_core

        return autellix_core.Scheduler(
            policy=self.policy,
            queue_boundaries=self.queue_boundaries,
            quanta=self.quanta,
            starvation_ratio=self.starvation_ratio,
            stale_after=self.stale_after,
        )
