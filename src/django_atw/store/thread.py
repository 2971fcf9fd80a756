"""Run store functions on one thread that owns the worker's database connection."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import close_old_connections, connections
from django.db.utils import InterfaceError, OperationalError

P = ParamSpec("P")
R = TypeVar("R")


class DatabaseThread:
    """A single thread, and so a single connection, for one worker's queries.

    A worker's claims and writes must not queue behind the web requests that share Django's
    ``sync_to_async`` thread, and one connection keeps its prepared state between calls.
    Calls run one at a time, in submission order.
    """

    def __init__(self, name: str) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``func`` on the database thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(_guarded, func, *args, **kwargs))

    async def close(self) -> None:
        """Close the thread's connections and stop the thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, connections.close_all)
        self._executor.shutdown(wait=False)


def _guarded(func: Callable[..., R], *args: object, **kwargs: object) -> R:
    try:
        return func(*args, **kwargs)
    except (InterfaceError, OperationalError):
        # A dropped connection stays broken; let Django discard it so the next call reconnects.
        close_old_connections()
        for conn in connections.all(initialized_only=True):
            if conn.connection is not None and not conn.is_usable():
                conn.close()
        raise
