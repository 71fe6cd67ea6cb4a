"""argparse types shared by the subcommands: each turns bad input into one clear usage error."""

from __future__ import annotations

import argparse
import math


def nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    value = nonneg_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (rates, durations)."""
    value = positive_or_inf(text)
    if math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {text}")
    return value


def positive_or_inf(text: str) -> float:
    """A number > 0, where 'inf' means no limit (the starvation ratio)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
