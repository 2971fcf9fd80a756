"""The result cache's hit path on each cache backend, beside an uncached no-op on the same backend.

Import only after ``databases.setup_django``. For each backend (memory, database, django: a
``CACHES["atw"]`` alias, Redis when ``ATW_BENCH_REDIS`` is set, else local memory) one worker
runs with ``cache_enabled=True``; ``sizes.latency`` tasks of each kind are added one at a time,
the kinds alternating, and each is timed from ``add_task`` until its future resolves (task
stored as completed):

- ``cache_hit_<backend>_p50_ms`` / ``_p99_ms``: a ``noop`` whose result is cached, so it
  completes from the cache without being called;
- ``uncached_<backend>_p50_ms`` / ``_p99_ms``: the same ``noop`` with ``use_cache=False``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter

from asgiref.sync import sync_to_async
from django.db import connections

from django_atw import AsyncCacheAdapter, AsyncTaskWorker

from .run_atw import clear_tasks
from .tasks import noop
from .workloads import Sizes

BACKENDS = ("memory", "database", "django")


def _percentiles(prefix: str, samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def cut(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] * 1000

    return {f"{prefix}_p50_ms": cut(0.50), f"{prefix}_p99_ms": cut(0.99)}


async def _timed(worker: AsyncTaskWorker, *, use_cache: bool) -> float:
    started = perf_counter()
    task_id = await worker.add_task(noop, use_cache=use_cache)
    await (await worker.get_task_future(task_id))
    return perf_counter() - started


async def _cache_paths(backend: str, sizes: Sizes) -> dict[str, float]:
    adapter = AsyncCacheAdapter(backend=backend, max_size=1000)
    await adapter.clear()
    try:
        async with AsyncTaskWorker(cache_enabled=True, cache_adapter=adapter) as worker:
            await _timed(worker, use_cache=True)  # the first run stores the entry
            for _ in range(sizes.warmup):
                await _timed(worker, use_cache=True)
                await _timed(worker, use_cache=False)
            hits, plain = [], []
            # Interleaved, so a drift in machine load weighs on both alike.
            for _ in range(sizes.latency):
                hits.append(await _timed(worker, use_cache=True))
                plain.append(await _timed(worker, use_cache=False))
        stored = await worker.get_all_tasks(limit=1)
        if stored and stored[0].from_cache:
            raise RuntimeError("an uncached task was completed from the cache")
    finally:
        await adapter.clear()
        await sync_to_async(connections.close_all)()
    return {**_percentiles(f"cache_hit_{backend}", hits), **_percentiles(f"uncached_{backend}", plain)}


def _step(backend: str, sizes: Sizes) -> Callable[[], dict[str, float]]:
    def step() -> dict[str, float]:
        clear_tasks()
        metrics = asyncio.run(_cache_paths(backend, sizes))
        clear_tasks()
        return metrics

    return step


def steps(sizes: Sizes) -> list[tuple[str, Callable[[], dict[str, float]]]]:
    """One step per cache backend, named ``cache_<backend>``."""
    return [(f"cache_{backend}", _step(backend, sizes)) for backend in BACKENDS]
