"""Validated request fields -> `vllm.SamplingParams`, with the context-length check."""

from __future__ import annotations

from typing import Any

from autellix.server.errors import bad_request
from autellix.server.protocol import Sampling


def check_context(prompt_tokens: int, max_tokens: int | None, max_model_len: int) -> int:
    """The max_tokens the call runs with; 400 when prompt plus output cannot fit."""
    if prompt_tokens >= max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens; the prompt has "
            f"{prompt_tokens} tokens, leaving no room for output",
            param="messages",
            code="context_length_exceeded",
        )
    if max_tokens is None:
        return max_model_len - prompt_tokens
    if prompt_tokens + max_tokens > max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens; the prompt has "
            f"{prompt_tokens} tokens and max_tokens is {max_tokens} ({prompt_tokens + max_tokens} in all)",
            param="max_tokens",
            code="context_length_exceeded",
        )
    return max_tokens


def sampling_params(fields: Sampling, max_tokens: int) -> Any:
    from vllm import SamplingParams

    given: dict[str, Any] = {
        "temperature": fields.temperature,
        "top_p": fields.top_p,
        "min_p": fields.min_p,
        "seed": fields.seed,
        "presence_penalty": fields.presence_penalty,
        "frequency_penalty": fields.frequency_penalty,
        "repetition_penalty": fields.repetition_penalty,
    }
    kwargs = {k: v for k, v in given.items() if v is not None}
    if fields.top_k is not None:
        kwargs["top_k"] = 0 if fields.top_k == -1 else fields.top_k  # both mean "off"
    try:
        return SamplingParams(
            n=1,
            max_tokens=max_tokens,
            stop=list(fields.stop) or None,
            ignore_eos=fields.ignore_eos,
            **kwargs,
        )
    except ValueError as e:  # a combination vLLM refuses
        raise bad_request(f"invalid sampling parameters: {e}") from None
