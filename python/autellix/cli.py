"""The ``autellix`` command line: one argparse parser with subcommands.

Subcommands live in their own modules, each exposing ``register(subparsers)`` that adds its parsers
and sets ``func`` (a handler taking the parsed namespace and returning an exit status). To add one
(``serve``, ...), append the module's dotted path to :data:`SUBCOMMAND_MODULES`; a listed module
that cannot be imported (an optional dependency missing) is skipped, so the other commands still work.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["SUBCOMMAND_MODULES", "build_parser", "main"]

SUBCOMMAND_MODULES: list[str] = [
    "autellix.sim.commands",  # workload, simulate, sweep
    "autellix.server.command",  # serve
]


def build_parser() -> argparse.ArgumentParser:
    from autellix import __version__

    parser = argparse.ArgumentParser(prog="autellix", description="Autellix: program-aware LLM serving.")
    parser.add_argument("--version", action="version", version=f"autellix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "passes_unknown_args", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.unknown_args = tuple(unknown)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as e:  # bad trace, bad config, unreadable file: one clear line
        print(f"autellix {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
