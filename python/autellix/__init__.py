"""Autellix: a program-aware serving engine for LLM agents."""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("autellix")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# The clients load on first use, so `import autellix` stays light (no aiohttp, never vLLM).
_LAZY = {"Client": "autellix.client", "AsyncClient": "autellix.client"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autellix' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
