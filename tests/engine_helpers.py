"""Real vLLM engines for tests: in-process (fast start, scheduler reachable), always shut down."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

# Small enough for any CI box; the CPU backend otherwise reserves most of the RAM.
KV_CACHE_BYTES = 64 << 20


@contextmanager
def in_process_engine(model: Path, **engine_args: Any) -> Iterator[Any]:
    """`vllm.LLM` with its engine core in this process, so that
    `llm.llm_engine.engine_core.engine_core.scheduler` is the live scheduler object."""
    from autellix.vllm.cpu_amx import disable_amx_attention

    disable_amx_attention()
    args: dict[str, Any] = dict(
        model=str(model),
        enforce_eager=True,
        kv_cache_memory_bytes=KV_CACHE_BYTES,
        max_model_len=1024,
        seed=0,
    )
    args.update(engine_args)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        import vllm.envs
        from vllm import LLM

        vllm.envs.disable_envs_cache()  # an earlier engine froze the environment it saw
        llm = LLM(**args)
        try:
            yield llm
        finally:
            llm.llm_engine.engine_core.shutdown()
            vllm.envs.disable_envs_cache()  # do not leave our setting frozen for later tests


def scheduler_of(llm: Any) -> Any:
    return llm.llm_engine.engine_core.engine_core.scheduler


# A random-weight model writes whitespace forever where JSON allows it: compact JSON only.
COMPACT_JSON = {"backend": "xgrammar", "disable_any_whitespace": True}
COLOR_SCHEMA = {
    "type": "object",
    "properties": {"color": {"enum": ["red", "green", "blue"]}},
    "required": ["color"],
    "additionalProperties": False,
}
