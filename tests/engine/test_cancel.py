"""Cancelling pending and running tasks, here and through the module functions."""

import asyncio

import pytest

from django_atw import TaskStatus, acancel_task, aenqueue, aget_task_info
from django_atw.exceptions import TaskCancellationError
from tests.conftest import wait_until
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_cancelled_pending_task_never_starts(make_worker):
    worker = await make_worker(max_workers=1)
    blocker = await worker.add_task(tasks.wait_for_gate, "block")
    await tasks.started_event("block").wait()
    pending = await worker.add_task(tasks.record, "never")
    future = await worker.get_task_future(pending)
    assert await worker.cancel_task(pending) is True
    info = await worker.get_task_info(pending)
    assert info.status == TaskStatus.CANCELLED and info.error == "Task cancelled before execution"
    with pytest.raises(TaskCancellationError):
        await future
    tasks.gate("block").set()
    await worker.wait_for_tasks([blocker], timeout=10)
    # The next task after the blocker proves the queue moved on without the cancelled one.
    await worker.wait_for_tasks([await worker.add_task(tasks.record, "after")], timeout=10)
    assert tasks.runs == ["after"]


async def test_a_cancelled_running_task_ends_cancelled_not_failed(worker):
    task_id = await worker.add_task(tasks.wait_for_gate, "run")
    await tasks.started_event("run").wait()
    assert await worker.cancel_task(task_id) is True
    info = await worker.get_task_info(task_id)
    assert info.status == TaskStatus.CANCELLED
    assert info.error == "Task cancelled while running"
    assert info.progress == 0.5  # the last reported value is kept
    assert worker.running_task_ids() == []


async def test_cancelling_an_unknown_or_finished_task_returns_false(worker):
    assert await worker.cancel_task("unknown") is False
    done = await worker.add_task(tasks.noop)
    await worker.wait_for_tasks([done], timeout=10)
    assert await worker.cancel_task(done) is False
    assert (await worker.get_task_info(done)).status == TaskStatus.COMPLETED


async def test_cancel_through_the_module_function_reaches_a_local_running_task(worker):
    task_id = await worker.add_task(tasks.wait_for_gate, "module")
    await tasks.started_event("module").wait()
    future = await worker.get_task_future(task_id)
    assert await acancel_task(task_id) is True
    with pytest.raises(asyncio.CancelledError):
        await future
    assert (await aget_task_info(task_id)).status == TaskStatus.CANCELLED


async def test_a_cancel_request_stored_by_another_process_is_picked_up_at_the_poll(make_worker):
    runner = await make_worker(worker_poll_interval=0.05)
    task_id = await aenqueue(tasks.wait_for_gate, "remote-cancel")
    await tasks.started_event("remote-cancel").wait()
    future = await runner.get_task_future(task_id)
    # What another process's cancel_task does: flag the row (no in-process message).
    from asgiref.sync import sync_to_async

    from django_atw import store

    outcome, owner = await sync_to_async(store.cancel)(task_id)
    assert (outcome, owner) == (store.CANCEL_REQUESTED, runner.worker_id)
    with pytest.raises(TaskCancellationError):
        async with asyncio.timeout(10):
            await future
    assert (await aget_task_info(task_id)).status == TaskStatus.CANCELLED


async def test_a_task_that_swallows_cancellation_is_stored_as_it_ended(worker):
    task_id = await worker.add_task(tasks.swallow_cancel, "swallow")
    await tasks.started_event("swallow").wait()
    assert await worker.cancel_task(task_id) is True
    info = await worker.get_task_info(task_id)
    assert (info.status, info.result) == (TaskStatus.COMPLETED, "swallowed")


async def test_a_cancel_through_one_worker_reaches_another_worker_of_the_process_at_once(make_worker):
    # Polls are an hour apart: only the in-process message can deliver this cancel.
    observer = await make_worker(queues=["elsewhere"], worker_poll_interval=3600)
    runner = await make_worker(worker_poll_interval=3600)
    task_id = await aenqueue(tasks.wait_for_gate, "sibling")
    await tasks.started_event("sibling").wait()
    future = await runner.get_task_future(task_id)
    assert await observer.cancel_task(task_id) is True
    with pytest.raises(TaskCancellationError):
        async with asyncio.timeout(10):
            await future


async def test_a_cancel_between_claim_and_start_reads_cancelled_when_it_returns(make_worker, monkeypatch):
    """The claim commits the row as running before the worker starts it: a cancel in between
    must still be final and visible when cancel_task returns (the original's read-your-writes)."""
    from django_atw.engine.pool import WorkerPool

    held, release = asyncio.Event(), asyncio.Event()
    start_now = WorkerPool._start

    def start_later(self, claim):
        async def later():
            await release.wait()
            start_now(self, claim)

        held.set()
        asyncio.get_running_loop().create_task(later())

    monkeypatch.setattr(WorkerPool, "_start", start_later)
    worker = await make_worker(worker_poll_interval=3600)
    task_id = await aenqueue(tasks.wait_for_gate, "claimed-not-started")
    await held.wait()
    cancelling = asyncio.create_task(worker.cancel_task(task_id))
    # The cancel is stored and this worker has noted it for the claimed task: now let it start.
    await wait_until(_value(worker._pool), lambda pool: task_id in pool._cancel_before_start)
    release.set()
    async with asyncio.timeout(10):
        assert await cancelling is True
    info = await worker.get_task_info(task_id)
    assert info.status is TaskStatus.CANCELLED
    assert not tasks.started_event("claimed-not-started").is_set(), "a cancelled task must never start"


async def test_a_task_whose_cancel_was_requested_is_not_handed_back_when_its_worker_stops(make_worker):
    from asgiref.sync import sync_to_async

    from django_atw.models import TaskRecord

    # Polls are an hour apart, and the flag is set without a message: the cancel request has
    # not reached the worker when it stops.
    worker = await make_worker(worker_poll_interval=3600)
    task_id = await worker.add_task(tasks.wait_for_gate, "stopping")
    await tasks.started_event("stopping").wait()
    await sync_to_async(TaskRecord.objects.filter(id=task_id).update)(cancel_requested=True)
    await worker.stop(timeout=0.1)  # the task ignores the stop: it is cut short and handed back
    info = await aget_task_info(task_id)
    assert (info.status, info.error) == (TaskStatus.CANCELLED, "Task cancelled while running")


def _value(value):
    async def read():
        return value

    return read
