#!/usr/bin/env python3
"""Multi-turn chat as one Autellix program, each reply streamed as it arrives.

Each turn's call names the previous turn's call as its parent, so the server sees one program
(a chain of calls) and ranks its later turns by the service its earlier turns already got.

    python examples/chat.py --base-url http://127.0.0.1:8000 --turns 3 "Hi!" "Tell me more."
"""

from __future__ import annotations

import argparse
import sys

from autellix import Client

DEFAULT_MESSAGES = ["Hello! Who are you?", "What can you help me with?", "Tell me a short story.", "Thanks!"]


def seconds(value: object) -> str:
    """The server reports service and waiting times in seconds of engine time."""
    return f"{value:.3f} s" if isinstance(value, (int, float)) else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("messages", nargs="*", help="user turns (defaults fill in when fewer than --turns)")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--turns", type=int, default=None, help="number of turns (default: one per message, else 3)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--system", default="You are a helpful assistant.")
    parser.add_argument("--no-stream", action="store_true", help="wait for each whole reply")
    args = parser.parse_args(argv)
    turns = args.turns if args.turns is not None else (len(args.messages) or 3)
    user_turns = (args.messages + DEFAULT_MESSAGES * turns)[:turns]

    client = Client(args.base_url, api_key=args.api_key)
    history = [{"role": "system", "content": args.system}]
    with client.program(metadata={"example": "chat"}) as program:
        print(f"Program: {program.id}  (model {client.default_model()})")
        previous: list[str] = []
        tokens = 0
        for turn, text in enumerate(user_turns, 1):
            history.append({"role": "user", "content": text})
            print(f"\nUser: {text}")
            print("Assistant: ", end="", flush=True)
            if args.no_stream:
                result = program.chat(history, max_tokens=args.max_tokens, parents=previous)
                print(result.text, flush=True)
            else:
                stream = program.chat(history, max_tokens=args.max_tokens, parents=previous, stream=True)
                for delta in stream:
                    print(delta, end="", flush=True)  # as it arrives
                print()
                result = stream.result
            completion = result.usage.completion_tokens if result.usage else 0
            tokens += completion
            print(f"[turn {turn}: {result.call_id}, {completion} tokens, finish {result.finish_reason}]")
            history.append({"role": "assistant", "content": result.text})
            previous = [result.call_id]
        info = program.info()
    print(f"\nChat done: {turns} turns, {tokens} completion tokens")
    print(f"Program {program.id}: {len(info.get('calls') or [])} calls, attained service {seconds(info.get('attained_service'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
