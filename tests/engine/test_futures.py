"""Futures, wait_for_tasks and wait_for_any_task."""

import asyncio
import gc
import logging
import threading

import pytest
from asgiref.sync import sync_to_async

from django_atw import TaskStatus, aenqueue, aenqueue_many, cancel_task, enqueue, store
from django_atw.engine import futures, housekeeping
from django_atw.engine.futures import TaskFutureManager
from django_atw.exceptions import TaskCancellationError, TaskError, TaskExecutionError
from django_atw.models import TaskRecord
from django_atw.values import Outcome
from tests.conftest import wait_until
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 10.0  # seconds before a missing event fails the test (never reached when all is well)


async def test_a_future_resolves_to_the_result(worker):
    task_id = await worker.add_task(tasks.process_data, [1, 2])
    assert await (await worker.get_task_future(task_id)) == [2, 4]


async def test_the_same_future_is_returned_while_the_task_is_pending(worker):
    task_id = await worker.add_task(tasks.wait_for_gate, "same")
    first = await worker.get_task_future(task_id)
    assert await worker.get_task_future(task_id) is first
    tasks.gate("same").set()
    assert await first == "same"


async def test_a_future_for_a_task_finished_before_it_was_asked_for_resolves_at_once(make_worker):
    worker = await make_worker(max_workers=1)
    ok = await worker.add_task(tasks.echo, 1)
    bad = await worker.add_task(tasks.fail)
    # One slot, FIFO and in-order commits: once the last task's future resolves, the first two
    # are stored as finished, and neither had a future while it ran.
    await worker.wait_for_tasks([await worker.add_task(tasks.noop)], timeout=10)
    assert (await worker.get_task_info(bad)).status == TaskStatus.FAILED
    ok_future = await worker.get_task_future(ok)
    assert ok_future.done()
    assert ok_future.result() == {"args": [1], "kwargs": {}}
    bad_future = await worker.get_task_future(bad)
    assert bad_future.done()
    with pytest.raises(TaskExecutionError, match="boom"):
        bad_future.result()


async def test_a_future_of_an_unknown_task_raises_key_error(worker):
    with pytest.raises(KeyError):
        await worker.get_task_future("no-such-task")


async def test_a_future_resolves_for_a_task_finished_by_another_worker(make_worker):
    # The observer serves another queue, so only the runner can run the task; the observer
    # learns of the outcome from the database, as it would for a worker in another process.
    observer = await make_worker(queues=["elsewhere"])
    await make_worker(queues=["default"])
    task_id = await aenqueue(tasks.wait_for_gate, "remote")
    future = await observer.get_task_future(task_id)
    await tasks.started_event("remote").wait()
    assert not future.done()
    tasks.gate("remote").set()
    async with asyncio.timeout(10):
        assert await future == "remote"


async def test_awaiting_a_long_list_reads_a_bounded_share_per_poll_and_still_sees_every_outcome(
    make_worker, monkeypatch
):
    """Every poll used to read every awaited task running elsewhere: a short-poll wait on a
    backlog cost the worker a read that grew with the list. Now each poll reads a share, and
    the shares go round the whole list, so an outcome stored elsewhere is still noticed."""
    observer = await make_worker(queues=["elsewhere"], worker_poll_interval=0.02)
    ids = await aenqueue_many(tasks.noop, [() for _ in range(1_000)])  # no worker serves them
    read_sizes: list[int] = []
    finished_ids_among = store.finished_ids_among

    def counted(task_ids):
        read_sizes.append(len(task_ids))
        return finished_ids_among(task_ids)

    monkeypatch.setattr(store, "finished_ids_among", counted)
    futures = await observer.get_task_futures(ids)
    assert await sync_to_async(cancel_task)(ids[-1])  # stored by "another process"
    async with asyncio.timeout(10):
        with pytest.raises(TaskCancellationError):
            await futures[-1]
    assert read_sizes and max(read_sizes) <= housekeeping.CHECK_AT_ONCE < len(ids)
    assert not any(future.done() for future in futures[:-1])


async def test_awaiting_tasks_that_finish_here_does_not_read_their_stored_state(make_worker, monkeypatch):
    """The poll checks awaited tasks not running here, and most of those it finds finished it
    ran itself and resolved at their commit: reading each one's whole stored state (results and
    arguments parsed from JSON) took half of the 20,000-task W1d drain's rows, a third of its time."""
    ids = await aenqueue_many(tasks.noop, [() for _ in range(1_000)])
    read_in_full: list[str] = []
    finished_among = store.finished_among

    def counted(task_ids):
        read_in_full.extend(task_ids)
        return finished_among(task_ids)

    monkeypatch.setattr(store, "finished_among", counted)
    worker = await make_worker(max_workers=10, worker_poll_interval=0.005)
    await worker.wait_for_tasks(ids, timeout=30)
    # Before, about 1 in 6 of them; then those whose commit the check's answer overtook (a
    # task stays in the writer's ``writing`` until its future resolves).
    assert read_in_full == []


async def test_a_cancelled_task_future_raises_cancelled_error_and_task_error(worker):
    task_id = await worker.add_task(tasks.wait_for_gate, "c")
    await tasks.started_event("c").wait()
    future = await worker.get_task_future(task_id)
    assert await worker.cancel_task(task_id) is True
    with pytest.raises(asyncio.CancelledError):
        await future
    with pytest.raises(TaskError):
        future.result()
    assert isinstance(future.exception(), TaskCancellationError)


async def test_get_task_futures_returns_one_future_per_id_for_gather(worker):
    ok = await worker.add_task(tasks.echo, 1)
    bad = await worker.add_task(tasks.fail, "nope")
    results = await asyncio.gather(*await worker.get_task_futures([ok, bad]), return_exceptions=True)
    assert results[0] == {"args": [1], "kwargs": {}}
    assert isinstance(results[1], TaskExecutionError) and str(results[1]) == "nope"


async def test_wait_for_tasks_returns_results_in_order(worker):
    ids = [await worker.add_task(tasks.echo, i) for i in range(4)]
    results = await worker.wait_for_tasks(ids, timeout=10)
    assert [r["args"][0] for r in results] == [0, 1, 2, 3]
    assert await worker.wait_for_tasks([]) == []


async def test_wait_for_tasks_raises_the_first_failure(worker):
    ids = [await worker.add_task(tasks.echo, 1), await worker.add_task(tasks.fail, "second failed")]
    with pytest.raises(TaskExecutionError, match="second failed"):
        await worker.wait_for_tasks(ids, timeout=10)


async def test_a_wait_for_tasks_timeout_leaves_tasks_and_futures_usable(worker):
    task_id = await worker.add_task(tasks.wait_for_gate, "slow")
    with pytest.raises(TimeoutError):
        await worker.wait_for_tasks([task_id], timeout=0.05)
    future = await worker.get_task_future(task_id)
    assert not future.cancelled()
    assert (await worker.get_task_info(task_id)).status == TaskStatus.RUNNING
    tasks.gate("slow").set()
    assert await worker.wait_for_tasks([task_id], timeout=10) == ["slow"]
    assert await future == "slow"


async def test_wait_for_any_task_returns_the_first_to_finish(worker):
    slow = await worker.add_task(tasks.wait_for_gate, "any-slow")
    fast = await worker.add_task(tasks.echo, "fast")
    result, task_id = await worker.wait_for_any_task([slow, fast], timeout=10)
    assert (result, task_id) == ({"args": ["fast"], "kwargs": {}}, fast)
    tasks.gate("any-slow").set()


async def test_wait_for_any_task_timeout_and_empty_list(worker):
    slow = await worker.add_task(tasks.wait_for_gate, "any-timeout")
    with pytest.raises(TimeoutError):
        await worker.wait_for_any_task([slow], timeout=0.05)
    with pytest.raises(ValueError, match="empty"):
        await worker.wait_for_any_task([])
    tasks.gate("any-timeout").set()
    assert await worker.wait_for_any_task([slow], timeout=10) == ("any-timeout", slow)


async def test_next_to_check_goes_round_the_watched_ids_skipping_running_and_given_up_ones():
    manager = TaskFutureManager()
    for task_id in "abcdef":
        manager.get(task_id)
    manager.get("e").cancel()  # a caller gave up on it
    assert manager.next_to_check(2, skip={"a"}) == ["b", "c"]
    assert manager.next_to_check(2, skip={"a"}) == ["d", "f"]  # "e" is forgotten on the way
    assert manager.next_to_check(2, skip={"a"}) == ["b", "c"]
    assert len(manager) == 5


def test_watch_states_tells_missing_ids_and_reads_only_finished_ones_in_full(db):
    pending, done = enqueue("noop"), enqueue("noop")
    cancel_task(done)
    missing, finished = store.watch_states([pending, done, "unknown", pending])
    assert missing == ["unknown"]
    assert list(finished) == [done]
    assert finished[done].status is TaskStatus.CANCELLED
    assert store.watch_states([pending, done]) == ([], finished)


async def test_a_failed_task_whose_future_nobody_awaits_logs_no_unretrieved_exception(worker, caplog):
    # asyncio logs "exception was never retrieved" when a future holding an exception is
    # collected unretrieved: a caller that asked for a future and never awaited it (a timeout,
    # a cancelled request) must not make the worker's log say so.
    lost = await worker.get_task_future(await worker.add_task(tasks.fail, "unawaited"))
    await asyncio.wait({lost}, timeout=10)
    assert lost.done()
    del lost
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()
        await asyncio.sleep(0)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_a_result_completed_here_is_kept_for_a_later_wait_without_a_database_read(make_worker):
    """A loop of add_task calls followed by one wait_for_tasks finds most tasks done already:
    their results were read back from the database (a 45 ms tail on 2,000 no-op tasks). The
    row is deleted here to show the result came from memory; results too long to keep, and
    failures, are still read from the database."""
    worker = await make_worker(max_workers=1)
    small = await worker.add_task(tasks.echo, "small")
    long = await worker.add_task(tasks.returns_text, futures.KEPT_RESULT_CHARS + 1)
    bad = await worker.add_task(tasks.fail)

    async def finished() -> int:
        return worker.finished_here

    await wait_until(finished, lambda count: count == 3)
    await sync_to_async(TaskRecord.objects.filter(id__in=[small, long, bad]).delete)()

    (result,) = await worker.wait_for_tasks([small], timeout=10)
    assert result == {"args": ["small"], "kwargs": {}}
    for task_id in (long, bad):
        with pytest.raises(KeyError):
            await worker.get_task_future(task_id)


def test_kept_results_are_bounded(monkeypatch):
    monkeypatch.setattr(futures, "KEPT_RESULTS", 2)
    manager = TaskFutureManager()
    for task_id in ("a", "b", "c"):
        manager.resolve_committed([Outcome(task_id, TaskStatus.COMPLETED, 1.0, result_json='"r"', attempt=1)])
    assert [manager.has(task_id) for task_id in ("a", "b", "c")] == [False, True, True]


async def test_waiting_on_many_tasks_wakes_only_for_those_not_done_by_their_turn(make_worker, monkeypatch):
    """``asyncio.wait`` on the whole list put a callback on all 20,000 futures of a 20,000-task
    wait, each run by the loop beside the drain: 0.84x the unwatched drain's pace (W1d)."""
    ids = await aenqueue_many(tasks.noop, [() for _ in range(1_000)])
    waited_on: list[int] = []
    wait = asyncio.wait

    async def counted(futures, *args, **kwargs):
        waited_on.append(len(futures))
        return await wait(futures, *args, **kwargs)

    monkeypatch.setattr(futures.asyncio, "wait", counted)
    worker = await make_worker(max_workers=100)
    assert await worker.wait_for_tasks(ids, timeout=30) == [None] * 1_000
    # Outcomes commit in batches: most futures are done when their turn comes.
    assert sum(waited_on) < 500, f"callbacks on {sum(waited_on)} of 1,000 futures"


async def test_a_worker_s_reads_do_not_queue_behind_its_claims(make_worker):
    """Reads made through a running worker ran on its claim connection, so a long one (the first
    read of a 20,000-task wait) held up claims, and a slow claim held up every read."""
    worker = await make_worker()
    task_id = await aenqueue(tasks.noop)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        held.set()
        release.wait(WAIT)

    claims = asyncio.ensure_future(worker._db.run(hold))  # the claim thread is busy...
    try:
        assert await asyncio.to_thread(held.wait, WAIT)
        async with asyncio.timeout(WAIT):  # ...and reads go on
            assert (await worker.get_task_info(task_id)).id == task_id
            assert [task.id for task in await worker.get_all_tasks()] == [task_id]
            await worker.get_task_futures([task_id])
    finally:
        release.set()
        await claims


async def test_the_poll_leaves_alone_tasks_whose_outcome_is_being_stored_here(make_worker):
    """Between a task's end and its future's resolution the poll took it for a task run
    elsewhere: it read it, and read it again in full when the commit had just landed (90 of
    1,000 in one run of the test above)."""
    worker = await make_worker(max_workers=3, worker_poll_interval=0.005)
    ids = [await worker.add_task(tasks.wait_for_gate, "storing") for _ in range(3)]
    futures_ = await worker.get_task_futures(ids)
    async with asyncio.timeout(WAIT):
        await tasks.started_event("storing").wait()
    checked: list[str] = []
    polled = asyncio.Event()
    next_to_check = worker._futures.next_to_check

    def spied(count, skip):
        picked = next_to_check(count, skip)
        checked.extend(picked)
        polled.set()
        return picked

    worker._futures.next_to_check = spied
    writer = worker._runtime.writer
    store_batch, release = writer._store, asyncio.Event()

    async def held(progress, outcomes):
        await release.wait()
        return await store_batch(progress, outcomes)

    writer._store = held  # outcomes wait here, in the writer, as during a slow commit
    try:
        tasks.gate("storing").set()
        await wait_until(lambda: asyncio.sleep(0, worker.running_task_ids()), lambda running: not running)
        checked.clear()
        for _ in range(3):  # three polls while the outcomes are being stored
            polled.clear()
            async with asyncio.timeout(WAIT):
                await polled.wait()
        assert checked == []
    finally:
        release.set()
    assert await asyncio.gather(*futures_) == ["storing"] * 3
