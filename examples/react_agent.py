#!/usr/bin/env python3
"""A ReAct-style agent as one Autellix program: think, act with a local tool, observe, repeat.

Every LLM call of the run is a call of the same program, each naming the previous call as its
parent, so the server ranks them by the program's attained service (PLAS), not call by call; each
also says how many calls the run may still make (its step budget left, `calls_left`), so the
server ranks the program by the work that leaves instead. The calls are the openai SDK's
(`chat.completions.create`); `autellix.Client` starts and ends the program and tags the SDK client
with it. (examples/tool_agent.py does the same with the SDK's structured tool calling instead of a
text protocol.)

Tools (both local and safe):
  calculator[expr]  arithmetic on numbers with + - * / // % ** and parentheses, evaluated by walking
                    the `ast` tree (no eval).
  search[text]      case-insensitive search of the files under --folder; returns matching lines.

The model is asked to answer in the ReAct format (``Action: tool[input]`` or ``Final Answer: ...``).
A small or random-weight model rarely does, so when its reply has no usable action the agent takes
the next step of a scripted plan for the question instead; it always stops after --max-steps calls.

    python examples/react_agent.py --base-url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import autellix
from local_tools import calculator

DEMO_QUESTION = "What is (17 + 25) * 3 - 12 / 4, and which file defines the calculator tool?"

SYSTEM_PROMPT = """You answer questions with tools. Tools:
calculator[expression]: evaluates arithmetic, e.g. calculator[(2 + 3) * 4]
search[text]: finds lines containing text in the project files
Reply with one line "Action: tool[input]" to use a tool, or "Final Answer: ..." when done."""

# -- tools -------------------------------------------------------------------------------------

def make_search(folder: Path, limit: int = 5) -> Callable[[str], str]:
    def search(text: str) -> str:
        needle = text.strip().lower()
        if not needle:
            raise ValueError("empty search")
        hits: list[str] = []
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.stat().st_size > 1_000_000 or "__pycache__" in path.parts:
                continue
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (UnicodeDecodeError, OSError):
                continue  # binary or unreadable: not searchable text
            for number, line in enumerate(lines, 1):
                if needle in line.lower():
                    hits.append(f"{path.relative_to(folder)}:{number}: {line.strip()[:80]}")
                    if len(hits) >= limit:
                        return "\n".join(hits)
        return "\n".join(hits) or "no matches"

    return search


# -- the agent ---------------------------------------------------------------------------------

ACTION = re.compile(r"Action:\s*(calculator|search)\s*\[([^\]\n]{1,200})\]", re.IGNORECASE)
FINAL = re.compile(r"Final Answer:\s*(.+)", re.IGNORECASE)
ARITHMETIC = re.compile(r"[\d(][\d\s.+\-*/%()]*[\d)]")


@dataclass
class Step:
    tool: str | None  # None for the final answer
    argument: str  # the tool input, or the final answer


def _demo_answer(observations: list[str]) -> str:
    # Looked up by content, not position: the model may have taken some steps itself.
    numbers = [o for o in observations if re.fullmatch(r"-?[\d.]+", o)]
    files = [o.split(":", 1)[0] for o in observations if ".py:" in o]
    where = f" (the calculator is defined in {files[0]})" if files else ""
    return f"{numbers[-1] if numbers else 'unknown'}{where}"


def scripted_plan(question: str) -> Callable[[list[str]], Step]:
    """The steps to take when the model gives no usable action. Each entry sees the observations
    so far, so later steps can use earlier results (as the model would)."""
    if question == DEMO_QUESTION:
        plan: list[Callable[[list[str]], Step]] = [
            lambda obs: Step("calculator", "(17 + 25) * 3"),
            lambda obs: Step("calculator", f"{obs[-1]} - 12 / 4"),
            lambda obs: Step("search", "def calculator"),
            lambda obs: Step(None, _demo_answer(obs)),
        ]
    else:
        found = max(ARITHMETIC.findall(question), key=len, default="")
        plan = [lambda obs: Step("calculator", found)] if found else []
        plan.append(lambda obs: Step(None, obs[-1] if obs else "I could not work it out."))
    position = 0

    def next_step(observations: list[str]) -> Step:
        nonlocal position
        step = plan[min(position, len(plan) - 1)]
        position += 1
        return step(observations)

    return next_step


def parse_reply(text: str) -> Step | None:
    final = FINAL.search(text)
    action = ACTION.search(text)
    if action and (not final or action.start() < final.start()):
        return Step(action.group(1).lower(), action.group(2).strip())
    if final:
        return Step(None, final.group(1).strip())
    return None


def run(args: argparse.Namespace) -> int:
    tools: dict[str, Callable[[str], str]] = {"calculator": calculator, "search": make_search(args.folder)}
    client = autellix.Client(args.base_url, api_key=args.api_key)
    model = args.model or client.openai.models.list().data[0].id
    plan = scripted_plan(args.question)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": args.question}]
    observations: list[str] = []
    answer: str | None = None
    print(f"Question: {args.question}")
    with client, client.program(metadata={"example": "react_agent"}) as program:
        print(f"Program: {program.id}")
        previous: list[str] = []
        for number in range(1, args.max_steps + 1):
            steps_left = args.max_steps - number + 1  # this call included: an upper bound will do
            completion = program.openai_for(thread=0, parents=previous, calls_left=steps_left).chat.completions.create(
                model=model, messages=messages, max_tokens=args.max_tokens, temperature=0.0
            )
            reply = completion.choices[0].message.content or ""
            call_id = completion.id
            previous = [call_id]
            step, source = parse_reply(reply), "model"
            observation = None
            if step is not None and step.tool is not None:
                try:
                    observation = tools[step.tool](step.argument)
                except (ValueError, SyntaxError, ZeroDivisionError, OverflowError) as e:
                    print(f"Step {number} (model): {step.tool}[{step.argument}] failed: {e}")
                    step = None
            if step is None:
                step, source = plan(observations), "plan"
                if step.tool is not None:
                    observation = tools[step.tool](step.argument)
            if step.tool is None:
                answer = step.argument
                print(f"Step {number} ({source}, {call_id}): Final Answer: {answer}")
                break
            action = f"Action: {step.tool}[{step.argument}]"
            print(f"Step {number} ({source}, {call_id}): {action}")
            print("  Observation: " + str(observation).replace("\n", "\n               "))
            assert observation is not None
            observations.append(observation)
            # The canonical action, not the model's raw text, keeps the context short and on track.
            messages += [{"role": "assistant", "content": action}, {"role": "user", "content": f"Observation: {observation}"}]
        info = program.info()
    print(f"Final answer: {answer if answer is not None else f'(none: stopped after {args.max_steps} steps)'}")
    print(
        f"Program {info.get('id', program.id)}: {len(info.get('calls') or [])} calls, "
        f"attained service {info.get('attained_service') or 0:.0f} work units, waiting time {info.get('waiting_time') or 0:.0f} work units, "
        f"calls it said were still to come {info.get('calls_to_come')}"
    )
    print(f"Program ended: aborted calls {(program.ended or {}).get('aborted_calls')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--model", default=None, help="default: the server's first model")
    parser.add_argument("--question", default=DEMO_QUESTION)
    parser.add_argument("--folder", type=Path, default=Path(__file__).resolve().parent,
                        help="folder the search tool looks in (default: this examples folder)")
    parser.add_argument("--max-steps", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=48)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
