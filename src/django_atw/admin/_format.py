"""Wording shared by the admin's messages."""

from __future__ import annotations


def plural(count: int, noun: str = "task") -> str:
    """``1 task``, ``2 tasks``: a count with its noun."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
