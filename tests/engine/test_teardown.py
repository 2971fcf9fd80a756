"""A start or stop that fails half-way leaves nothing running; a part that dies stops the worker."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from django_atw import AsyncCacheAdapter, AsyncTaskWorker, TaskStatus, aget_task_info
from django_atw.engine.pool import WorkerPool
from django_atw.models import WorkerProcess
from tests.conftest import wait_until
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def live_parts(worker_id: str) -> tuple[list[str], list[str]]:
    """The worker's threads still alive and its asyncio tasks still running, by name."""
    threads = [t.name for t in threading.enumerate() if worker_id in t.name]
    running = [t.get_name() for t in asyncio.all_tasks() if worker_id in t.get_name() and not t.done()]
    return threads, running


async def assert_nothing_left(worker_id: str) -> None:
    # Executor threads exit once their queue is drained: wait for that, not a fixed time.
    await wait_until(lambda: _async(live_parts(worker_id)), lambda parts: parts == ([], []), timeout=5)
    row = await WorkerProcess.objects.aget(id=worker_id)
    assert row.stopped_at is not None, "the worker row must be marked stopped"


async def _async(value):
    return value


class FailingCleanupAdapter(AsyncCacheAdapter):
    """A cache whose cleanup cannot start: the last step of a worker's start fails."""

    async def start_cleanup_task(self) -> None:
        raise RuntimeError("cache cleanup cannot start")


async def test_a_start_that_fails_half_way_stops_everything_it_started():
    worker = AsyncTaskWorker(cache_enabled=True, cache_adapter=FailingCleanupAdapter(enabled=True))
    with pytest.raises(RuntimeError, match="cache cleanup cannot start"):
        await worker.start()
    assert not worker.running
    await assert_nothing_left(worker.worker_id)


async def test_a_stop_whose_drain_raises_still_stops_every_part(monkeypatch):
    worker = AsyncTaskWorker(cleanup_interval=0)
    await worker.start()

    async def broken_drain(self: WorkerPool, timeout: float) -> list[str]:
        raise RuntimeError("drain failed")

    monkeypatch.setattr(WorkerPool, "drain", broken_drain)
    with pytest.raises(RuntimeError, match="drain failed"):
        await worker.stop()
    assert not worker.running
    await assert_nothing_left(worker.worker_id)


async def test_a_side_task_that_dies_stops_the_worker_loudly(make_worker, caplog):
    worker = await make_worker(max_workers=2)

    def broken(outcomes) -> None:
        raise RuntimeError("futures are broken")

    worker._on_committed = broken  # the writer calls it after each commit: its loop dies
    worker._runtime.writer._on_committed = broken
    with caplog.at_level(logging.CRITICAL, logger="django_atw"):
        task_id = await worker.add_task(tasks.echo, "x")
        async with asyncio.timeout(10):
            failure = await worker.wait_failed()
        assert isinstance(failure, RuntimeError)
        await wait_until(lambda: _async(worker.running), lambda running: not running, timeout=10)
    assert any("died" in record.getMessage() and "writer" in record.getMessage() for record in caplog.records)
    await assert_nothing_left(worker.worker_id)
    # The outcome was committed before the callback failed: nothing is lost.
    assert (await aget_task_info(task_id)).status is TaskStatus.COMPLETED
