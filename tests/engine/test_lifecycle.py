"""Start, stop, restart: nothing is lost; other processes' records run here."""

import asyncio
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from django_atw import (
    AsyncTaskWorker,
    TaskStatus,
    aenqueue,
    aenqueue_many,
    aget_task_info,
    store,
    validation,
    wakeup,
)
from django_atw.engine import pool
from django_atw.models import TaskRecord, WorkerProcess
from tests.conftest import wait_until
from tests.helpers.processes import ROOT, subprocess_env
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


async def test_async_with_starts_and_stops_the_worker():
    async with AsyncTaskWorker(max_workers=2, cleanup_interval=0) as worker:
        assert worker.running
        task_id = await worker.add_task(tasks.echo, "ctx")
        assert await (await worker.get_task_future(task_id)) == {"args": ["ctx"], "kwargs": {}}
    assert not worker.running
    row = await WorkerProcess.objects.aget(id=worker.worker_id)
    assert row.stopping is True


async def test_start_is_idempotent(worker):
    worker_id = worker.worker_id
    await worker.start()
    assert worker.worker_id == worker_id
    assert await WorkerProcess.objects.filter(id=worker_id).acount() == 1


async def test_pending_tasks_found_at_start_are_run(make_worker):
    ids = await aenqueue_many(tasks.echo, [(i,) for i in range(20)])
    worker = await make_worker(max_workers=3)
    results = await worker.wait_for_tasks(ids, timeout=10)
    assert [r["args"][0] for r in results] == list(range(20))


async def test_stop_returns_unfinished_tasks_to_pending_and_a_restart_runs_them(make_worker):
    worker = await make_worker(max_workers=2)
    running = [await worker.add_task(tasks.wait_for_gate, f"r{i}") for i in range(2)]
    waiting = await worker.add_task(tasks.record, "queued")
    await tasks.started_event("r0").wait()
    await tasks.started_event("r1").wait()
    future = await worker.get_task_future(running[0])
    await worker.stop(timeout=0.05)
    # The future this worker held is cancelled; the tasks are pending again, not lost.
    assert future.cancelled()
    for task_id in [*running, waiting]:
        info = await aget_task_info(task_id)
        assert (info.status, info.worker_id, info.started_at, info.attempts) == (
            TaskStatus.PENDING,
            None,
            None,
            0,
        )
    tasks.gates.clear()
    tasks.started.clear()
    for name in ("r0", "r1"):
        tasks.gate(name).set()
    again = await make_worker(max_workers=2)
    assert await again.wait_for_tasks([*running, waiting], timeout=10) == ["r0", "r1", "queued"]
    assert [(await aget_task_info(t)).attempts for t in running] == [1, 1]


async def test_stop_waits_for_tasks_that_finish_within_the_grace_period(make_worker):
    worker = await make_worker()
    task_id = await worker.add_task(tasks.wait_for_gate, "grace")
    await tasks.started_event("grace").wait()
    # Released only once stop() is under way.
    asyncio.get_running_loop().call_soon(tasks.gate("grace").set)
    await worker.stop(timeout=10)
    info = await aget_task_info(task_id)
    assert (info.status, info.result) == (TaskStatus.COMPLETED, "grace")


async def test_a_record_inserted_by_another_process_is_run_here(worker):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.helpers.enqueue_in_subprocess",
        "from-another-process",
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
    )
    stdout, _ = await proc.communicate()
    assert proc.returncode == 0
    task_id = stdout.decode().strip().splitlines()[-1]
    # The other process cannot wake this worker: it finds the task at its poll interval.
    assert await worker.wait_for_tasks([task_id], timeout=10) == ["from-another-process"]
    info = await worker.get_task_info(task_id)
    assert info.metadata["pid"] != os.getpid()


async def test_two_workers_never_run_a_task_twice(make_worker):
    ids = await aenqueue_many(tasks.record, [(f"t{i}",) for i in range(300)])
    first = await make_worker(max_workers=20, claim_batch_size=7)
    second = await make_worker(max_workers=20, claim_batch_size=7)
    await first.wait_for_tasks(ids, timeout=30)
    assert sorted(tasks.runs) == sorted(f"t{i}" for i in range(300))
    workers = {
        row
        async for row in TaskRecord.objects.filter(id__in=ids).values_list("worker_id", flat=True).distinct()
    }
    assert workers <= {first.worker_id, second.worker_id}


async def test_get_all_tasks_filters_by_status_limit_and_age(worker):
    old = await aenqueue(tasks.noop)
    await TaskRecord.objects.filter(id=old).aupdate(created_at=timezone.now() - timedelta(hours=2))
    done = [await worker.add_task(tasks.echo, i) for i in range(3)]
    await worker.wait_for_tasks([old, *done], timeout=10)
    failed = await worker.add_task(tasks.fail)
    await asyncio.gather(await worker.get_task_future(failed), return_exceptions=True)

    everything = await worker.get_all_tasks()
    assert [t.id for t in everything] == [failed, *reversed(done), old]
    assert [t.id for t in await worker.get_all_tasks(limit=2)] == [failed, done[2]]
    assert [t.id for t in await worker.get_all_tasks(status=TaskStatus.FAILED)] == [failed]
    assert [t.id for t in await worker.get_all_tasks(status="completed", limit=1)] == [done[2]]
    assert [t.id for t in await worker.get_all_tasks(older_than=timedelta(hours=1))] == [old]
    with pytest.raises(ValueError, match="status must be one of"):
        await worker.get_all_tasks(status="finished")


async def test_cleanup_old_tasks_deletes_only_finished_tasks_past_retention(make_worker):
    worker = await make_worker(task_retention_days=1)
    old_done = await worker.add_task(tasks.noop)
    recent_done = await worker.add_task(tasks.noop)
    await worker.wait_for_tasks([old_done, recent_done], timeout=10)
    old_pending = await aenqueue(tasks.noop, queue="nobody-serves-this")
    long_ago = timezone.now() - timedelta(days=3)
    await TaskRecord.objects.filter(id__in=[old_done, old_pending]).aupdate(
        completed_at=long_ago, created_at=long_ago
    )
    assert await worker.cleanup_old_tasks() == 1
    remaining = {t async for t in TaskRecord.objects.values_list("id", flat=True)}
    assert remaining == {recent_done, old_pending}


async def test_retention_none_keeps_everything(make_worker):
    worker = await make_worker(task_retention_days=None)
    assert await worker.cleanup_old_tasks() == 0


async def test_cleanup_interval_zero_starts_no_cleanup_loop(make_worker):
    worker = await make_worker(cleanup_interval=0)
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert not any(name.startswith("atw-cleanup") for name in names)
    periodic = await make_worker(cleanup_interval=3600)
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert f"atw-cleanup-{periodic.worker_id}" in names
    assert f"atw-cleanup-{worker.worker_id}" not in names


async def test_the_cleanup_loop_deletes_old_tasks_on_its_interval(make_worker):
    old = await aenqueue(tasks.noop, queue="parked")
    await TaskRecord.objects.filter(id=old).aupdate(
        status="completed", completed_at=timezone.now() - timedelta(days=30)
    )
    await make_worker(cleanup_interval=0.05, task_retention_days=7)

    async def exists() -> bool:
        return await TaskRecord.objects.filter(id=old).aexists()

    from tests.conftest import wait_until

    assert await wait_until(exists, lambda present: not present) is False


async def test_get_task_info_works_without_a_running_worker():
    task_id = await aenqueue(tasks.noop)
    worker = AsyncTaskWorker()
    info = await worker.get_task_info(task_id)
    assert info.status == TaskStatus.PENDING
    assert await worker.get_task_info("missing") is None
    assert await sync_to_async(lambda: TaskRecord.objects.count())() == 1


async def test_a_task_committed_during_an_empty_claim_is_not_left_for_the_next_poll(make_worker, monkeypatch):
    # Polls are an hour apart, so only the wake-up can start the task. It arrives while a claim
    # is in flight whose snapshot missed the task: that claim returns nothing, and the wake-up
    # must still lead to another claim.
    real_claim = store.claim_batch
    added: list[str] = []

    def claim_then_add(worker_id: str, queues: list[str], limit: int) -> list[store.ClaimedTask]:
        claims = real_claim(worker_id, queues, limit)
        if not claims and not added:
            added.extend(store.add_tasks([validation.build(tasks.echo, ["late"], {})]))
            wakeup.notify(["default"])  # reaches the loop before this claim's empty result
        return claims

    worker = await make_worker(worker_poll_interval=3600)
    monkeypatch.setattr(pool.store, "claim_batch", claim_then_add)
    worker._pool.wake()
    done = await wait_until(
        lambda: TaskRecord.objects.filter(status=TaskStatus.COMPLETED.value).acount(), lambda n: n == 1
    )
    assert done == 1 and len(added) == 1
