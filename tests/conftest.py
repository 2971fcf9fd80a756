from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from django.conf import settings

from django_atw import AsyncTaskWorker
from tests.sampleapp import tasks as sample


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if settings.DATABASE_KIND == "postgres" and not os.environ.get("ATW_TEST_POSTGRES"):
        skip = pytest.mark.skip(
            reason="ATW_TEST_DATABASE=postgres needs ATW_TEST_POSTGRES=postgresql://user@host:port/db"
        )
        for item in items:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _reset_sample_state() -> Iterator[None]:
    sample.gates.clear()
    sample.started.clear()
    sample.runs.clear()
    yield
    for event in sample.gates.values():
        event.set()


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
