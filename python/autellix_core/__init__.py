"""The Autellix scheduling core (Rust, via PyO3): see __init__.pyi for the contract."""

from autellix_core._core import (
    CallStateError,
    ConfigError,
    Decision,
    DuplicateCallError,
    EngineAdapter,
    InvalidArgumentError,
    LoadBalancer,
    PreemptionGuard,
    Scheduler,
    SchedulerError,
    UnknownCallError,
    UnknownParentError,
    UnknownProgramError,
    VllmHooks,
    __version__,
    recompute_tokens,
)

__all__ = [
    "CallStateError",
    "ConfigError",
    "Decision",
    "DuplicateCallError",
    "EngineAdapter",
    "InvalidArgumentError",
    "LoadBalancer",
    "PreemptionGuard",
    "Scheduler",
    "SchedulerError",
    "UnknownCallError",
    "UnknownParentError",
    "UnknownProgramError",
    "VllmHooks",
    "__version__",
    "recompute_tokens",
]
