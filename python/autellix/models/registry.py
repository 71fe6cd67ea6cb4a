"""Names the engine accepts for a model, and where each one's cached build lives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from autellix.models.cache import build_once, cache_root, update_in_place
from autellix.models.chat_template import (
    SMOLLM2_CHAT_TEMPLATE,
    TINY_CHAT_TEMPLATE,
    install_chat_template,
    installed_chat_template,
)
from autellix.models.smollm2 import convert_default_model
from autellix.models.tiny import build_tiny_model

TINY_MODEL = "tiny"
DEFAULT_MODEL = "smollm2-135m-instruct"

# name -> (cache folder name, builder, chat template). The folder name carries a recipe version:
# bump it when a builder changes so old caches are rebuilt rather than silently reused. The chat
# template is not part of it: builders install it, and resolve_model patches it into caches that
# hold an older one, so a template change needs no rebuild (and no version bump).
_BUILDS: dict[str, tuple[str, Callable[[Path], object], str]] = {
    TINY_MODEL: ("tiny-llama-v1", build_tiny_model, TINY_CHAT_TEMPLATE),
    DEFAULT_MODEL: ("smollm2-135m-instruct-bf16-v1", convert_default_model, SMOLLM2_CHAT_TEMPLATE),
}


def known_models() -> list[str]:
    return sorted(_BUILDS)


def resolve_model(name_or_path: str | Path | None = None) -> Path:
    """Return a local HF-format model folder for a known name (building it once) or a path.

    None means the default model. Raises ValueError for anything that is neither.
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    if isinstance(name_or_path, str) and name_or_path in _BUILDS:
        folder, build, template = _BUILDS[name_or_path]
        target = build_once(cache_root() / "models" / folder, build)
        update_in_place(
            target,
            lambda path: installed_chat_template(path) == template,
            lambda path: install_chat_template(path, template),
        )
        return target
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    raise ValueError(
        f"unknown model {str(name_or_path)!r}: expected one of {', '.join(known_models())} "
        "or the path of an existing local model folder"
    )
