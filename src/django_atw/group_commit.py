"""Group commit: the work of callers that arrive together done by one of them, in one transaction.

A caller that finds nothing in progress leads at once: it executes its own request on its own
thread and connection, so a lone caller pays no thread hop and no wait. Callers that arrive
while a batch executes queue up; when the batch is done, its leader hands every queued request
(up to ``max_rows``) to the first queued thread, which executes them as the next batch on its
connection while the others wait for their outcome. So commits never overlap within a process,
and each costs its batch one round trip and one commit instead of one per caller.

Coroutines cannot lead (a database call would block their loop): a batch with no thread in it
is executed by the group's own thread, on a connection of its own, and each coroutine awaits a
future. ``execute`` returns one outcome per request, a result or the exception to raise in its
caller, so one bad request fails only its own caller.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

from django.db import connections

T = TypeVar("T")
R = TypeVar("R")

# Seconds the group's own thread may leave its connection unused before checking, ahead of the
# next batch, that the server still has it (a restart or an idle timeout would fail the batch).
IDLE_CHECK = 5.0


class _Request(Generic[T, R]):
    __slots__ = ("batch", "can_lead", "done", "future", "item", "loop", "outcome", "rows")

    def __init__(self, item: T, rows: int) -> None:
        self.item = item
        self.rows = rows
        self.outcome: R | BaseException | None = None
        # A waiting thread's event: set when the outcome is in, or when it is to lead ``batch``.
        self.done: threading.Event | None = None
        self.batch: list[_Request[T, R]] | None = None
        self.can_lead = False
        # An awaiting coroutine's loop and future.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future[R] | None = None

    def settle(self, outcome: R | BaseException) -> None:
        self.outcome = outcome
        if self.done is not None:
            self.done.set()
        elif self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody awaits it
                self.loop.call_soon_threadsafe(self._settle_future, outcome)

    def _settle_future(self, outcome: R | BaseException) -> None:
        assert self.future is not None
        if self.future.done():  # the awaiting coroutine was cancelled
            return
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)

    def result(self) -> R:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return cast(R, self.outcome)


class GroupCommit(Generic[T, R]):
    """Run ``execute(items)`` over the requests of concurrent callers, one batch at a time.

    ``execute`` runs on the leading caller's thread (or the group's own thread) and must
    return, in order, one result or exception per item; an exception it raises fails the
    whole batch. ``rows`` of a request bounds how many go into one batch (``max_rows``; a
    larger request goes alone).
    """

    def __init__(
        self, execute: Callable[[list[T]], Sequence[R | BaseException]], *, max_rows: int, name: str
    ) -> None:
        self._execute = execute
        self._max_rows = max_rows
        self._name = name
        self._reset()
        if hasattr(os, "register_at_fork"):
            # A forked child has none of the parent's threads: whatever they held is gone.
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._queued: collections.deque[_Request[T, R]] = collections.deque()
        self._busy = False  # a batch executes; any queued request waits for the next one
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._last_used = 0.0

    def run(self, item: T, rows: int = 1) -> R:
        """Have ``item`` executed, by this thread or with a batch led by another; its outcome."""
        request: _Request[T, R] = _Request(item, rows)
        with self._lock:
            if self._busy:
                request.done = threading.Event()
                request.can_lead = True
                self._queued.append(request)
                batch = None
            else:
                self._busy = True
                batch = [request]
        if batch is None:
            batch = self._follow(request)
            if batch is None:
                return request.result()
        self._lead(batch)
        return request.result()

    async def arun(self, item: T, rows: int = 1) -> R:
        """``run`` for a coroutine: the batch runs on another thread and this awaits its outcome."""
        loop = asyncio.get_running_loop()
        request: _Request[T, R] = _Request(item, rows)
        request.loop = loop
        future: asyncio.Future[R] = loop.create_future()
        request.future = future
        with self._lock:
            lead = not self._busy
            if lead:
                self._busy = True
            else:
                self._queued.append(request)
        if lead:
            self._submit([request])
        return await future

    def close(self) -> None:
        """Close the group's own thread's connections and end the thread (a later batch restarts it)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.submit(connections.close_all).result()
            thread.shutdown(wait=True)

    def _follow(self, request: _Request[T, R]) -> list[_Request[T, R]] | None:
        """Wait for the outcome, or for a batch to lead (returned)."""
        assert request.done is not None
        try:
            request.done.wait()
        except BaseException:
            # Interrupted (KeyboardInterrupt): never leave a batch handed to this thread unled.
            with self._lock:
                request.can_lead = False
                batch, request.batch = request.batch, None
            if batch is not None:
                self._submit(batch)
            raise
        return request.batch

    def _lead(self, batch: list[_Request[T, R]]) -> None:
        try:
            outcomes: Sequence[R | BaseException] = self._execute([request.item for request in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{self._name}: {len(outcomes)} outcomes for {len(batch)} requests")
        except BaseException as exc:
            outcomes = [exc] * len(batch)
        following = leader = None
        with self._lock:
            if self._queued:
                following = self._take()
                leader = next((request for request in following if request.can_lead), None)
                if leader is not None:
                    leader.batch = following
            else:
                self._busy = False
        if following is not None:
            if leader is not None:
                assert leader.done is not None
                leader.done.set()
            else:
                self._submit(following)
        for request, outcome in zip(batch, outcomes, strict=True):
            request.settle(outcome)

    def _take(self) -> list[_Request[T, R]]:
        """The queued requests of the next batch: in arrival order, up to ``max_rows`` (at least one)."""
        batch = [self._queued.popleft()]
        rows = batch[0].rows
        while self._queued and rows + self._queued[0].rows <= self._max_rows:
            request = self._queued.popleft()
            rows += request.rows
            batch.append(request)
        return batch

    def _submit(self, batch: list[_Request[T, R]]) -> None:
        """Have the group's own thread lead ``batch`` (no thread of a caller can)."""
        with self._lock:  # so that close() never shuts the thread down between these two lines
            if self._thread is None:
                self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=self._name)
            self._thread.submit(self._lead_here, batch)

    def _lead_here(self, batch: list[_Request[T, R]]) -> None:
        if time.monotonic() - self._last_used > IDLE_CHECK:
            drop_dead_connections()
        try:
            self._lead(batch)
        finally:
            self._last_used = time.monotonic()


def drop_dead_connections() -> None:
    """Close this thread's connections that no longer work (outside a transaction); the next
    query reconnects. For a long-lived thread, where no request cycle does it."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block and not conn.is_usable():
            conn.close()
