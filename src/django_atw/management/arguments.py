"""argparse ``type=`` validators shared by django_atw's management commands.

Each names what it expected and what it got, so a typo reads as a clear usage error.
"""

from __future__ import annotations

import argparse


def positive_int(value: str) -> int:
    """A whole number of at least 1 (a concurrency, a count, a batch size)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return number


def positive_seconds(value: str) -> float:
    """A number of seconds above 0 (an interval, a grace period)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return number
