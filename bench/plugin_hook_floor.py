"""What any vLLM scheduler plug-in with the Autellix plug-in's hooks pays before doing any work:
vLLM's `Scheduler` with the same methods overridden to call vLLM's and nothing else.
`bench/plugin_step.py` times it hook by hook like the plug-in, so the plug-in's own time reads
against this floor (Python's cost of a method that wraps another, per call)."""

from __future__ import annotations

from typing import Any

from vllm.v1.core.sched.scheduler import Scheduler


class PassThroughScheduler(Scheduler):
    def schedule(self, throttle_prefills: bool = False) -> Any:
        return super().schedule(throttle_prefills)

    def add_request(self, request: Any) -> None:
        super().add_request(request)
