#!/usr/bin/env python3
"""Parallel tree search as one multi-threaded Autellix program (the LATS pattern).

A root call proposes; then, level by level, --width expansion calls run in parallel (children of
the current node: ``parents=[node]``, one thread id each), and one evaluation call joins them
(``parents=`` every child). The server schedules the whole tree as one program: under ATLAS every
call inherits the program's critical path so far, so the parallel siblings share one priority and
no straggler is left behind.

Each call is the openai SDK's (`AsyncOpenAI.completions.create`), on a client that
`program.openai_for(thread=..., parents=...)` tagged with the program, its thread and parents.

Candidates are scored locally by a cheap heuristic (distinct words), standing in for a value
function; the best one is carried into the join prompt.

    python examples/tree_search.py --base-url http://127.0.0.1:8000 --width 3 --depth 2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field

from openai.types import Completion

from autellix import AsyncClient
from autellix.client import AsyncProgram


@dataclass
class Node:
    label: str
    result: Completion
    thread_id: int
    parents: list[str]
    score: float = 0.0
    children: list[Node] = field(default_factory=list)


def score(text: str) -> float:
    """Stand-in value function: more distinct words reads as a richer candidate."""
    return float(len(set(text.lower().split())))


def text(result: Completion) -> str:
    return result.choices[0].text if result.choices else ""


def short(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


async def expand(program: AsyncProgram, model: str, question: str, node: Node, width: int, max_tokens: int) -> list[Node]:
    async def one(i: int) -> Node:
        prompt = f"Question: {question}\nCurrent idea: {short(text(node.result), 200)}\nRefine idea #{i}:"
        oa = program.openai_for(thread=i, parents=[node.result])
        result = await oa.completions.create(model=model, prompt=prompt, max_tokens=max_tokens)
        child = Node(f"child {i}", result, i, [node.result.id])
        child.score = score(text(result))
        return child

    return list(await asyncio.gather(*(one(i) for i in range(1, width + 1))))


async def search(args: argparse.Namespace) -> int:
    async with AsyncClient(args.base_url, api_key=args.api_key) as client:
        model = args.model or (await client.openai.models.list()).data[0].id
        async with client.program(metadata={"example": "tree_search"}) as program:
            print(f"Program: {program.id}")
            root_result = await program.openai_for(thread=0).completions.create(
                model=model, prompt=f"Question: {args.question}\nFirst idea:", max_tokens=args.max_tokens
            )
            root = Node("root", root_result, 0, [])
            node, calls = root, 1
            for level in range(1, args.depth + 1):
                children = await expand(program, model, args.question, node, args.width, args.max_tokens)
                best = max(children, key=lambda c: c.score)
                candidates = "\n".join(f"#{c.thread_id}: {short(text(c.result))}" for c in children)
                join_result = await program.openai_for(thread=0, parents=[c.result for c in children]).completions.create(
                    model=model,
                    prompt=f"Question: {args.question}\nCandidates:\n{candidates}\nBest is #{best.thread_id}. Combined idea:",
                    max_tokens=args.max_tokens,
                )
                join = Node(f"join {level}", join_result, 0, [c.result.id for c in children])
                node.children = children
                for child in children:
                    child.children = [join] if child is best else []
                calls += len(children) + 1
                print(f"Level {level}: {len(children)} children in parallel, best #{best.thread_id} (score {best.score:g})")
                node = join
            info = await program.info()
        print_tree(root)
        print(f"Answer: {short(text(node.result), 100)!r}")
        print(f"Calls issued: {calls}")
        print(
            f"Program {program.id}: {len(info.get('calls') or [])} calls, "
            f"critical path {info.get('critical_path') or 0:.0f} work units, attained service {info.get('attained_service') or 0:.0f} work units"
        )
        print(f"Program ended: aborted calls {(program.ended or {}).get('aborted_calls')}")
    return 0


def print_tree(root: Node) -> None:
    """Prints each level's node, its parallel children and the join that follows them."""
    node: Node | None = root
    depth = 0
    while node is not None:
        pad = "  " * depth
        parents = f" <- {len(node.parents)} parent(s)" if node.parents else ""
        print(f"{pad}{node.label} {node.result.id} (thread {node.thread_id}){parents}: {short(text(node.result))!r}")
        next_node = None
        for child in node.children:
            mark = " *" if child.children else ""
            print(f"{pad}  ├─ {child.label} {child.result.id} (thread {child.thread_id}, score {child.score:g}){mark}")
            if child.children:
                next_node = child.children[0]
        node = next_node
        depth += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--model", default=None, help="default: the server's first model")
    parser.add_argument("--question", default="How should a city cut traffic congestion?")
    parser.add_argument("--width", type=int, default=3, help="parallel children per level")
    parser.add_argument("--depth", type=int, default=2, help="levels of expansion + join")
    parser.add_argument("--max-tokens", type=int, default=24)
    args = parser.parse_args(argv)
    if args.width < 1 or args.depth < 0:
        parser.error("--width must be >= 1 and --depth >= 0")
    return asyncio.run(search(args))


if __name__ == "__main__":
    sys.exit(main())
