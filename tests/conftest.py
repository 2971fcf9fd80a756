from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from django_atw import AsyncTaskWorker
from tests.sampleapp import tasks as sample

T = TypeVar("T")


def _own_redis_database() -> None:
    """Under pytest-xdist each worker gets its own Redis database (the URL's number plus the
    worker's index): tests flush their database, and must not flush another worker's. Set in
    the environment, so the servers and workers a test starts use it too."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    url = os.environ.get("ATW_TEST_REDIS", "")
    if not (worker.startswith("gw") and url):
        return
    base, _, number = url.rpartition("/")
    os.environ["ATW_TEST_REDIS"] = f"{base}/{int(number or 0) + int(worker[2:])}"


_own_redis_database()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if settings.DATABASE_KIND == "postgres" and not os.environ.get("ATW_TEST_POSTGRES"):
        skip = pytest.mark.skip(
            reason="ATW_TEST_DATABASE=postgres needs ATW_TEST_POSTGRES=postgresql://user@host:port/db"
        )
        for item in items:
            item.add_marker(skip)


async def wait_until(
    read: Callable[[], Awaitable[T]], ready: Callable[[T], bool], timeout: float = 10.0
) -> T:
    """Re-read state that no event announces (a row another thread writes) until ``ready``.

    The timeout only turns a hang into a failure; the loop ends as soon as the state is there.
    """
    async with asyncio.timeout(timeout):
        while True:
            value = await read()
            if ready(value):
                return value
            await asyncio.sleep(0.005)


@pytest.fixture(autouse=True)
def _reset_sample_state() -> Iterator[None]:
    sample.gates.clear()
    sample.started.clear()
    sample.runs.clear()
    yield
    for event in sample.gates.values():
        event.set()


@pytest.fixture(autouse=True)
async def _close_sync_to_async_connections() -> AsyncIterator[None]:
    """Close the connections that sync_to_async's shared thread and django_atw's threads opened.

    pytest-django closes only the main thread's connection; a connection left open in another
    thread would keep PostgreSQL from dropping the test database.
    """
    yield
    await sync_to_async(connections.close_all)()
    from django_atw import adding, notifier

    # The threads of the group commit and of the notifier have connections of their own.
    await asyncio.to_thread(adding.close_group_connection)
    await asyncio.to_thread(notifier.NOTIFIER.close)


@pytest.fixture
async def make_worker() -> AsyncIterator[Callable[..., Any]]:
    """Start workers with test-friendly defaults; stop them all at the end of the test."""
    workers: list[AsyncTaskWorker] = []

    async def factory(**options: Any) -> AsyncTaskWorker:
        options.setdefault("worker_poll_interval", 0.2)
        options.setdefault("cleanup_interval", 0)
        worker = AsyncTaskWorker(**options)
        await worker.start()
        workers.append(worker)
        return worker

    yield factory
    for worker in workers:
        for event in sample.gates.values():
            event.set()
        await worker.stop(timeout=5)


@pytest.fixture
async def worker(make_worker: Callable[..., Any]) -> AsyncTaskWorker:
    started: AsyncTaskWorker = await make_worker(max_workers=5)
    return started
