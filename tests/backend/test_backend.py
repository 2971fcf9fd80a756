"""django_atw.backend.TaskBackend: Django's django.tasks API, run by real django-atw workers."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import django
import pytest

if django.VERSION < (6, 0):
    pytest.skip("django.tasks (and so django_atw.backend) needs Django 6.0 or newer", allow_module_level=True)

import contextlib

from asgiref.sync import sync_to_async
from django.tasks import TaskResultStatus, default_task_backend, task_backends
from django.tasks.exceptions import (
    InvalidTask,
    InvalidTaskBackend,
    TaskResultDoesNotExist,
    TaskResultMismatch,
)
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone

from django_atw import TaskExecutionError, acancel_task, aget_task_info
from django_atw.backend import TaskBackend
from django_atw.models import TaskRecord
from tests.backend import djtasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _reset() -> None:
    djtasks.runs.clear()
    djtasks.contexts.clear()
    djtasks.barrier.reset()


async def finished(worker: Any, result: Any) -> None:
    """Wait for the worker to store the task's outcome (success or failure), then refresh."""
    with contextlib.suppress(TaskExecutionError):
        await (await worker.get_task_future(result.id))
    await result.arefresh()


def test_the_backend_supports_defer_async_tasks_results_and_priority():
    backend = task_backends["default"]
    assert isinstance(backend, TaskBackend)
    flags = (backend.supports_defer, backend.supports_async_task)
    assert (*flags, backend.supports_get_result, backend.supports_priority) == (True, True, True, True)


def test_the_constructor_never_touches_the_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        TaskBackend("other", {"QUEUES": ["default"], "OPTIONS": {"sync_threads": 2}})


@pytest.mark.parametrize(
    ("options", "message"),
    [({"thread": 2}, "unknown keys"), ({"sync_threads": 0}, "at least 1")],
)
def test_bad_options_are_refused_naming_the_option(options, message):
    with pytest.raises(InvalidTaskBackend, match=message):
        TaskBackend("default", {"OPTIONS": options})


def test_enqueue_stores_a_task_record_through_the_add_path():
    result = djtasks.echo.using(priority=40).enqueue((1, 2), b"x", key=("a",))
    row = TaskRecord.objects.get(id=result.id)
    assert row.task_type == "tests.backend.djtasks.echo"
    assert (row.args, row.kwargs) == ([[1, 2], "x"], {"key": ["a"]})  # as Django normalises them
    assert (row.priority, row.queue, row.status) == (-40, "default", "pending")
    assert result.status == TaskResultStatus.READY
    assert result.enqueued_at == row.created_at
    assert result.args == [[1, 2], "x"]


def test_an_argument_that_is_not_json_is_refused_and_nothing_is_stored():
    with pytest.raises(TypeError):
        djtasks.echo.enqueue(timezone.now())
    assert not TaskRecord.objects.exists()


def test_a_queue_the_backend_does_not_list_is_refused_when_the_task_is_defined():
    with pytest.raises(InvalidTask, match="Queue 'nope'"):
        djtasks.add.using(queue_name="nope")


async def test_an_enqueued_sync_task_runs_on_a_worker_and_its_result_round_trips(make_worker):
    worker = await make_worker()
    result = await djtasks.add.aenqueue(2, 3)
    await finished(worker, result)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.worker_ids == [worker.worker_id]
    assert result.attempts == 1
    assert result.errors == []
    assert result.enqueued_at <= result.started_at <= result.finished_at
    again = await djtasks.add.aget_result(result.id)  # no TaskResultMismatch: same function
    assert again.task.func is djtasks.add.func
    assert again.return_value == 5


async def test_an_async_task_runs_on_the_workers_loop(make_worker):
    worker = await make_worker()
    result = await djtasks.async_thread_name.aenqueue()
    await finished(worker, result)
    assert result.return_value == "MainThread"


async def test_a_sync_task_runs_in_the_backends_thread_pool(make_worker):
    worker = await make_worker()
    result = await djtasks.thread_name.aenqueue()
    await finished(worker, result)
    assert result.return_value.startswith("atw-tasks-default")


async def test_sync_tasks_run_side_by_side_on_several_threads(make_worker):
    worker = await make_worker(max_workers=2)
    first, second = await djtasks.meet.aenqueue(), await djtasks.meet.aenqueue()
    await finished(worker, first)
    await finished(worker, second)
    assert (first.status, second.status) == (TaskResultStatus.SUCCESSFUL,) * 2
    assert first.return_value != second.return_value


async def test_a_failing_task_reads_failed_with_its_exception_and_traceback(make_worker):
    worker = await make_worker()
    result = await djtasks.fail.aenqueue("broken")
    await finished(worker, result)
    assert result.status == TaskResultStatus.FAILED
    (error,) = result.errors
    assert error.exception_class is ValueError
    assert "ValueError: broken" in error.traceback
    assert result.worker_ids == [worker.worker_id]
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018


async def test_a_larger_django_priority_runs_first(make_worker):
    for label, priority in [("low", -10), ("high", 50), ("middle", 0)]:
        await djtasks.record.using(priority=priority).aenqueue(label)
    worker = await make_worker(max_workers=1)
    ids = [info.id for info in await worker.get_all_tasks()]
    await worker.wait_for_tasks(ids, timeout=10)
    assert djtasks.runs == ["high", "middle", "low"]


async def test_a_deferred_task_waits_for_run_after_and_reads_it_back(make_worker):
    later = timezone.now() + timedelta(hours=1)
    deferred = await djtasks.record.using(run_after=later).aenqueue("later")
    worker = await make_worker()
    now = await djtasks.record.aenqueue("now")
    await finished(worker, now)
    assert djtasks.runs == ["now"]
    read = await djtasks.record.aget_result(deferred.id)
    assert read.status == TaskResultStatus.READY
    assert read.task.run_after == later
    assert (await aget_task_info(deferred.id)).run_after == later


async def test_a_task_goes_to_its_queue_and_runs_on_a_worker_of_that_queue(make_worker):
    result = await djtasks.in_other_queue.aenqueue()
    assert (await aget_task_info(result.id)).queue == "other"
    worker = await make_worker(queues=["other"])
    await finished(worker, result)
    assert result.return_value == "other"
    assert (await djtasks.in_other_queue.aget_result(result.id)).task.queue_name == "other"


async def test_a_task_taking_context_gets_its_result_and_attempt(make_worker):
    worker = await make_worker()
    result = await djtasks.whoami.aenqueue()
    await finished(worker, result)
    assert result.return_value == {"id": result.id, "attempt": 1, "status": "RUNNING"}


async def test_a_retried_task_keeps_one_error_and_one_worker_per_attempt(make_worker):
    worker = await make_worker()
    result = await djtasks.flaky.aenqueue(2)
    await finished(worker, result)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 3
    assert djtasks.contexts == [
        {"attempt": 1, "errors": 0},
        {"attempt": 2, "errors": 1},
        {"attempt": 3, "errors": 2},
    ]
    assert result.worker_ids == [worker.worker_id] * 3
    assert [error.exception_class for error in result.errors] == [djtasks.Flaky, djtasks.Flaky]
    assert ["attempt 1" in result.errors[0].traceback, "attempt 2" in result.errors[1].traceback] == [
        True
    ] * 2


async def test_get_result_of_an_unknown_id_raises_does_not_exist():
    with pytest.raises(TaskResultDoesNotExist):
        await default_task_backend.aget_result("no-such-task")


async def test_get_result_through_another_task_raises_mismatch():
    result = await djtasks.add.aenqueue(1, 1)
    with pytest.raises(TaskResultMismatch):
        await djtasks.record.aget_result(result.id)


async def test_a_cancelled_task_reads_failed_with_a_cancellation_error():
    result = await djtasks.add.aenqueue(1, 1)
    assert await acancel_task(result.id)
    await result.arefresh()
    assert result.status == TaskResultStatus.FAILED
    (error,) = result.errors
    assert error.exception_class_path == "django_atw.exceptions.TaskCancellationError"
    assert result.worker_ids == []


async def test_signals_are_sent_on_enqueue_start_and_finish(make_worker):
    seen: list[tuple[str, str, bool]] = []

    def receiver(signal_name: str) -> Any:
        def receive(sender: type, task_result: Any, **kwargs: Any) -> None:
            assert sender is TaskBackend
            seen.append((signal_name, task_result.status, sys.exc_info()[0] is not None))

        return receive

    receivers = {name: receiver(name) for name in ("enqueued", "started", "finished")}
    task_enqueued.connect(receivers["enqueued"])
    task_started.connect(receivers["started"])
    task_finished.connect(receivers["finished"])
    try:
        worker = await make_worker(max_workers=1)
        ok = await djtasks.async_add.aenqueue(1, 2)
        await finished(worker, ok)
        bad = await djtasks.fail.aenqueue("no")
        await finished(worker, bad)
    finally:
        task_enqueued.disconnect(receivers["enqueued"])
        task_started.disconnect(receivers["started"])
        task_finished.disconnect(receivers["finished"])
    assert seen == [
        ("enqueued", "READY", False),
        ("started", "RUNNING", False),
        ("finished", "SUCCESSFUL", False),
        ("enqueued", "READY", False),
        ("started", "RUNNING", False),
        ("finished", "FAILED", True),  # sent from the except block, as Django does
    ]


async def test_a_task_enqueued_in_a_transaction_that_rolls_back_is_never_stored():
    def enqueue_and_roll_back() -> str:
        from django.db import transaction

        with pytest.raises(RuntimeError), transaction.atomic():
            result = djtasks.add.enqueue(1, 1)
            raise RuntimeError
        return result.id

    task_id = await sync_to_async(enqueue_and_roll_back)()
    assert await aget_task_info(task_id) is None


@pytest.mark.skipif(django.VERSION < (6, 1), reason="@task(**options) is new in Django 6.1")
def test_task_keywords_carry_timeout_max_attempts_and_use_cache():
    result = djtasks.with_options.enqueue()
    row = TaskRecord.objects.get(id=result.id)
    assert (row.timeout, row.max_attempts, row.use_cache) == (5.0, 2, False)


async def test_a_sync_task_reports_progress_from_its_thread(make_worker):
    worker = await make_worker()
    result = await djtasks.report_progress.aenqueue()
    await finished(worker, result)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value.startswith("atw-tasks-default")
