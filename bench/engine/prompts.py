"""Synthetic prompts as token ids, with the sharing the trace describes.

A program owns a pseudo-random token stream; a call's prompt is the stream's first
``prefix_tokens`` tokens (its earlier context, which the prefix cache may still hold) followed by
tokens unique to the call. A root call's whole prompt is the program's stream, so later calls
find their prefix in the cache exactly as far as the program's first prompt reached. ``system_tokens``
leading tokens come from one stream shared by every program (bfcl's function descriptions).
"""

from __future__ import annotations

import random

from autellix.sim.trace import Call, Program

# Plain-text ids of the tiny model's 4,096-token vocabulary, clear of its special tokens.
LOW_ID, HIGH_ID = 16, 4000


def _stream(seed: str, length: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(LOW_ID, HIGH_ID) for _ in range(length)]


class PromptBuilder:
    def __init__(self, run_tag: str, longest_prompt: int) -> None:
        self.run_tag = run_tag
        self.system = _stream(f"{run_tag}:system", longest_prompt)
        self._context: dict[str, list[int]] = {}
        self.longest = longest_prompt

    def _program_stream(self, program: Program) -> list[int]:
        stream = self._context.get(program.program_id)
        if stream is None:
            body = _stream(f"{self.run_tag}:{program.program_id}", self.longest)
            stream = self.system[: program.system_tokens] + body[program.system_tokens :]
            self._context[program.program_id] = stream
        return stream

    def prompt(self, program: Program, call: Call) -> list[int]:
        stream = self._program_stream(program)
        if not call.parents:
            return stream[: call.prompt_tokens]
        shared = max(call.prefix_tokens, min(program.system_tokens, call.prompt_tokens))
        fresh = _stream(f"{self.run_tag}:{program.program_id}:{call.call_id}", call.prompt_tokens - shared)
        return stream[:shared] + fresh

    def forget(self, program: Program) -> None:
        self._context.pop(program.program_id, None)
