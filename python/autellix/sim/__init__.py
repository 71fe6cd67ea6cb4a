"""Discrete-event simulator of continuous-batching LLM engines driven by the Autellix core.

Modules: :mod:`trace` (JSONL trace format), :mod:`workloads` (seeded generators),
:mod:`presets` (engine step-time models), :mod:`engine` (one engine replica), :mod:`srpt` (the
oracle policy), :mod:`simulator` (events, DAG release, load balancing), :mod:`metrics`,
:mod:`sweep` (rate sweeps, plots, tables), :mod:`progress`.
"""

from autellix.sim.presets import PRESETS, EngineConfig, get_preset
from autellix.sim.trace import Call, Program, TraceError, dump_trace, load_trace
from autellix.sim.workloads import WORKLOADS, generate

__all__ = [
    "PRESETS",
    "WORKLOADS",
    "Call",
    "EngineConfig",
    "Program",
    "TraceError",
    "dump_trace",
    "generate",
    "get_preset",
    "load_trace",
]
