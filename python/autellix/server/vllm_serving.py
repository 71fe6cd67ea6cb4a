"""vLLM's own OpenAI and Anthropic serving layer, built over Autellix's replica router.

Parsing, validation, chat templates, tool calling, structured outputs, sampling, logprobs, `n`,
streaming chunks and error bodies are vLLM's (`OpenAIServingChat`, `OpenAIServingCompletion`,
`OpenAIServingResponses`, `AnthropicServingMessages`, `OpenAIServingModels`), set up by vLLM's
own `init_app_state` exactly as `vllm serve` does, from `vllm serve`'s own frontend flags
(`--enable-auto-tool-choice`, `--tool-call-parser`, `--chat-template`, `--tool-strict-level`, ...).
The aiohttp handlers call them; this module only builds them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# What `autellix serve` gives vLLM's frontend unless told otherwise: tools work out of the box.
# hermes parses `<tool_call>{json}</tool_call>` from any tokenizer; the built-in models' chat
# template teaches that format. Strict level "parameter" holds a forced call's arguments to the
# tool's schema even for tools not marked `strict` (vLLM's default "auto" constrains only the
# envelope, and a small model then writes arguments that do not parse).
DEFAULT_TOOL_PARSER = "hermes"
DEFAULT_TOOL_STRICT_LEVEL = "parameter"


def tool_flags(tool_call_parser: str = DEFAULT_TOOL_PARSER, tool_strict_level: str = DEFAULT_TOOL_STRICT_LEVEL) -> tuple[str, ...]:
    """`vllm serve`'s tool flags; parser "none" turns auto tool choice off."""
    auto = ("--enable-auto-tool-choice", "--tool-call-parser", tool_call_parser) if tool_call_parser != "none" else ()
    return (*auto, "--tool-strict-level", tool_strict_level)


DEFAULT_FRONTEND_ARGS = tool_flags()


def frontend_args(model_path: str, served_name: str, extra: Sequence[str] = ()) -> argparse.Namespace:
    """vLLM's own `vllm serve` namespace for the frontend flags in `extra` (checked by vLLM's
    parser: an unknown flag is an error at start-up, as with `vllm serve`)."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser(prog="autellix serve"))
    args = parser.parse_args(["--model", model_path, "--served-model-name", served_name, *extra])
    validate_parsed_serve_args(args)
    return args


@dataclass(frozen=True)
class ServingLayer:
    chat: Any  # OpenAIServingChat
    completion: Any  # OpenAIServingCompletion
    responses: Any  # OpenAIServingResponses
    messages: Any  # AnthropicServingMessages
    models: Any  # OpenAIServingModels
    args: argparse.Namespace


async def build_serving_layer(engine_client: Any, args: argparse.Namespace) -> ServingLayer:
    from starlette.datastructures import State
    from vllm.entrypoints.launchers.api_server.app_state import init_app_state

    state = State()
    await init_app_state(engine_client, state, args, supported_tasks=("generate",))
    return ServingLayer(
        chat=state.openai_serving_chat,
        completion=state.openai_serving_completion,
        responses=state.openai_serving_responses,
        messages=state.anthropic_serving_messages,
        models=state.openai_serving_models,
        args=args,
    )
