"""Wake the workers of this process when a task is added, from any thread.

Cross-process wake-ups (PostgreSQL NOTIFY, channel-layer messages) build on this later;
until then other processes find new tasks at their poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable, Iterable


class _Listener:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        queues: frozenset[str],
        wake: Callable[[], None],
        cancel: Callable[[str], object],
    ) -> None:
        self.loop = loop
        self.queues = queues
        self.wake = wake
        self.cancel = cancel


_lock = threading.Lock()
_listeners: weakref.WeakKeyDictionary[object, _Listener] = weakref.WeakKeyDictionary()


def listen(
    owner: object, queues: Iterable[str], wake: Callable[[], None], cancel: Callable[[str], object]
) -> None:
    """On the running loop, call ``wake`` when a task is added to one of ``queues``, and
    ``cancel(task_id)`` when a cancel is requested for a running task."""
    with _lock:
        _listeners[owner] = _Listener(asyncio.get_running_loop(), frozenset(queues), wake, cancel)


def unlisten(owner: object) -> None:
    with _lock:
        _listeners.pop(owner, None)


def notify(queues: Iterable[str]) -> None:
    """Tell local workers serving any of ``queues`` that tasks were added."""
    added = set(queues)
    for listener in _snapshot():
        if listener.queues & added:
            _call(listener.loop, listener.wake)


def notify_cancel(task_id: str) -> None:
    """Tell local workers that ``task_id`` should be cancelled if it runs there."""
    for listener in _snapshot():
        _call(listener.loop, listener.cancel, task_id)


def _snapshot() -> list[_Listener]:
    with _lock:
        return list(_listeners.values())


def _call(loop: asyncio.AbstractEventLoop, func: Callable[..., object], *args: object) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        func(*args)
    elif not loop.is_closed():
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(func, *args)


def local_worker_count() -> int:
    """Return how many workers run in this process (the health endpoint reports it)."""
    return len(_snapshot())
