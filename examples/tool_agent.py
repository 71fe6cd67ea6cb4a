#!/usr/bin/env python3
"""A tool-using agent on the openai SDK's own tool calling, as one Autellix program.

The loop every function-calling agent runs: send the question with `tools`; the model answers
with `tool_calls`; run each tool locally; send the results back as role "tool" messages; the
model writes the final answer. Both calls belong to one program (the second names the first as
its parent), so the server schedules the run as a whole.

Tools (local and safe):
  calculator(expression)  arithmetic with + - * / // % ** and parentheses, evaluated by walking the
                          `ast` tree (no eval)
  read_file(path)         the first lines of a text file under --folder (nothing outside it)

A small model (the default SmolLM2-135M-Instruct) rarely decides to call a tool by itself, so the
first call forces one: `tool_choice={"type": "function", "function": {"name": "calculator"}}`
(`--tool-choice required` lets the model pick the tool, `auto` lets it decide). The server then
constrains the output to the tool's JSON schema, so the arguments always parse. The second call
asks for the answer with `tool_choice="none"`. The server needs tool parsing on:
`autellix serve --enable-auto-tool-choice --tool-call-parser hermes`.

    python examples/tool_agent.py --base-url http://127.0.0.1:8000
    python examples/tool_agent.py --tool read_file --question "What does README.md say?"
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import autellix
from local_tools import calculator

DEFAULT_QUESTIONS = {
    "calculator": "What is (17 + 25) * 3 - 12 / 4?",
    "read_file": "What is the first line of README.md?",
}

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate an arithmetic expression, e.g. (2 + 3) * 4",
            "strict": True,  # the server constrains the arguments to the schema below
            "parameters": {
                "type": "object",
                "properties": {
                    "expression": {
                        "type": "string",
                        "description": "numbers, + - * / // % ** and parentheses",
                        # The schema the server constrains a forced call to: digits and operators,
                        # at most 40 characters (so even a random-weight model stops).
                        "pattern": "^[0-9 +*/().-]{1,40}$",
                    }
                },
                "required": ["expression"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read the first lines of a text file of the project",
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {
                        "type": "string",
                        "description": "a path relative to the project folder, e.g. README.md",
                        "pattern": "^[A-Za-z0-9_./-]{1,40}$",
                    }
                },
                "required": ["path"],
            },
        },
    },
]

# -- tools -------------------------------------------------------------------------------------


def make_read_file(folder: Path, max_lines: int = 5) -> Callable[[str], str]:
    root = folder.resolve()

    def read_file(path: str) -> str:
        target = (root / path).resolve()
        if not target.is_relative_to(root):
            raise ValueError(f"{path!r} is outside {root}")
        if not target.is_file():
            raise ValueError(f"no file {path!r}")
        with target.open(encoding="utf-8", errors="replace") as f:
            lines = [line.rstrip("\n") for _, line in zip(range(max_lines), f)]
        return "\n".join(lines)

    return read_file


def run_tool(tools: dict[str, Callable[[str], str]], name: str, arguments: str) -> str:
    """A tool's result, or the error a model can read and correct (never an exception: a bad
    call from the model is part of the conversation, not a crash of the agent)."""
    try:
        args = json.loads(arguments or "{}")
        if name not in tools:
            raise ValueError(f"unknown tool {name!r}")
        if not isinstance(args, dict) or len(args) != 1:
            raise ValueError(f"expected one argument, got {arguments!r}")
        (value,) = args.values()  # each tool takes one string argument
        return tools[name](str(value))
    except (ValueError, TypeError, SyntaxError, ZeroDivisionError, OverflowError, OSError) as e:
        return f"error: {type(e).__name__}: {e}"


# -- the agent ---------------------------------------------------------------------------------


def tool_choice(args: argparse.Namespace) -> Any:
    if args.tool_choice == "named":
        return {"type": "function", "function": {"name": args.tool}}
    return args.tool_choice  # "required" or "auto"


def run(args: argparse.Namespace) -> int:
    tools = {"calculator": calculator, "read_file": make_read_file(args.folder)}
    question = args.question or DEFAULT_QUESTIONS[args.tool]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a helpful assistant. Use the tools to answer exactly."},
        {"role": "user", "content": question},
    ]
    print(f"Question: {question}")
    with autellix.Client(args.base_url, api_key=args.api_key) as client:
        model = args.model or client.openai.models.list().data[0].id
        with client.program(metadata={"example": "tool_agent"}) as program:
            print(f"Program: {program.id}  (model {model})")
            # 1. the model picks a tool and its arguments
            first = program.openai.chat.completions.create(
                model=model, messages=messages, tools=TOOLS, tool_choice=tool_choice(args),
                max_tokens=args.max_tokens, seed=args.seed,
            )
            message = first.choices[0].message
            print(f"Call 1 ({first.id}): finish {first.choices[0].finish_reason}, {len(message.tool_calls or [])} tool call(s)")
            if not message.tool_calls:
                print(f"Final answer: {message.content or ''}  (the model called no tool)")
                return 0
            # 2. run each tool and hand its result back in a role "tool" message
            messages.append(message.model_dump(exclude_none=True))
            for tool_call in message.tool_calls:
                name, arguments = tool_call.function.name, tool_call.function.arguments
                result = run_tool(tools, name, arguments)
                print(f"Tool {name}({arguments}) -> " + result.replace("\n", "\n    "))
                messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": result})
            # 3. the answer, from the tool results (no more tool calls)
            final = program.openai_for(parents=[first]).chat.completions.create(
                model=model, messages=messages, tools=TOOLS, tool_choice="none",
                max_tokens=args.max_tokens, seed=args.seed,
            )
            answer = final.choices[0].message
            print(f"Call 2 ({final.id}): finish {final.choices[0].finish_reason}, tool calls {len(answer.tool_calls or [])}")
            print(f"Final answer: {answer.content or ''}")
            info = program.info()
        print(f"Program {program.id}: {len(info.get('calls') or [])} calls")
        print(f"Program ended: aborted calls {(program.ended or {}).get('aborted_calls')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--model", default=None, help="default: the server's first model")
    parser.add_argument("--question", default=None, help="default: one that fits --tool")
    parser.add_argument("--tool", choices=["calculator", "read_file"], default="calculator",
                        help="the tool a forced first call uses")
    parser.add_argument("--tool-choice", choices=["named", "required", "auto"], default="named",
                        help="named: force --tool; required: some tool; auto: the model decides")
    parser.add_argument("--folder", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the folder read_file may read (default: the project)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
