"""vLLM engine replicas with Autellix's scheduler, behind the core's load balancer."""

from autellix.engine.driver import CallChunk, EngineDriver, EngineUnavailableError
from autellix.engine.options import SCHEDULERS, EngineOptions

__all__ = ["SCHEDULERS", "CallChunk", "EngineDriver", "EngineOptions", "EngineUnavailableError"]
