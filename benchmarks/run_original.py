"""The workloads on the original library, ``async_task_worker`` 0.4.4: an in-memory queue.

Its ``add_task`` needs a running worker, so there is no "enqueue with no worker" and no bulk
add. Its ``add_task`` never suspends (an uncontended ``asyncio.Lock`` and an unbounded
``asyncio.PriorityQueue``), so a loop of ``add_task`` calls runs to its end before any worker
coroutine gets the event loop: every task is queued before the first one starts, the same
starting point as django-atw's drain of tasks stored before ``start()``. The child checks
that no task ran during the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any

from async_task_worker import AsyncTaskWorker  # type: ignore[import-untyped]

from . import workloads
from .tasks import DRAIN, noop, sleep_for
from .workloads import DRAIN_WORKERS, Sizes


def _worker(max_workers: int = 10) -> AsyncTaskWorker:
    """A worker with the library's defaults, as a user would build it."""
    return AsyncTaskWorker(max_workers=max_workers)


async def enqueue_rate(sizes: Sizes) -> dict[str, float]:
    """W1a: ``add_task`` in a loop on a started worker (the only way to add tasks)."""
    worker = _worker()
    await worker.start()
    try:
        await workloads.warm_up(worker, sizes.warmup, sizes.limit)
        DRAIN.reset(sizes.enqueue_one)
        started = perf_counter()
        for _ in range(sizes.enqueue_one):
            await worker.add_task(noop)
        elapsed = perf_counter() - started
        if DRAIN.done:
            raise RuntimeError(f"{DRAIN.done} tasks ran while adding; the enqueue rate would be mixed")
        async with asyncio.timeout(sizes.limit):
            await DRAIN.all_done.wait()
    finally:
        await worker.stop()
    return {"enqueue_one": sizes.enqueue_one / elapsed}


async def drain_rate(sizes: Sizes, max_workers: int) -> dict[str, float]:
    """W1b: all tasks queued (without the worker running in between), then drained.

    The rate uses the first task's start and the last task's end, noted by the task itself.
    The wall rate adds the time of the ``add_task`` loop.
    """
    worker = _worker(max_workers)
    await worker.start()
    try:
        await workloads.warm_up(worker, sizes.warmup, sizes.limit)
        DRAIN.reset(sizes.drain)
        started = perf_counter()
        for _ in range(sizes.drain):
            await worker.add_task(noop)
        async with asyncio.timeout(sizes.limit):
            await DRAIN.all_done.wait()
        wall = perf_counter() - started
    finally:
        await worker.stop()
    return {
        f"drain_{max_workers}": sizes.drain / DRAIN.span(),
        f"drain_{max_workers}_wall": sizes.drain / wall,
    }


async def drain_waited(sizes: Sizes) -> dict[str, float]:
    """W1d: ``sizes.waited`` tasks added in a loop, then ``wait_for_tasks`` on all of them, with
    the poll interval the library's own tests use; timed from the first add."""
    worker = AsyncTaskWorker(max_workers=100, worker_poll_interval=0.01)
    await worker.start()
    try:
        await workloads.warm_up(worker, sizes.warmup, sizes.limit)
        started = perf_counter()
        ids = [await worker.add_task(noop) for _ in range(sizes.waited)]
        await worker.wait_for_tasks(ids, timeout=sizes.limit)
        elapsed = perf_counter() - started
    finally:
        await worker.stop()
    return {"drain_waited": sizes.waited / elapsed}


async def end_to_end_rate(sizes: Sizes) -> dict[str, float]:
    """W1c on a worker with the default ``max_workers`` (10)."""
    async with _worker() as worker:
        elapsed = await workloads.end_to_end(worker, sizes)
    return {"e2e": sizes.end_to_end / elapsed}


async def latency(sizes: Sizes) -> dict[str, float]:
    """W2 on an idle worker with the default ``max_workers`` (10)."""
    async with _worker() as worker:
        samples = await workloads.start_latencies(worker, sizes)
    return workloads.latency_metrics(samples)


async def sleepers(sizes: Sizes) -> dict[str, float]:
    """W3: ``add_task`` in a loop (no bulk add in this library), then wait for all."""
    async with _worker(sizes.sleepers_workers) as worker:

        async def add_many(sizes: Sizes) -> list[str]:
            return [await worker.add_task(sleep_for, sizes.sleep_seconds) for _ in range(sizes.sleepers)]

        elapsed = await workloads.sleepers(worker, add_many, sizes)
    return {"sleepers_s": elapsed}


def _in_loop(
    func: Callable[..., Coroutine[Any, Any, dict[str, float]]], *args: Any
) -> Callable[[], dict[str, float]]:
    """A step that runs ``func(*args)`` in a fresh event loop."""
    return lambda: asyncio.run(func(*args))


def steps(sizes: Sizes) -> list[tuple[str, Callable[[], dict[str, float]]]]:
    """Each workload as (name, function returning its metrics), in running order."""
    return [
        ("enqueue", _in_loop(enqueue_rate, sizes)),
        *[(f"drain_{mw}", _in_loop(drain_rate, sizes, mw)) for mw in DRAIN_WORKERS],
        ("drain_waited", _in_loop(drain_waited, sizes)),
        ("e2e", _in_loop(end_to_end_rate, sizes)),
        ("latency", _in_loop(latency, sizes)),
        ("sleepers", _in_loop(sleepers, sizes)),
    ]
