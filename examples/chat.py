#!/usr/bin/env python3
"""Multi-turn chat as one Autellix program, each reply streamed as it arrives.

Each turn's call names the previous turn's call as its parent, so the server sees one program
(a chain of calls) and ranks its later turns by the service its earlier turns already got. The
calls are the openai SDK's own (`chat.completions.create(stream=True)`); `autellix.Client` only
starts and ends the program and tags the SDK client with it.

    python examples/chat.py --base-url http://127.0.0.1:8000 --turns 3 "Hi!" "Tell me more."
"""

from __future__ import annotations

import argparse
import sys

import autellix

DEFAULT_MESSAGES = ["Hello! Who are you?", "What can you help me with?", "Tell me a short story.", "Thanks!"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("messages", nargs="*", help="user turns (defaults fill in when fewer than --turns)")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--model", default=None, help="default: the server's first model")
    parser.add_argument("--turns", type=int, default=None, help="number of turns (default: one per message, else 3)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--system", default="You are a helpful assistant.")
    parser.add_argument("--no-stream", action="store_true", help="wait for each whole reply")
    args = parser.parse_args(argv)
    turns = args.turns if args.turns is not None else (len(args.messages) or 3)
    user_turns = (args.messages + DEFAULT_MESSAGES * turns)[:turns]

    with autellix.Client(args.base_url, api_key=args.api_key) as client:
        model = args.model or client.openai.models.list().data[0].id
        history = [{"role": "system", "content": args.system}]
        with client.program(metadata={"example": "chat"}) as program:
            print(f"Program: {program.id}  (model {model})")
            previous: list[str] = []
            tokens = 0
            for turn, text in enumerate(user_turns, 1):
                history.append({"role": "user", "content": text})
                print(f"\nUser: {text}")
                print("Assistant: ", end="", flush=True)
                oa = program.openai_for(parents=previous)
                if args.no_stream:
                    reply = oa.chat.completions.create(model=model, messages=history, max_tokens=args.max_tokens)
                    call_id, answer = reply.id, reply.choices[0].message.content or ""
                    finish, completion = reply.choices[0].finish_reason, reply.usage.completion_tokens if reply.usage else 0
                    print(answer, flush=True)
                else:
                    stream = oa.chat.completions.create(
                        model=model, messages=history, max_tokens=args.max_tokens, stream=True,
                        stream_options={"include_usage": True},
                    )
                    parts: list[str] = []
                    call_id, finish, completion = "", None, 0
                    for chunk in stream:
                        call_id = call_id or chunk.id
                        if chunk.usage:
                            completion = chunk.usage.completion_tokens
                        for choice in chunk.choices:
                            if choice.delta.content:
                                parts.append(choice.delta.content)
                                print(choice.delta.content, end="", flush=True)  # as it arrives
                            finish = choice.finish_reason or finish
                    print()
                    answer = "".join(parts)
                tokens += completion
                print(f"[turn {turn}: {call_id}, {completion} tokens, finish {finish}]")
                history.append({"role": "assistant", "content": answer})
                previous = [call_id]
            info = program.info()
    print(f"\nChat done: {turns} turns, {tokens} completion tokens")
    print(f"Program {program.id}: {len(info.get('calls') or [])} calls, attained service {info.get('attained_service') or 0:.0f} work units")
    return 0


if __name__ == "__main__":
    sys.exit(main())
