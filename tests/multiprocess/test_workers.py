"""Several real atw_worker processes on one database: exactly once, crashes, signals, wake-ups.

PostgreSQL only (they are slow-ish and SKIP LOCKED is what they exercise), except the SQLite
two-worker test. Waits are on rows and output lines; timeouts only turn hangs into failures.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

import pytest
from django.db import connection

from django_atw import (
    TaskStatus,
    acancel_task,
    aenqueue,
    aenqueue_many,
    aget_all_tasks,
    aget_task_info,
    doorbell,
)
from tests.conftest import wait_until
from tests.multiprocess.conftest import needs_postgres, read_runs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs_table")]
LOGGED = "tests.multiprocess.tasks.logged"


async def all_finished(ids: list[str]) -> bool:
    tasks = {t.id: t for t in await aget_all_tasks()}
    return all(tasks[i].status.is_terminal for i in ids)


@needs_postgres()
async def test_three_workers_drain_three_thousand_tasks_each_exactly_once(start_worker):
    ids = await aenqueue_many(LOGGED, [(f"t{i}",) for i in range(3000)])
    workers = [
        await start_worker("--burst", "--concurrency", "20", "--log-level", "warning", ready=False)
        for _ in range(3)
    ]
    for worker in workers:
        assert await worker.wait(timeout=120) == 0, worker.output
    runs = await read_runs()
    assert Counter(label for label, *_ in runs) == Counter(f"t{i}" for i in range(3000))
    assert all(ended is not None for *_, ended in runs)
    statuses = Counter(t.status for t in await aget_all_tasks())
    assert statuses == {TaskStatus.COMPLETED: len(ids)}


@needs_postgres()
async def test_a_killed_workers_tasks_finish_elsewhere_after_the_lease(start_worker):
    lease = 2.0
    doomed = await start_worker("--concurrency", "4", lease=lease)
    ids = await aenqueue_many(LOGGED, [(f"k{i}", 600.0, 0.0) for i in range(4)])
    await wait_until(read_runs, lambda runs: len(runs) == 4, timeout=30)
    doomed.proc.send_signal(signal.SIGKILL)
    await doomed.wait()
    killed_at = time.time()
    survivor = await start_worker("--concurrency", "4", lease=lease)
    await wait_until(lambda: all_finished(ids), bool, timeout=60)

    for task_id in ids:
        info = await aget_task_info(task_id)
        assert (info.status, info.attempts) == (TaskStatus.COMPLETED, 2)
    runs = await read_runs()
    by_label: dict[str, list[tuple[int, float, float | None]]] = {}
    for label, pid, started, ended in runs:
        by_label.setdefault(label, []).append((pid, started, ended))
    for label, label_runs in by_label.items():
        (first, second) = label_runs
        assert first[0] == doomed.pid and first[2] is None, label  # killed mid-task
        assert second[0] == survivor.pid and second[2] is not None, label
        assert second[1] > killed_at, label  # never two runs at once
    assert "recovered tasks of dead workers" in survivor.output


@needs_postgres()
async def test_sigterm_mid_task_exits_zero_and_the_task_runs_elsewhere(start_worker):
    stopping = await start_worker("--concurrency", "2", "--grace", "0.5")
    ids = await aenqueue_many(LOGGED, [(f"s{i}", 600.0, 0.0) for i in range(2)])
    await wait_until(read_runs, lambda runs: len(runs) == 2, timeout=30)
    stopping.proc.send_signal(signal.SIGTERM)
    assert await stopping.wait(timeout=30) == 0, stopping.output
    for task_id in ids:
        info = await aget_task_info(task_id)
        assert (info.status, info.worker_id, info.attempts) == (TaskStatus.PENDING, None, 0)

    other = await start_worker("--burst", ready=False)
    assert await other.wait(timeout=60) == 0, other.output
    for task_id in ids:
        info = await aget_task_info(task_id)
        assert (info.status, info.attempts) == (TaskStatus.COMPLETED, 1)
    assert {pid for _, pid, _, ended in await read_runs() if ended is not None} == {other.pid}


@needs_postgres()
async def test_a_task_added_in_another_process_wakes_an_idle_worker_without_polling(start_worker):
    # A poll interval far longer than the wait: only the NOTIFY can start the task in time.
    await start_worker("--poll-interval", "600")
    task_id = await aenqueue(LOGGED, "woken")
    info = await wait_until(lambda: aget_task_info(task_id), lambda i: i.status.is_terminal, timeout=20)
    assert info.status == TaskStatus.COMPLETED


@needs_postgres()
async def test_a_cancel_from_another_process_stops_the_running_task(start_worker):
    worker = await start_worker("--poll-interval", "600")
    task_id = await aenqueue(LOGGED, "cancel-me", 600.0)
    await wait_until(read_runs, lambda runs: len(runs) == 1, timeout=30)
    assert await acancel_task(task_id)
    info = await wait_until(lambda: aget_task_info(task_id), lambda i: i.status.is_terminal, timeout=5)
    assert info.status == TaskStatus.CANCELLED
    assert "outcome=cancelled" in await worker.wait_for(f"task finished id={task_id}")


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the PostgreSQL tests above cover several workers")
async def test_two_workers_on_sqlite_never_run_a_task_twice(start_worker):
    await aenqueue_many(LOGGED, [(f"q{i}",) for i in range(300)])
    workers = [
        await start_worker("--burst", "--concurrency", "10", "--log-level", "warning", ready=False)
        for _ in range(2)
    ]
    for worker in workers:
        assert await worker.wait(timeout=120) == 0, worker.output
    runs = await read_runs()
    assert Counter(label for label, *_ in runs) == Counter(f"q{i}" for i in range(300))


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL wakes other processes with NOTIFY")
async def test_on_sqlite_the_doorbell_wakes_an_idle_worker_in_another_process_and_carries_cancels(
    start_worker,
):
    # Polls ten minutes apart: only a ring can start the task, or stop it, within the waits.
    worker = await start_worker("--poll-interval", "600")
    await wait_until(lambda: asyncio.to_thread(_bound_sockets), lambda found: found, timeout=30)
    task_id = await aenqueue(LOGGED, "rung", 600.0)
    await wait_until(read_runs, lambda runs: len(runs) == 1, timeout=30)
    assert await acancel_task(task_id)
    info = await wait_until(lambda: aget_task_info(task_id), lambda i: i.status.is_terminal, timeout=30)
    assert info.status == TaskStatus.CANCELLED
    assert "outcome=cancelled" in await worker.wait_for(f"task finished id={task_id}")


def _bound_sockets() -> list[str]:
    """The doorbell sockets of workers in other processes on the test database."""
    where = doorbell.folder()
    assert where is not None
    mine = f"{os.getpid()}-"
    names = os.listdir(where) if where.exists() else []
    return [name for name in names if name.endswith(doorbell.SUFFIX) and not name.startswith(mine)]


async def test_a_second_signal_exits_at_once_leaving_the_task_to_lease_recovery(start_worker):
    worker = await start_worker("--grace", "600")
    task_id = await aenqueue(LOGGED, "hard-stop", 600.0)
    await wait_until(read_runs, lambda runs: len(runs) == 1, timeout=30)
    worker.proc.send_signal(signal.SIGTERM)
    await worker.wait_for("stopping (grace 600 s)")
    worker.proc.send_signal(signal.SIGTERM)
    assert await worker.wait(timeout=30) == 1
    assert "second signal: exiting now" in worker.output
    info = await aget_task_info(task_id)
    assert (info.status, info.worker_id) == (TaskStatus.RUNNING, worker.output.split("id=")[1].split()[0])
