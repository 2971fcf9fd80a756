"""The workloads on django-atw. Import only after ``databases.setup_django``.

Each workload starts from an empty task table (``TRUNCATE`` on PostgreSQL, ``DELETE`` on
SQLite) and builds its workers with ``AsyncTaskWorker(max_workers=...)`` and the other
defaults, as a user would.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import functools
import pstats
import sys
import threading
from collections.abc import Callable
from time import perf_counter, process_time
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.db.models import Count, Max, Min

from django_atw import AsyncTaskWorker, aenqueue, enqueue, enqueue_many
from django_atw.models import TaskRecord
from django_atw.status import TaskStatus
from django_atw.store.thread import DatabaseThread

from . import workloads
from .tasks import DRAIN, noop, sleep_for
from .workloads import DRAIN_WORKERS, ENQUEUE_CALLERS, Sizes

UNFINISHED = [TaskStatus.PENDING.value, TaskStatus.RUNNING.value]
# How often the drain checks, once every task has run, that all outcomes are stored.
STORED_POLL = 0.002
# W1d's worker poll interval: what the original library's own tests use.
WAITED_POLL = 0.01


def clear_tasks() -> None:
    """Empty the task table, so each workload starts from the same state."""
    table = TaskRecord._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {table}")
        else:
            cursor.execute(f"DELETE FROM {table}")


def enqueue_rates(sizes: Sizes) -> dict[str, float]:
    """W1a: sync ``enqueue`` in a plain loop (no event loop, no worker), then one ``enqueue_many``."""
    clear_tasks()
    for _ in range(sizes.warmup):
        enqueue(noop)
    clear_tasks()
    started, cpu = perf_counter(), process_time()
    for _ in range(sizes.enqueue_one):
        enqueue(noop)
    one = sizes.enqueue_one / (perf_counter() - started)
    one_cpu = _cpu_us(process_time() - cpu, sizes.enqueue_one)
    clear_tasks()
    calls: list[tuple[()]] = [() for _ in range(sizes.enqueue_bulk)]
    started = perf_counter()
    enqueue_many(noop, calls)
    bulk = sizes.enqueue_bulk / (perf_counter() - started)
    clear_tasks()
    return {"enqueue_one": one, "enqueue_bulk": bulk, "enqueue_one_cpu_us": one_cpu}


def _cpu_us(seconds: float, tasks: int) -> float:
    """Microseconds of this process's CPU (every thread's) per task."""
    return seconds * 1e6 / tasks


def _check_stored(expected: int) -> None:
    stored = TaskRecord.objects.count()
    if stored != expected:
        raise RuntimeError(f"{stored} rows stored, expected {expected}")


def _threads_rate(threads: int, sizes: Sizes) -> tuple[float, float]:
    """Tasks/s of ``threads`` threads each calling ``enqueue(noop)`` in a loop, started together,
    and the process's CPU per task in microseconds.

    Each thread warms up (its connection) before the start; the clock runs from the start until
    the last thread has returned from its last call.
    """
    per_thread = sizes.enqueue_concurrent // threads
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            for _ in range(sizes.warmup):
                enqueue(noop)
            start.wait()
            for _ in range(per_thread):
                enqueue(noop)
        except BaseException as exc:
            errors.append(exc)
            start.abort()
        finally:
            connections.close_all()

    clear_tasks()
    callers = [threading.Thread(target=caller, name=f"enqueue-{i}") for i in range(threads)]
    for thread in callers:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a caller failed: errors says which
        start.wait()
    started, cpu = perf_counter(), process_time()
    for thread in callers:
        thread.join()
    elapsed, cpu = perf_counter() - started, process_time() - cpu
    if errors:
        raise errors[0]
    _check_stored(threads * (sizes.warmup + per_thread))
    return threads * per_thread / elapsed, _cpu_us(cpu, threads * per_thread)


async def _coroutines_rate(coroutines: int, sizes: Sizes) -> tuple[float, float]:
    """Tasks/s of ``coroutines`` coroutines on one loop each awaiting ``aenqueue(noop)`` in a
    loop, and the process's CPU per task in microseconds."""
    per_coroutine = sizes.enqueue_concurrent // coroutines

    async def caller(calls: int) -> None:
        for _ in range(calls):
            await aenqueue(noop)

    await asyncio.gather(*(caller(sizes.warmup) for _ in range(coroutines)))
    started, cpu = perf_counter(), process_time()
    await asyncio.gather(*(caller(per_coroutine) for _ in range(coroutines)))
    elapsed, cpu = perf_counter() - started, process_time() - cpu
    await sync_to_async(connections.close_all)()
    await sync_to_async(_check_stored)(coroutines * (sizes.warmup + per_coroutine))
    return coroutines * per_coroutine / elapsed, _cpu_us(cpu, coroutines * per_coroutine)


def concurrent_enqueue_rates(sizes: Sizes) -> dict[str, float]:
    """W1e: one task per call, ``sizes.enqueue_concurrent`` in all, by 1 thread, by
    ``ENQUEUE_CALLERS`` threads (sync ``enqueue``) and by as many coroutines (``aenqueue``)."""
    metrics: dict[str, float] = {}
    callers = ENQUEUE_CALLERS
    runs = {
        "enqueue_threads_1": lambda: _threads_rate(1, sizes),
        f"enqueue_threads_{callers}": lambda: _threads_rate(callers, sizes),
        f"aenqueue_coroutines_{callers}": lambda: asyncio.run(_coroutines_rate(callers, sizes)),
    }
    for name, run in runs.items():
        metrics[name], metrics[f"{name}_cpu_us"] = run()
        clear_tasks()
    return metrics


def _stored_span() -> tuple[int, float]:
    """Completed rows, and seconds from the first ``started_at`` to the last ``completed_at``."""
    row = TaskRecord.objects.filter(status=TaskStatus.COMPLETED.value).aggregate(
        count=Count("id"), first=Min("started_at"), last=Max("completed_at")
    )
    if not row["count"]:
        return 0, 0.0
    return row["count"], (row["last"] - row["first"]).total_seconds()


def _has_unfinished() -> bool:
    return TaskRecord.objects.filter(status__in=UNFINISHED).exists()


async def _wait_until_stored() -> None:
    """Poll until no task is pending or running, i.e. every outcome is committed."""
    has_unfinished = sync_to_async(_has_unfinished)
    while True:
        if not await has_unfinished():
            return
        await asyncio.sleep(STORED_POLL)


class ThreadProfiles:
    """cProfile on the event loop thread and on each database thread of one worker.

    cProfile only sees the thread that enables it, so a profiler is switched on inside each of
    the worker's ``DatabaseThread`` objects, found among its private attributes (``_db``, and
    ``_write_db`` where the engine writes on a connection of its own).
    """

    def __init__(self) -> None:
        self.loop = cProfile.Profile()
        self.threads: list[tuple[str, DatabaseThread, cProfile.Profile]] = []

    @staticmethod
    def database_threads(worker: AsyncTaskWorker) -> list[tuple[str, DatabaseThread]]:
        found: dict[int, tuple[str, DatabaseThread]] = {}
        runtime = getattr(worker, "_runtime", None)  # the engine's running parts, while started
        for owner in (worker, runtime) if runtime is not None else (worker,):
            for name, value in vars(owner).items():
                if isinstance(value, DatabaseThread):
                    found.setdefault(id(value), (name, value))
        return list(found.values())

    async def attach(self, worker: AsyncTaskWorker) -> None:
        """Enable a profiler on each database thread, claims' thread first (call right after start)."""
        for name, thread in self.database_threads(worker):
            profile = cProfile.Profile()
            await thread.run(profile.enable)
            self.threads.append((name, thread, profile))

    async def detach(self) -> None:
        self.loop.disable()
        for _, thread, profile in self.threads:
            await thread.run(profile.disable)

    def titled(self) -> list[tuple[str, cProfile.Profile]]:
        return [("event loop thread", self.loop)] + [
            (f"database thread (worker.{name})", profile) for name, _, profile in self.threads
        ]


async def _drain(sizes: Sizes, max_workers: int, profiles: ThreadProfiles | None = None) -> float:
    """Start a worker on the stored tasks; return seconds from ``start()`` until all are stored."""
    DRAIN.reset(sizes.drain)
    worker = AsyncTaskWorker(max_workers=max_workers)
    if profiles:
        profiles.loop.enable()
    started = perf_counter()
    await worker.start()
    try:
        if profiles:
            await profiles.attach(worker)
        async with asyncio.timeout(sizes.limit):
            await DRAIN.all_done.wait()
            if profiles:
                await profiles.detach()
            await _wait_until_stored()
        wall = perf_counter() - started
    finally:
        await worker.stop()
        await sync_to_async(connections.close_all)()
    return wall


def _stored_tasks_for_drain(sizes: Sizes) -> None:
    clear_tasks()
    enqueue_many(noop, [() for _ in range(sizes.drain)])


def _drain_metrics(sizes: Sizes, max_workers: int, wall: float) -> dict[str, float]:
    count, span = _stored_span()
    if count != sizes.drain:
        raise RuntimeError(f"drain finished with {count} completed rows, expected {sizes.drain}")
    return {
        f"drain_{max_workers}": sizes.drain / span,
        f"drain_{max_workers}_wall": sizes.drain / wall,
        f"drain_{max_workers}_in_task": sizes.drain / DRAIN.span(),
    }


def drain_rate(sizes: Sizes, max_workers: int) -> dict[str, float]:
    """W1b: ``sizes.drain`` tasks stored before the worker starts, then drained.

    The rate uses the stored timestamps: the first ``started_at`` (set when claimed) to the
    last ``completed_at`` (set when the task returned). The wall rate runs from ``start()``
    until every outcome is committed; the in-task rate from the first task's first line to
    the last task's last line, noted in memory.
    """
    _stored_tasks_for_drain(sizes)
    wall = asyncio.run(_drain(sizes, max_workers))
    metrics = _drain_metrics(sizes, max_workers, wall)
    clear_tasks()
    return metrics


async def _drain_waited(sizes: Sizes, wait: bool) -> float:
    """Drain ``sizes.waited`` stored tasks on a worker polling every ``WAITED_POLL`` seconds;
    with ``wait``, a caller awaits all of them with ``wait_for_tasks``. Returns the wall time."""
    ids = await sync_to_async(enqueue_many)(noop, [() for _ in range(sizes.waited)])
    DRAIN.reset(sizes.waited)
    worker = AsyncTaskWorker(max_workers=100, worker_poll_interval=WAITED_POLL)
    started = perf_counter()
    await worker.start()
    try:
        async with asyncio.timeout(sizes.limit):
            if wait:
                await worker.wait_for_tasks(ids)
            else:
                await DRAIN.all_done.wait()
                await _wait_until_stored()
        return perf_counter() - started
    finally:
        await worker.stop()
        await sync_to_async(connections.close_all)()


def drain_waited(sizes: Sizes) -> dict[str, float]:
    """W1d: the drain of ``sizes.waited`` tasks while ``wait_for_tasks`` awaits them all, beside
    the same drain unwatched (both with the short poll interval the original's tests use)."""
    clear_tasks()
    alone = sizes.waited / asyncio.run(_drain_waited(sizes, wait=False))
    clear_tasks()
    waited = sizes.waited / asyncio.run(_drain_waited(sizes, wait=True))
    clear_tasks()
    return {"drain_unwatched": alone, "drain_waited": waited}


async def _end_to_end(sizes: Sizes) -> dict[str, float]:
    async with AsyncTaskWorker() as worker:
        elapsed = await workloads.end_to_end(worker, sizes)
    return {"e2e": sizes.end_to_end / elapsed}


async def _latency(sizes: Sizes) -> dict[str, float]:
    async with AsyncTaskWorker() as worker:
        samples = await workloads.start_latencies(worker, sizes)
    return workloads.latency_metrics(samples)


async def _sleepers(sizes: Sizes) -> dict[str, float]:
    async with AsyncTaskWorker(max_workers=sizes.sleepers_workers) as worker:

        async def add_many(sizes: Sizes) -> list[str]:
            return await worker.add_tasks(sleep_for, [(sizes.sleep_seconds,)] * sizes.sleepers)

        elapsed = await workloads.sleepers(worker, add_many, sizes)
    return {"sleepers_s": elapsed}


def _on_empty_table(func: Callable[[Sizes], Any], sizes: Sizes) -> Callable[[], dict[str, float]]:
    """A step that empties the table, then runs ``func(sizes)`` in a fresh event loop."""

    def step() -> dict[str, float]:
        clear_tasks()
        metrics: dict[str, float] = asyncio.run(func(sizes))
        return metrics

    return step


def steps(sizes: Sizes) -> list[tuple[str, Callable[[], dict[str, float]]]]:
    """Each workload as (name, function returning its metrics), in running order."""
    return [
        ("enqueue", functools.partial(enqueue_rates, sizes)),
        ("enqueue_concurrent", functools.partial(concurrent_enqueue_rates, sizes)),
        *[(f"drain_{mw}", functools.partial(drain_rate, sizes, mw)) for mw in DRAIN_WORKERS],
        ("drain_waited", functools.partial(drain_waited, sizes)),
        ("e2e", _on_empty_table(_end_to_end, sizes)),
        ("latency", _on_empty_table(_latency, sizes)),
        ("sleepers", _on_empty_table(_sleepers, sizes)),
    ]


def _short_path(path: str) -> str:
    """``.../site-packages/django/db/x.py`` -> ``django/db/x.py``; the same for src/ and the stdlib."""
    for marker in ("/site-packages/", "/src/", f"/python{sys.version_info[0]}.{sys.version_info[1]}/"):
        if marker in path:
            return path.rsplit(marker, 1)[1]
    return path


def _shorten_paths(stats: pstats.Stats) -> pstats.Stats:
    """Like ``strip_dirs()``, but keep the package path: ``pool.py`` alone could be asyncio's or ours."""

    def short(func: tuple[str, int, str]) -> tuple[str, int, str]:
        return _short_path(func[0]), func[1], func[2]

    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    stats.stats = {  # type: ignore[attr-defined]
        short(func): (cc, nc, tt, ct, {short(caller): value for caller, value in callers.items()})
        for func, (cc, nc, tt, ct, callers) in table.items()
    }
    stats.top_level = {short(func) for func in stats.top_level}  # type: ignore[attr-defined]
    stats.fcn_list = None  # type: ignore[attr-defined]
    return stats


def profile_drain(sizes: Sizes, max_workers: int = 100, top: int = 30) -> None:
    """Run the drain once under cProfile and print the top functions of both threads."""
    _stored_tasks_for_drain(sizes)
    profiles = ThreadProfiles()
    wall = asyncio.run(_drain(sizes, max_workers, profiles))
    metrics = _drain_metrics(sizes, max_workers, wall)
    out = sys.stdout
    out.write(
        f"drain of {sizes.drain} no-op tasks, max_workers={max_workers}, {connection.vendor}, "
        f"under cProfile: {metrics[f'drain_{max_workers}']:,.0f} tasks/s (stored timestamps), "
        f"{metrics[f'drain_{max_workers}_wall']:,.0f} tasks/s (wall)\n"
    )
    for title, profile in profiles.titled():
        for order in ("cumulative", "tottime"):
            out.write(f"\n===== {title}: top {top} by {order} =====\n")
            _shorten_paths(pstats.Stats(profile, stream=out)).sort_stats(order).print_stats(top)
    clear_tasks()
