"""Leases: dead workers' tasks are recovered, and a worker that lost its lease writes nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.test import override_settings
from django.utils import timezone

from django_atw import AsyncTaskWorker, TaskStatus, aenqueue, enqueue, enqueue_many, get_task_info, store
from django_atw.models import TaskRecord, WorkerProcess
from django_atw.realtime import groups
from django_atw.store import Outcome
from tests.conftest import wait_until
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)
LEASE = timedelta(seconds=30)


# Runs of ``held``, one entry per run, in any worker of this process.
held_runs: list[str] = []


async def held(name: str) -> str:
    """Note the run, then wait at ``name``'s gate."""
    held_runs.append(name)
    tasks.started_event(name).set()
    await tasks.gate(name).wait()
    return name


def register(worker_id: str, *, silent_for: timedelta = timedelta(0)) -> None:
    store.register_worker(worker_id, "host", 1, ["default"], 4)
    WorkerProcess.objects.filter(id=worker_id).update(last_heartbeat=timezone.now() - silent_for)


def test_a_dead_workers_tasks_go_back_to_pending_or_fail_when_out_of_attempts():
    register("dead")
    retryable, exhausted = enqueue_many("noop", [(), ()])
    store.claim_batch("dead", ["default"], 2)
    TaskRecord.objects.filter(id=exhausted).update(attempts=3)
    WorkerProcess.objects.filter(id="dead").update(last_heartbeat=timezone.now() - 2 * LEASE)

    reaped = store.reap_stale_workers(LEASE)

    assert (reaped.workers, reaped.requeued, reaped.failed) == (["dead"], [retryable], [exhausted])
    again = get_task_info(retryable)
    assert (again.status, again.attempts, again.worker_id) == (TaskStatus.PENDING, 1, None)
    failed = get_task_info(exhausted)
    assert (failed.status, failed.error_type) == (TaskStatus.FAILED, store.WORKER_DIED_ERROR_TYPE)
    assert "died" in failed.error and "dead" in failed.error
    for task_id in (retryable, exhausted):
        (died,) = store.get_task_history(task_id).failed_attempts
        assert (died.worker_id, died.error_type) == ("dead", store.WORKER_DIED_ERROR_TYPE)
    assert WorkerProcess.objects.get(id="dead").stopped_at is not None


def test_a_live_workers_tasks_are_left_alone():
    register("alive", silent_for=LEASE / 2)
    task_id = enqueue("noop")
    store.claim_batch("alive", ["default"], 1)
    assert store.reap_stale_workers(LEASE).requeued == []
    assert get_task_info(task_id).status == TaskStatus.RUNNING


def test_running_tasks_of_a_stopped_or_unknown_worker_are_recovered_at_once():
    register("gone")
    task_id = enqueue("noop")
    store.claim_batch("gone", ["default"], 1)
    store.mark_worker_stopped("gone")
    assert store.reap_stale_workers(LEASE).requeued == [task_id]
    store.claim_batch("gone", ["default"], 1)  # a stopped worker claims nothing
    assert get_task_info(task_id).status == TaskStatus.PENDING


def test_a_worker_that_lost_its_lease_learns_it_at_its_heartbeat_and_can_register_again():
    register("late", silent_for=2 * LEASE)
    store.reap_stale_workers(LEASE)
    assert store.heartbeat("late", 0) is False
    register("late")
    assert store.heartbeat("late", 0) is True


def test_an_outcome_of_an_earlier_attempt_never_overwrites_a_later_one():
    register("w")
    task_id = enqueue("noop")
    store.claim_batch("w", ["default"], 1)
    WorkerProcess.objects.filter(id="w").update(last_heartbeat=timezone.now() - 2 * LEASE)
    store.reap_stale_workers(LEASE)
    register("w")
    (second,) = store.claim_batch("w", ["default"], 1)
    assert second.attempts == 2
    stale = Outcome(task_id=task_id, status=TaskStatus.FAILED, progress=0, error="late", attempt=1)
    store.write_batch("w", [], [stale])
    assert get_task_info(task_id).status == TaskStatus.RUNNING
    fresh = Outcome(task_id=task_id, status=TaskStatus.COMPLETED, progress=1, result_json="2", attempt=2)
    store.write_batch("w", [], [fresh])
    assert get_task_info(task_id).result == 2


def test_an_outcome_written_after_the_lease_was_lost_is_not_stored_nor_returned():
    register("w")
    lost, kept = enqueue_many("noop", [(), ()])
    claims = {claim.id: claim for claim in store.claim_batch("w", ["default"], 2)}
    # Lease recovery took one task back, as reap_stale_workers does for a dead worker's task.
    TaskRecord.objects.filter(id=lost).update(status="pending", worker=None, started_at=None)
    outcomes = [
        Outcome(task_id, TaskStatus.COMPLETED, 1.0, result_json="1", attempt=claims[task_id].attempts)
        for task_id in (lost, kept)
    ]
    assert store.write_batch("w", [], outcomes).outcomes == [outcomes[1]]
    assert get_task_info(lost).status == TaskStatus.PENDING
    assert get_task_info(kept).status == TaskStatus.COMPLETED


def test_an_outcome_of_a_reaped_worker_is_not_stored_nor_returned():
    register("w")
    task_id = enqueue("noop")
    (claim,) = store.claim_batch("w", ["default"], 1)
    WorkerProcess.objects.filter(id="w").update(last_heartbeat=timezone.now() - 2 * LEASE)
    assert store.reap_stale_workers(LEASE).requeued == [task_id]
    late = Outcome(task_id, TaskStatus.FAILED, 0.5, error="late", attempt=claim.attempts)
    assert store.write_batch("w", [(task_id, 0.5)], [late]).outcomes == []
    info = get_task_info(task_id)
    assert (info.status, info.error, info.progress) == (TaskStatus.PENDING, None, 0.0)


def test_a_retry_outcome_returns_the_task_to_pending_deferred():
    register("w")
    task_id = enqueue("noop")
    (claim,) = store.claim_batch("w", ["default"], 1)
    due = timezone.now() + timedelta(hours=1)
    retry = Outcome(task_id, TaskStatus.PENDING, 0, error="flaky", attempt=claim.attempts, run_after=due)
    store.write_batch("w", [], [retry])
    info = get_task_info(task_id)
    assert (info.status, info.attempts, info.run_after, info.error) == (TaskStatus.PENDING, 1, due, "flaky")
    assert store.claim_batch("w", ["default"], 1) == []


def test_lease_recovery_cancels_a_dead_workers_task_whose_cancel_was_requested():
    register("dead")
    flagged, flagged_last_attempt, plain = enqueue_many("noop", [(), (), ()])
    store.claim_batch("dead", ["default"], 3)
    TaskRecord.objects.filter(id=flagged_last_attempt).update(attempts=3)
    for task_id in (flagged, flagged_last_attempt):
        assert store.cancel(task_id) == (store.CANCEL_REQUESTED, "dead")
    WorkerProcess.objects.filter(id="dead").update(last_heartbeat=timezone.now() - 2 * LEASE)

    reaped = store.reap_stale_workers(LEASE)

    assert (reaped.requeued, reaped.failed) == ([plain], [])
    assert sorted(reaped.cancelled) == sorted([flagged, flagged_last_attempt])
    for task_id in (flagged, flagged_last_attempt):
        info = get_task_info(task_id)
        assert (info.status, info.error) == (TaskStatus.CANCELLED, "Task cancelled while running")
        assert info.completed_at is not None
    register("alive")
    assert [c.id for c in store.claim_batch("alive", ["default"], 3)] == [plain]


def test_a_retry_of_a_task_whose_cancel_was_requested_ends_it_cancelled():
    register("w")
    task_id = enqueue("noop")
    (claim,) = store.claim_batch("w", ["default"], 1)
    store.cancel(task_id)
    retry = Outcome(task_id, TaskStatus.PENDING, 0.3, error="flaky", attempt=claim.attempts)
    (stored,) = store.write_batch("w", [], [retry]).outcomes
    assert (stored.status, stored.error) == (TaskStatus.CANCELLED, "Task cancelled while running")
    info = get_task_info(task_id)
    assert (info.status, info.error, info.error_type) == (
        TaskStatus.CANCELLED,
        "Task cancelled while running",
        "TaskCancellationError",
    )
    assert store.claim_batch("w", ["default"], 1) == []


def test_prune_deletes_only_workers_stopped_before_the_cutoff():
    register("old")
    register("recent")
    register("running")
    store.mark_worker_stopped("old")
    WorkerProcess.objects.filter(id="old").update(stopped_at=timezone.now() - timedelta(days=2))
    store.mark_worker_stopped("recent")
    assert store.prune_workers(timezone.now() - timedelta(days=1)) == 1
    assert set(WorkerProcess.objects.values_list("id", flat=True)) == {"recent", "running"}


def test_prune_deletes_at_most_one_batch_oldest_first():
    for name in ("a", "b", "c"):
        register(name)
        store.mark_worker_stopped(name)
    for age, name in enumerate(("c", "a", "b"), start=2):
        WorkerProcess.objects.filter(id=name).update(stopped_at=timezone.now() - timedelta(days=age))
    assert store.prune_workers(timezone.now() - timedelta(days=1), batch_size=2) == 2
    assert list(WorkerProcess.objects.values_list("id", flat=True)) == ["c"]


async def test_a_live_workers_housekeeping_prunes_stopped_rows_older_than_the_retention(make_worker):
    worker = await make_worker()
    for name, stopped_ago in (("old", timedelta(minutes=2)), ("recent", timedelta(seconds=10))):
        await sync_to_async(register)(name)
        await WorkerProcess.objects.filter(id=name).aupdate(
            stopped_at=timezone.now() - stopped_ago, stopping=True
        )

    with override_settings(ATW={"WORKER_RETENTION": 60}):
        assert await worker._runtime.housekeeper.prune() == 1

    kept = {row.id async for row in WorkerProcess.objects.all()}
    assert kept == {"recent", worker.worker_id}


async def test_a_worker_that_finds_its_lease_lost_drops_its_run_and_runs_the_task_again(make_worker):
    worker = await make_worker(max_workers=2)
    task_id = await aenqueue(tasks.wait_for_gate, "lost")
    await tasks.started_event("lost").wait()
    await sync_to_async(WorkerProcess.objects.filter(id=worker.worker_id).update)(
        last_heartbeat=timezone.now() - 2 * LEASE
    )
    reaped = await sync_to_async(store.reap_stale_workers)(LEASE)
    assert reaped.requeued == [task_id]
    tasks.started.clear()
    first_run = worker._pool.running[task_id]

    await worker._runtime.housekeeper.beat()  # finds the row stopped: drops the run, registers again

    assert first_run.cancelling()

    await tasks.started_event("lost").wait()  # the second run, claimed anew
    tasks.gate("lost").set()
    assert await (await worker.get_task_future(task_id)) == "lost"
    info = await wait_until(lambda: sync_to_async(get_task_info)(task_id), lambda i: i.status.is_terminal)
    assert (info.status, info.attempts) == (TaskStatus.COMPLETED, 2)


async def test_a_worker_registers_its_row_and_marks_it_stopped_on_a_clean_exit(make_worker):
    worker = await make_worker(max_workers=3, queues=["default", "reports"])
    row = await WorkerProcess.objects.aget(id=worker.worker_id)
    assert (row.pid, row.concurrency, row.queues, row.stopped_at) == (
        os.getpid(),
        3,
        ["default", "reports"],
        None,
    )
    assert row.hostname and row.last_heartbeat >= row.started_at
    await worker.stop()
    row = await WorkerProcess.objects.aget(id=worker.worker_id)
    assert row.stopped_at is not None and row.tasks_running == 0


async def test_a_late_outcome_of_a_lost_lease_resolves_no_future_and_publishes_no_completion(
    make_worker, caplog
):
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}):
        layer = get_channel_layer()
        worker = await make_worker()
        task_id = await aenqueue(tasks.wait_for_gate, "late")
        channel = await layer.new_channel()
        await layer.group_add(groups.task_group(task_id), channel)
        await tasks.started_event("late").wait()
        future = await worker.get_task_future(task_id)
        first_run = worker._pool.running[task_id]
        # Another worker found this one's heartbeat too old and took its task back.
        await sync_to_async(WorkerProcess.objects.filter(id=worker.worker_id).update)(
            last_heartbeat=timezone.now() - 2 * LEASE
        )
        assert (await sync_to_async(store.reap_stale_workers)(LEASE)).requeued == [task_id]
        tasks.started.clear()

        with caplog.at_level(logging.WARNING, logger="django_atw.engine.writer"):
            tasks.gate("late").set()  # the first run ends before this worker learns of its lease
            await first_run
            await worker._runtime.writer.flush()

        assert not future.done()
        assert f"outcome of task {task_id} not stored" in caplog.text
        assert (await sync_to_async(get_task_info)(task_id)).status == TaskStatus.PENDING

        await worker._runtime.housekeeper.beat()  # learns of the lost lease, registers, claims the task again
        async with asyncio.timeout(10):
            assert await future == "late"
        published = []
        async with asyncio.timeout(10):
            while not published or published[-1]["status"] != "completed":
                published.append((await layer.receive(channel))["task"])
        # Only finished states count: the first run's start may be read (and published) after
        # the reap returned its row to pending, which is a true snapshot, not a completion.
        terminal = ("completed", "failed", "cancelled")
        finished = [(e["status"], e["attempts"]) for e in published if e["status"] in terminal]
        assert finished == [("completed", 2)]  # none from the first run's late outcome


async def test_a_long_query_on_the_workers_connection_does_not_cost_it_its_lease(make_worker):
    lease = 1.5
    held_runs.clear()
    blocking, release = asyncio.Event(), threading.Event()
    busy = AsyncTaskWorker(worker_lease=lease, worker_poll_interval=0.2, cleanup_interval=0.01)

    async def slow_cleanup() -> int:
        # Stands in for any long query on the worker's claim connection (a large cleanup, a
        # wide read): it holds that connection's thread until the test releases it.
        await tasks.started_event("busy").wait()
        if not blocking.is_set():
            blocking.set()
            await busy._db.run(release.wait, 30)
        return 0

    busy.cleanup_old_tasks = slow_cleanup  # type: ignore[method-assign]
    await busy.start()
    try:
        task_id = await aenqueue(held, "busy")
        await tasks.started_event("busy").wait()
        other = await make_worker(worker_lease=lease)
        await blocking.wait()
        # The thing under test is that nothing happens: wait two leases, long enough for the
        # other worker to take the task if the busy worker's heartbeat were stuck behind the query.
        await asyncio.sleep(2 * lease)
        await other._runtime.housekeeper.recover()
        during = await sync_to_async(get_task_info)(task_id)
        release.set()

        assert (during.status, during.attempts, during.worker_id) == (
            TaskStatus.RUNNING,
            1,
            busy.worker_id,
        )
        tasks.gate("busy").set()
        assert await (await busy.get_task_future(task_id)) == "busy"
        info = await sync_to_async(get_task_info)(task_id)
        assert (info.status, info.attempts, info.worker_id) == (TaskStatus.COMPLETED, 1, busy.worker_id)
        assert held_runs == ["busy"]
    finally:
        release.set()
        tasks.gate("busy").set()
        await busy.stop()
