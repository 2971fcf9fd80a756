"""Claiming ahead of free slots while runs are very short, and handing back what waits too long."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from django_atw import aenqueue, aenqueue_many, store
from django_atw.engine import pool as pool_module
from django_atw.models import TaskRecord
from django_atw.status import TaskStatus
from tests.conftest import wait_until
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 10.0  # seconds before a missing event fails the test (never reached when all is well)


@pytest.fixture
def claims(monkeypatch) -> list[int]:
    """How many tasks each claim asked for."""
    asked: list[int] = []
    claim_batch = store.claim_batch

    def counted(worker_id: str, queues: Any, limit: int) -> Any:
        asked.append(limit)
        return claim_batch(worker_id, queues, limit)

    monkeypatch.setattr(store, "claim_batch", counted)
    return asked


@pytest.fixture
def short_runs(monkeypatch) -> None:
    """Any measured run counts as short, and the lookahead is a whole claim batch: on a busy
    machine a no-op's measured run, and so what the pool claims ahead, varies."""
    monkeypatch.setattr(pool_module, "PREFETCH_RUN_LIMIT", 10.0)
    monkeypatch.setattr(pool_module, "PREFETCH_WAIT", 10.0)


async def _rows(**filters: Any) -> list[TaskRecord]:
    return await sync_to_async(lambda: list(TaskRecord.objects.filter(**filters)))()


async def test_short_runs_are_claimed_ahead_and_still_run_at_most_max_workers_at_once(
    make_worker, claims, short_runs
):
    """A claim per two free slots left the slots idle for each claim's round trip: a no-op
    drain with max_workers=10 ran at half the original library's pace on PostgreSQL."""
    worker = await make_worker(max_workers=2)
    await worker.wait_for_tasks([await worker.add_task(tasks.noop)], timeout=WAIT)  # a short run
    most = 0
    started = worker._pool._start

    def start(claim: Any) -> None:
        nonlocal most
        started(claim)
        most = max(most, len(worker.running_task_ids()))

    worker._pool._start = start
    ids = await aenqueue_many(tasks.noop, [() for _ in range(200)])
    assert await worker.wait_for_tasks(ids, timeout=WAIT) == [None] * 200
    assert max(claims) > 2, claims  # claimed beyond the two slots...
    assert most <= 2  # ...but never ran more than two at once


async def test_long_runs_are_not_claimed_ahead(make_worker, claims):
    worker = await make_worker(max_workers=2)
    ids = await aenqueue_many(tasks.sleep, [(pool_module.PREFETCH_RUN_LIMIT * 2,) for _ in range(10)])
    await worker.wait_for_tasks(ids, timeout=WAIT)
    assert max(claims) <= 2, claims


async def _claimed_ahead_behind_a_gate(make_worker: Callable[..., Any], gate: str) -> tuple[Any, list[str]]:
    """A one-slot worker whose slot a gated task holds, with noops claimed ahead behind it."""
    worker = await make_worker(max_workers=1)
    await worker.wait_for_tasks([await worker.add_task(tasks.noop)], timeout=WAIT)  # a short run
    await aenqueue(tasks.wait_for_gate, gate)
    async with asyncio.timeout(WAIT):
        await tasks.started_event(gate).wait()
    behind = await aenqueue_many(tasks.noop, [() for _ in range(5)])
    await wait_until(lambda: asyncio.sleep(0, worker._pool.waiting), lambda waiting: waiting == 5)
    return worker, behind


async def test_tasks_claimed_ahead_that_wait_too_long_go_back_for_another_worker(
    make_worker, monkeypatch, short_runs, caplog
):
    """Short runs followed by a long one: what was claimed ahead would wait for the long run,
    shown running under this worker, while others could run it."""
    monkeypatch.setattr(pool_module, "PREFETCH_HOLD", 0.5)
    caplog.set_level(logging.INFO, logger=pool_module.__name__)
    first, behind = await _claimed_ahead_behind_a_gate(make_worker, "hold")
    second = await make_worker(max_workers=1)
    try:
        done = await wait_until(
            lambda: _rows(id__in=behind, status=TaskStatus.COMPLETED.value), lambda rows: len(rows) == 5
        )
        assert {row.worker_id for row in done} == {second.worker_id}
        assert {row.attempts for row in done} == {1}  # handed back, not counted as an attempt
        assert first._pool.waiting == 0
        assert "handed back 5 tasks claimed ahead" in caplog.text
    finally:
        tasks.gate("hold").set()


async def test_a_stop_hands_back_the_tasks_claimed_ahead(make_worker, monkeypatch, short_runs):
    monkeypatch.setattr(pool_module, "PREFETCH_HOLD", 3600)
    worker, behind = await _claimed_ahead_behind_a_gate(make_worker, "stop")
    await worker.stop(timeout=0.1)  # the gated task is cancelled and handed back too
    rows = await _rows(id__in=behind)
    assert {(row.status, row.attempts, row.worker_id) for row in rows} == {
        (TaskStatus.PENDING.value, 0, None)
    }
