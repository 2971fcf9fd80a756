"""How failures are worded in log lines that may repeat while a service is away."""

from __future__ import annotations


def brief(exc: BaseException) -> str:
    """The error's type and the first line of its message, at most 200 characters of it.

    The rest of a database error may quote whole statements and their values.
    """
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__
