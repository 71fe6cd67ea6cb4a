"""Models Autellix can serve without a model hub: built or converted locally, cached on disk.

    resolve_model("tiny")                  # tiny random-weight Llama for tests and benches
    resolve_model(None)                    # the real default, SmolLM2-135M-Instruct
    resolve_model("/path/to/hf-folder")    # any local checkpoint, passed through
"""

from autellix.models.cache import cache_root
from autellix.models.registry import DEFAULT_MODEL, TINY_MODEL, known_models, resolve_model
from autellix.models.smollm2 import convert_default_model
from autellix.models.tiny import build_tiny_model

__all__ = [
    "DEFAULT_MODEL",
    "TINY_MODEL",
    "build_tiny_model",
    "cache_root",
    "convert_default_model",
    "known_models",
    "resolve_model",
]
