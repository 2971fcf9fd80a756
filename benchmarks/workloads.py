"""Workload sizes and the workloads both libraries run the same way, through a started worker.

Nothing here imports Django: the original library's child process uses it too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import statistics
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any, Protocol

from .tasks import DRAIN, STARTS, noop, record_start


@dataclasses.dataclass(frozen=True, slots=True)
class Sizes:
    """How many tasks each workload uses."""

    enqueue_one: int = 2_000  # W1a: tasks added one call at a time
    enqueue_bulk: int = 5_000  # W1a: tasks added in one bulk call
    enqueue_concurrent: int = 8_000  # W1e: tasks added one per call, by several callers at once
    drain: int = 5_000  # W1b: tasks waiting before the worker starts
    waited: int = 20_000  # W1d: tasks drained while wait_for_tasks awaits them all
    end_to_end: int = 2_000  # W1c: tasks added one by one to a running worker
    latency: int = 200  # W2: tasks added one at a time to an idle worker
    sleepers: int = 1_000  # W3: tasks that sleep
    sleep_seconds: float = 0.1  # W3: how long each sleeps
    sleepers_workers: int = 100  # W3: max_workers
    warmup: int = 20  # tasks run before each timed workload (connections, caches)
    limit: float = 600.0  # seconds any one workload may take before it counts as failed

    @property
    def sleepers_ideal(self) -> float:
        """W3's wall time with zero overhead: full waves of ``sleepers_workers`` tasks."""
        return math.ceil(self.sleepers / self.sleepers_workers) * self.sleep_seconds


FULL = Sizes()
QUICK = Sizes(
    enqueue_one=200,
    enqueue_bulk=500,
    enqueue_concurrent=800,
    drain=500,
    waited=1_000,
    end_to_end=200,
    latency=30,
    sleepers=200,
    warmup=5,
    limit=120.0,
)

# max_workers for the drain workload: 100, and the default of both libraries.
DRAIN_WORKERS = (100, 10)
# W1e: how many threads (sync ``enqueue``) or coroutines (``aenqueue``) add tasks at once.
ENQUEUE_CALLERS = 8


class Worker(Protocol):
    """What the shared workloads use of either library's ``AsyncTaskWorker``."""

    async def add_task(self, task_func: Callable[..., Awaitable[Any]], *args: Any) -> str: ...

    async def wait_for_tasks(self, task_ids: list[str], timeout: float | None = None) -> list[Any]: ...


async def warm_up(worker: Worker, count: int, limit: float) -> None:
    """Run ``count`` no-op tasks so connections and lazy imports are ready before timing."""
    ids = [await worker.add_task(noop) for _ in range(count)]
    await worker.wait_for_tasks(ids, timeout=limit)


async def end_to_end(worker: Worker, sizes: Sizes) -> float:
    """W1c: seconds from the first ``add_task`` until all ``sizes.end_to_end`` tasks are done."""
    await warm_up(worker, sizes.warmup, sizes.limit)
    DRAIN.reset(sizes.end_to_end)
    started = perf_counter()
    ids = [await worker.add_task(noop) for _ in range(sizes.end_to_end)]
    await worker.wait_for_tasks(ids, timeout=sizes.limit)
    return perf_counter() - started


async def start_latencies(worker: Worker, sizes: Sizes) -> list[float]:
    """W2: seconds from just before ``add_task`` to the task's first line, one task at a time.

    The worker is idle at each add: the next task is added only after the previous one is done
    (its outcome stored). The start is awaited in memory before asking for the task's future,
    so the measurement does not include that request's database read.
    """
    samples: list[float] = []
    for i in range(sizes.warmup + sizes.latency):
        token = f"latency-{i}"
        has_started = STARTS.expect(token)
        before = perf_counter()
        task_id = await worker.add_task(record_start, token)
        async with asyncio.timeout(sizes.limit):
            await has_started.wait()
        await worker.wait_for_tasks([task_id], timeout=sizes.limit)
        start = STARTS.starts.pop(token)
        if i >= sizes.warmup:
            samples.append(start - before)
    return samples


async def sleepers(worker: Worker, add_many: Callable[[Sizes], Awaitable[list[str]]], sizes: Sizes) -> float:
    """W3: seconds from adding ``sizes.sleepers`` sleeping tasks until all are done."""
    await warm_up(worker, sizes.warmup, sizes.limit)
    started = perf_counter()
    ids = await add_many(sizes)
    await worker.wait_for_tasks(ids, timeout=sizes.limit)
    return perf_counter() - started


def latency_metrics(samples: Sequence[float]) -> dict[str, float]:
    """p50, p95 and p99 of latency samples (seconds), in milliseconds."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "latency_p50_ms": cuts[49] * 1000,
        "latency_p95_ms": cuts[94] * 1000,
        "latency_p99_ms": cuts[98] * 1000,
    }
