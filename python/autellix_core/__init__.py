"""The Autellix scheduling core (Rust, via PyO3): see __init__.pyi for the contract."""

from autellix_core._core import (
    CallStateError,
    ConfigError,
    Decision,
    DuplicateCallError,
    EngineAdapter,
    InvalidArgumentError,
    LoadBalancer,
    Scheduler,
    SchedulerError,
    UnknownCallError,
    UnknownParentError,
    UnknownProgramError,
    __version__,
)

__all__ = [
    "CallStateError",
    "ConfigError",
    "Decision",
    "DuplicateCallError",
    "EngineAdapter",
    "InvalidArgumentError",
    "LoadBalancer",
    "Scheduler",
    "SchedulerError",
    "UnknownCallError",
    "UnknownParentError",
    "UnknownProgramError",
    "__version__",
]
