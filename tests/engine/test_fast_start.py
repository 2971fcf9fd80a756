"""A task a running worker adds for itself is stored already claimed and starts without a claim
round trip, unless a pending task that a claim would take first is waiting."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async

from django_atw import AsyncTaskWorker, store, validation
from django_atw.engine import pool
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


class CountedClaims:
    """``store.claim_batch`` that counts the tasks its claims returned, and tells when the
    worker's first claim (the one at start) is over: from then on only a wake-up claims."""

    def __init__(self) -> None:
        self.real = store.claim_batch
        self.claimed = 0
        self.first_over = threading.Event()

    def __call__(self, worker_id: str, queues: list[str], limit: int) -> list[store.ClaimedTask]:
        claims = self.real(worker_id, queues, limit)
        self.claimed += len(claims)
        self.first_over.set()
        return claims


async def quiet_worker(make_worker, monkeypatch, **options) -> tuple[AsyncTaskWorker, CountedClaims]:
    """A worker whose polls are an hour apart, its claims counted, past its first claim."""
    counted = CountedClaims()
    monkeypatch.setattr(pool.store, "claim_batch", counted)
    worker = await make_worker(worker_poll_interval=3600, **options)
    await sync_to_async(counted.first_over.wait)(10)
    counted.claimed = 0
    return worker, counted


async def test_a_steady_stream_of_adds_starts_each_task_without_a_claim(make_worker, monkeypatch):
    # An add refused the claimed INSERT while the claim loop thought more might be waiting, and
    # each refused add's wake-up claim kept it thinking so: every task of the stream went
    # through a claim of its own (the W1c benchmark: 2,020 of 2,020).
    # Polls 10 ms apart (the original's tests use that): each poll's claim lets the stream fall
    # into the pattern at once.
    counted = CountedClaims()
    monkeypatch.setattr(pool.store, "claim_batch", counted)
    worker = await make_worker(max_workers=10, worker_poll_interval=0.01)
    ids = [await worker.add_task(tasks.noop) for _ in range(200)]
    await worker.wait_for_tasks(ids, timeout=30)
    assert counted.claimed <= 10, f"{counted.claimed} of 200 tasks went through a claim"


async def test_an_added_task_does_not_overtake_a_pending_one_of_the_same_or_a_higher_priority(
    make_worker, monkeypatch
):
    # The pending task, stored without a wake-up, is seen by no claim until the added one's
    # INSERT finds it waiting, stores itself pending too and wakes the loop.
    worker, counted = await quiet_worker(make_worker, monkeypatch, max_workers=1)
    (waiting,) = await sync_to_async(store.add_tasks)(
        [validation.build(tasks.record, ["waiting"], {}, priority=5)]
    )
    added = await worker.add_task(tasks.record, "added", priority=5)
    await worker.wait_for_tasks([waiting, added], timeout=10)
    assert tasks.runs == ["waiting", "added"]
    assert counted.claimed == 2


async def test_a_more_urgent_added_task_starts_at_once_past_a_less_urgent_backlog(make_worker, monkeypatch):
    worker, counted = await quiet_worker(make_worker, monkeypatch, max_workers=1)
    await sync_to_async(store.add_tasks)([validation.build(tasks.record, ["later"], {}, priority=5)])
    urgent = await worker.add_task(tasks.record, "urgent", priority=1)
    await worker.wait_for_tasks([urgent], timeout=10)
    assert (tasks.runs, counted.claimed) == (["urgent"], 0)


async def test_a_deferred_pending_task_does_not_hold_back_an_added_one(make_worker, monkeypatch):
    worker, counted = await quiet_worker(make_worker, monkeypatch, max_workers=1)
    await worker.add_task(tasks.record, "tomorrow", run_after=timedelta(days=1))
    now = await worker.add_task(tasks.record, "now")
    await worker.wait_for_tasks([now], timeout=10)
    assert (tasks.runs, counted.claimed) == (["now"], 0)


async def test_an_add_during_a_claim_never_runs_more_than_max_workers(make_worker, monkeypatch):
    # The slots a claim in flight asked for are not free: an add reserving one of them meanwhile
    # would start a third task beside the claim's two on a worker of max_workers=2.
    worker, counted = await quiet_worker(make_worker, monkeypatch, max_workers=2)
    in_claim, release = threading.Event(), threading.Event()

    def held_claim(worker_id: str, queues: list[str], limit: int) -> list[store.ClaimedTask]:
        in_claim.set()
        assert release.wait(10)
        return counted(worker_id, queues, limit)

    monkeypatch.setattr(pool.store, "claim_batch", held_claim)
    await sync_to_async(store.add_tasks)(
        [validation.build(tasks.wait_for_gate, [f"stored-{i}"], {}) for i in range(2)]
    )
    worker._pool.wake()  # as the stored tasks' wake-up would
    await sync_to_async(in_claim.wait)(10)
    adding = asyncio.create_task(worker.add_task(tasks.wait_for_gate, "added"))
    await asyncio.sleep(0)  # the add reserves its slot (or not) before its INSERT waits for the claim
    release.set()
    await adding
    for name in ("stored-0", "stored-1"):
        await asyncio.wait_for(tasks.started_event(name).wait(), 10)
    assert len(worker.running_task_ids()) == 2
    assert not tasks.started_event("added").is_set()
