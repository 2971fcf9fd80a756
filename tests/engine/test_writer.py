"""The outcome writer: what it does when the database refuses an outcome of a batch."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from django_atw import aget_task_info, enqueue_many, store
from django_atw.engine import writer as writer_module
from django_atw.engine.executor import ProgressTracker
from django_atw.engine.writer import OutcomeWriter
from django_atw.models import TaskRecord
from django_atw.status import TaskStatus
from django_atw.store import Outcome
from django_atw.store.thread import DatabaseThread
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
PG_ONLY = pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite stores it as it is")

# Outcomes whose values the database refuses, and which part of the outcome that is.
FAILED, PENDING, COMPLETED = TaskStatus.FAILED, TaskStatus.PENDING, TaskStatus.COMPLETED
NUL_JSON = json.dumps("a\x00b")
REFUSED = [
    pytest.param({"status": FAILED, "error": "a\ud800b"}, "error", id="surrogate-in-error"),
    pytest.param({"status": PENDING, "traceback": "a\ud800b"}, "error", id="surrogate-in-retry"),
    pytest.param({"status": COMPLETED, "result_json": NUL_JSON}, "result", id="nul-in-result", marks=PG_ONLY),
    pytest.param({"status": FAILED, "error": "a\x00b"}, "error", id="nul-in-error", marks=PG_ONLY),
    pytest.param({"status": FAILED, "error_type": "E" * 256}, "error", id="long-type", marks=PG_ONLY),
]


@pytest.fixture
async def claimed() -> dict[str, int]:
    """Four tasks claimed by worker "w": their attempt numbers by id, in claim order."""
    await sync_to_async(store.register_worker)("w", "host", 1, ["default"], 4)
    await sync_to_async(enqueue_many)("noop", [(), (), (), ()])
    claims = await sync_to_async(store.claim_batch)("w", ["default"], 4)
    return {claim.id: claim.attempts for claim in claims}


@pytest.mark.parametrize(("refused", "part"), REFUSED)
async def test_an_outcome_the_database_refuses_is_stored_failed_and_the_rest_of_the_batch_is_stored(
    claimed, refused, part
):
    first, bad, last, running = claimed
    committed: list[Outcome] = []
    writer: OutcomeWriter | None = None
    tracker = ProgressTracker(lambda: writer.progress_changed() if writer is not None else None)
    db = DatabaseThread("test-writer")
    writer = OutcomeWriter(db, "w", tracker, 0.01, 0.01, on_committed=committed.extend)

    def done(task_id: str) -> Outcome:
        return Outcome(task_id, TaskStatus.COMPLETED, 1.0, result_json="1", attempt=claimed[task_id])

    writer.start()
    try:
        for outcome in (done(first), Outcome(bad, progress=0.5, attempt=claimed[bad], **refused), done(last)):
            writer.submit(outcome)
        async with asyncio.timeout(10):
            await writer.flush()

        assert [(o.task_id, o.status) for o in committed] == [
            (first, TaskStatus.COMPLETED),
            (bad, TaskStatus.FAILED),
            (last, TaskStatus.COMPLETED),
        ]
        info = await aget_task_info(bad)
        assert (info.status, info.error_type) == (TaskStatus.FAILED, "OutcomeStorageError")
        assert info.error.startswith(f"The task's {part} could not be stored: the database refused it (")
        for task_id in (first, last):
            assert (await aget_task_info(task_id)).status == TaskStatus.COMPLETED

        # The writer goes on: progress, then outcomes.
        progress: Callable[[float], None] = tracker.callback_for(running)
        progress(0.5)
        await wait_until(lambda: aget_task_info(running), lambda info: info.progress == 0.5)
        writer.submit(done(running))
        async with asyncio.timeout(10):
            await writer.flush()
        assert (await aget_task_info(running)).status == TaskStatus.COMPLETED
    finally:
        await writer.stop(timeout=5)
        await db.close()
    assert await TaskRecord.objects.filter(status="running").acount() == 0


def _done(task_id: str, attempt: int) -> Outcome:
    return Outcome(task_id, TaskStatus.COMPLETED, 1.0, result_json="1", attempt=attempt)


async def _write_with_linger(
    claimed: dict[str, int],
    expecting_more: Callable[[], bool],
    linger: float,
    submit_second: asyncio.Event | None,
) -> list[list[str]]:
    """Submit two outcomes (the second once ``submit_second`` is set); return the batches committed."""
    first, second, *_ = claimed
    batches: list[list[str]] = []
    db = DatabaseThread("test-writer")
    writer = OutcomeWriter(
        db,
        "w",
        ProgressTracker(lambda: None),
        0.01,
        0.01,
        on_committed=lambda outcomes: batches.append([outcome.task_id for outcome in outcomes]),
        expecting_more=expecting_more,
        linger=linger,
    )
    writer.start()
    try:
        writer.submit(_done(first, claimed[first]))
        async with asyncio.timeout(10):
            if submit_second is not None:
                await submit_second.wait()
            writer.submit(_done(second, claimed[second]))
            await writer.flush()
    finally:
        await writer.stop(timeout=5)
        await db.close()
    return batches


async def test_while_more_outcomes_are_expected_a_write_waits_for_them(claimed):
    """Tasks added one by one to a running worker finish one by one: each outcome had a
    commit of its own, which on SQLite takes turns with the adds on one connection."""
    first, second, *_ = claimed
    asked = asyncio.Event()

    def expecting_more() -> bool:
        asked.set()  # the writer holds the first outcome now
        return True

    assert await _write_with_linger(claimed, expecting_more, 0.5, asked) == [[first, second]]


async def test_an_outcome_nothing_else_follows_is_written_at_once(claimed):
    first, second, *_ = claimed
    written = asyncio.Event()
    batches = await _write_with_linger(claimed, lambda: written.set() or False, 3600, written)
    assert batches == [[first], [second]]


async def test_enough_outcomes_are_written_without_waiting_out_the_linger(claimed, monkeypatch):
    monkeypatch.setattr(writer_module, "LINGER_ENOUGH", 2)
    first, second, *_ = claimed
    asked = asyncio.Event()
    assert await _write_with_linger(claimed, lambda: asked.set() or True, 3600, asked) == [[first, second]]


async def test_progress_is_announced_only_for_rows_still_this_worker_s(claimed):
    """Live progress events go out after the write: not for a task cancelled meanwhile, whose
    row the fenced write left alone (the browser would show it moving after its cancel)."""
    mine, cancelled, *_ = claimed
    await TaskRecord.objects.filter(id=cancelled).aupdate(status="cancelled")
    announced: list[tuple[str, float]] = []
    written = asyncio.Event()

    def on_progress(progress: list[tuple[str, float]]) -> None:
        announced.extend(progress)
        written.set()

    writer: OutcomeWriter | None = None
    tracker = ProgressTracker(lambda: writer.progress_changed() if writer is not None else None)
    db = DatabaseThread("test-writer")
    writer = OutcomeWriter(
        db, "w", tracker, 0.01, 0.01, on_committed=lambda outcomes: None, on_progress_committed=on_progress
    )
    writer.start()
    try:
        tracker.callback_for(mine)(0.5)
        tracker.callback_for(cancelled)(0.5)
        async with asyncio.timeout(10):
            await written.wait()
    finally:
        await writer.stop(timeout=5)
        await db.close()
    assert announced == [(mine, 0.5)]
