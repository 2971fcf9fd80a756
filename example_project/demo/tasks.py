"""Demo tasks, registered with ``@task`` and found by django_atw's autodiscovery of ``tasks.py``.

Every task is an ``async def`` taking JSON arguments. A task that accepts ``progress_callback``
receives one from the worker and reports its progress with it as a fraction from 0 to 1.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from django_atw import task

ProgressCallback = Callable[[float], None]

# Keyword arguments the enqueue form proposes for each task type.
DEFAULT_KWARGS: dict[str, dict[str, Any]] = {
    "demo.count": {"n": 10, "delay": 0.5},
    "demo.word_stats": {
        "text": "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.",
        "top": 5,
    },
    "demo.fail": {"message": "Something went wrong, on purpose.", "after": 1.0},
    "demo.slow": {"seconds": 60},
}


def check_count(n: int = 10, delay: float = 0.5) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 10_000:
        raise ValueError(f"n must be an integer from 0 to 10000, got {n!r}.")
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= 60:
        raise ValueError(f"delay must be a number of seconds from 0 to 60, got {delay!r}.")


def check_word_stats(text: str, top: int = 10) -> None:
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}.")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}.")


def check_fail(message: str = "", after: float = 1.0) -> None:
    if not isinstance(message, str):
        raise ValueError(f"message must be a string, got {type(message).__name__}.")
    if isinstance(after, bool) or not isinstance(after, (int, float)) or not 0 <= after <= 60:
        raise ValueError(f"after must be a number of seconds from 0 to 60, got {after!r}.")


def check_slow(seconds: float = 60) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 3600:
        raise ValueError(f"seconds must be a number from 0 to 3600, got {seconds!r}.")


# The value checks of each task's arguments. The demo page runs them before it enqueues, so a bad
# value is refused on the form; each task runs its own again, for tasks enqueued elsewhere.
CHECKS: dict[str, Callable[..., None]] = {
    "demo.count": check_count,
    "demo.word_stats": check_word_stats,
    "demo.fail": check_fail,
    "demo.slow": check_slow,
}


def _report(progress_callback: ProgressCallback | None, value: float) -> None:
    if progress_callback is not None:
        progress_callback(value)


@task("demo.count")
async def count(n: int = 10, delay: float = 0.5, progress_callback: ProgressCallback | None = None) -> int:
    """Count to ``n``, sleeping ``delay`` seconds at each step; return ``n``."""
    check_count(n, delay)
    for step in range(1, n + 1):
        await asyncio.sleep(delay)
        _report(progress_callback, step / n)
    return n


@task("demo.word_stats")
async def word_stats(
    text: str, top: int = 10, progress_callback: ProgressCallback | None = None
) -> dict[str, Any]:
    """Count the words of ``text``; return the totals and the ``top`` most common words."""
    check_word_stats(text, top)
    words = re.findall(r"[\w']+", text.lower())
    counts: Counter[str] = Counter()
    chunk = max(1, len(words) // 20)
    for start in range(0, len(words), chunk):
        counts.update(words[start : start + chunk])
        _report(progress_callback, min(1.0, (start + chunk) / len(words)))
        # Slow down on purpose, so that the progress bar has something to show.
        await asyncio.sleep(0.1)
    return {
        "words": len(words),
        "unique": len(counts),
        "top": [[word, n] for word, n in counts.most_common(top)],
    }


@task("demo.fail")
async def fail(
    message: str = "Something went wrong, on purpose.",
    after: float = 1.0,
    progress_callback: ProgressCallback | None = None,
) -> None:
    """Get a third of the way, wait ``after`` seconds, then raise ``ValueError(message)``."""
    check_fail(message, after)
    _report(progress_callback, 0.33)
    await asyncio.sleep(after)
    raise ValueError(message)


@task("demo.slow")
async def slow(seconds: float = 60, progress_callback: ProgressCallback | None = None) -> float:
    """Sleep ``seconds`` in one-second steps, reporting progress: a task to try cancelling."""
    check_slow(seconds)
    loop = asyncio.get_running_loop()
    start = loop.time()
    while (elapsed := loop.time() - start) < seconds:
        _report(progress_callback, elapsed / seconds)
        await asyncio.sleep(min(1.0, seconds - elapsed))
    return seconds
