"""The plug-in's knobs: `--additional-config '{"autellix": {...}}'` first, then AUTELLIX_* env.

Both reach vLLM's engine-core child process: additional_config travels inside VllmConfig, and
child processes inherit the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, cast

from autellix import work_units
from autellix.contract import CORE_POLICIES, DEFAULT_POLICY, CorePolicy


def _floats(value: Any) -> list[float] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return [float(x) for x in value.split(",") if x.strip()]
    return [float(x) for x in value]


def _float(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def _bool(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        if value.lower() not in ("1", "0", "true", "false", "on", "off", "yes", "no"):
            raise ValueError(f"autellix: expected a boolean, got {value!r}")
        return value.lower() in ("1", "true", "on", "yes")
    return bool(value)


@dataclass(frozen=True)
class AutellixSettings:
    policy: CorePolicy = DEFAULT_POLICY
    queue_boundaries: list[float] | None = None
    quanta: list[float] | None = None
    starvation_ratio: float | None = None
    stale_after: float | None = None
    # Skip priority preemptions whose recompute costs more than waiting (preemption_guard).
    preemption_guard: bool = True
    # Credit each call its own work in a step, not the whole step's (autellix.work_units).
    own_work_credit: bool = True

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
            preemption_guard=_bool(pick("preemption_guard"), default=True),
            own_work_credit=_bool(pick("own_work_credit"), default=True),
        )

    def make_core(self):  # -> autellix_core.Scheduler
        """The core on the plug-in's clock, engine work units: what is not given comes from
        autellix.work_units (fcfs has one queue, so no ladder)."""
        import autellix_core

        laddered = self.policy != "fcfs"
        return autellix_core.Scheduler(
            policy=self.policy,
            queue_boundaries=self.queue_boundaries or (list(work_units.QUEUE_BOUNDARIES) if laddered else None),
            quanta=self.quanta or (list(work_units.QUANTA) if laddered and not self.queue_boundaries else None),
            starvation_ratio=self.starvation_ratio,
            stale_after=self.stale_after if self.stale_after is not None else work_units.STALE_AFTER,
        )
