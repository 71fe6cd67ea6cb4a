"""What the HTTP front end is configured with (the engines have their own EngineOptions)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from autellix.server.vllm_serving import DEFAULT_FRONTEND_ARGS

# A client request body larger than this is refused with 413 before it is read.
DEFAULT_MAX_BODY_BYTES = 4 << 20


def key_hash(key: str | None) -> str | None:
    """Programs remember which key started them by this digest, never the key itself."""
    return None if key is None else hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    # Empty: no authentication. Several keys: each client's programs are its own.
    api_keys: tuple[str, ...] = ()
    # Calls outstanding (queued or running) beyond which new ones get 429.
    max_queued_calls: int = 512
    # A program with no call for this long is ended by the reaper.
    program_ttl: float = 900.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Seconds a client is told to wait (Retry-After) when overloaded or not ready.
    retry_after: int = 1
    # `vllm serve` frontend flags for vLLM's serving layer (tool parser, chat template, ...).
    vllm_frontend_args: tuple[str, ...] = DEFAULT_FRONTEND_ARGS
    key_hashes: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        if self.max_queued_calls < 1:
            raise ValueError(f"max_queued_calls must be at least 1, got {self.max_queued_calls}")
        if not self.program_ttl > 0:
            raise ValueError(f"program_ttl must be positive, got {self.program_ttl}")
        if any(not k for k in self.api_keys):
            raise ValueError("an API key must not be empty")
        object.__setattr__(self, "key_hashes", frozenset(key_hash(k) for k in self.api_keys))
