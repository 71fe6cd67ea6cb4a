"""Autellix: a program-aware serving engine for LLM agents."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("autellix")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
