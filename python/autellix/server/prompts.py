"""Prompts to token ids: the chat template for chat calls, the tokenizer for text prompts, range
checks for token-id prompts. Tokenized once here so the context check and the engine agree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autellix.server.errors import bad_request


def chat_prompt_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    try:
        text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    except Exception as e:  # the template refused this conversation (role order, ...)
        raise bad_request(f"the model's chat template cannot render these messages: {e}", param="messages") from None
    # The template already places any special tokens the model expects.
    return list(tokenizer.encode(text, add_special_tokens=False))


def completion_prompt_ids(tokenizer: Any, prompt: str | Sequence[int]) -> list[int]:
    if isinstance(prompt, str):
        return list(tokenizer.encode(prompt, add_special_tokens=False))
    vocab = len(tokenizer)
    bad = next((t for t in prompt if not 0 <= t < vocab), None)
    if bad is not None:
        raise bad_request(f"'prompt' holds token id {bad}, outside this model's vocabulary [0, {vocab})", param="prompt")
    return list(prompt)
