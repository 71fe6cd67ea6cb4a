"""A small progress reporter for long simulations, on stderr: a redrawn bar on a terminal, a line
every few seconds otherwise (logs, CI). Silent for runs shorter than ``delay`` seconds."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    def __init__(self, label: str = "simulating", stream: TextIO | None = None, delay: float = 1.0,
                 every: float | None = None, enabled: bool = True):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every if every is not None else (0.2 if self.tty else 5.0)
        self.delay = delay
        self.enabled = enabled
        self.t0 = time.monotonic()
        self.last = self.t0
        self.drawn = False

    def __call__(self, done: int, total: int, sim_time: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        final = done >= total
        if now - self.t0 < self.delay and not (final and self.drawn):
            return
        if not final and now - self.last < self.every:
            return
        self.last = now
        frac = done / total if total else 1.0
        el = now - self.t0
        if self.tty:
            width = 30
            fill = int(width * frac)
            bar = "#" * fill + "-" * (width - fill)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total} programs, sim t={sim_time:.0f}s, {el:.0f}s")
            if final:
                self.stream.write("\n")
        else:
            self.stream.write(f"{self.label}: {done}/{total} programs ({100 * frac:.0f}%), sim t={sim_time:.0f}s, "
                              f"{el:.0f}s elapsed\n")
        self.stream.flush()
        self.drawn = True
