"""The benchmark's task functions, shared by django-atw and the original library.

They are registered with django-atw's ``@task`` (so a worker finds them by name) and are plain
async functions for the original library. Each records what the benchmark needs in process
memory: ``DRAIN`` counts finished calls and keeps the first start and the last end;
``STARTS`` keeps the moment a latency probe started. One process runs one event loop at a
time, so no locking is needed.
"""

from __future__ import annotations

import asyncio
from time import perf_counter

from django_atw import task


class DrainProbe:
    """Counts finished ``noop`` calls and signals when the expected number is reached."""

    def __init__(self) -> None:
        self.reset(0)

    def reset(self, expected: int) -> None:
        """Start counting afresh; call inside the event loop that will wait on ``all_done``."""
        self.expected = expected
        self.done = 0
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.all_done = asyncio.Event()
        if expected <= 0:
            self.all_done.set()

    def span(self) -> float:
        """Seconds from the first call's start to the last call's end."""
        assert self.first_start is not None and self.last_end is not None, "no task ran"
        return self.last_end - self.first_start


DRAIN = DrainProbe()


class StartProbe:
    """The ``perf_counter`` at which each ``record_start`` call began, by token."""

    def __init__(self) -> None:
        self.starts: dict[str, float] = {}
        self._events: dict[str, asyncio.Event] = {}

    def expect(self, token: str) -> asyncio.Event:
        """Return an event set when the task carrying ``token`` starts."""
        event = self._events[token] = asyncio.Event()
        return event

    def started(self, token: str) -> None:
        self.starts[token] = perf_counter()
        event = self._events.pop(token, None)
        if event is not None:
            event.set()


STARTS = StartProbe()


@task("bench.noop")
async def noop() -> None:
    """Do nothing but note the time: the cost measured is the queue's, not the task's."""
    now = perf_counter()
    probe = DRAIN
    if probe.first_start is None:
        probe.first_start = now
    probe.done += 1
    probe.last_end = now
    if probe.done == probe.expected:
        probe.all_done.set()


@task("bench.record_start")
async def record_start(token: str) -> None:
    """Note when this task started, for the enqueue-to-start latency."""
    STARTS.started(token)


@task("bench.sleep")
async def sleep_for(seconds: float) -> None:
    """Wait without using the CPU, like a task waiting on I/O."""
    await asyncio.sleep(seconds)
