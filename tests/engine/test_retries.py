"""Retries with backoff, max_attempts, timeouts as failed attempts, run_after, queue routing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from django_atw import (
    TaskArgumentError,
    TaskExecutionError,
    TaskStatus,
    aenqueue,
    aget_all_tasks,
    aget_task_info,
    store,
    task,
)
from django_atw.engine.retries import MAX_RETRY_DELAY, retry_delay
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _reset_attempts() -> None:
    tasks.attempts_seen.clear()


async def test_a_task_raising_a_retry_on_error_runs_again_until_it_succeeds(worker):
    task_id = await worker.add_task(tasks.flaky, "twice", 2)
    assert await (await worker.get_task_future(task_id)) == 3
    info = await worker.get_task_info(task_id)
    assert (info.status, info.attempts, info.max_attempts) == (TaskStatus.COMPLETED, 3, 3)


async def test_a_task_fails_for_good_once_max_attempts_are_used(worker):
    task_id = await worker.add_task(tasks.flaky, "always", 99)
    with pytest.raises(TaskExecutionError):
        await (await worker.get_task_future(task_id))
    info = await worker.get_task_info(task_id)
    assert (info.status, info.attempts, info.error) == (TaskStatus.FAILED, 3, "failure 3")
    assert tasks.attempts_seen["always"] == 3


async def test_an_error_not_in_retry_on_is_not_retried(worker):
    task_id = await worker.add_task(tasks.fail, "once")
    with pytest.raises(TaskExecutionError):
        await (await worker.get_task_future(task_id))
    info = await worker.get_task_info(task_id)
    assert (info.status, info.attempts) == (TaskStatus.FAILED, 1)


async def test_a_timeout_counts_as_a_failed_attempt_and_is_retried(worker):
    task_id = await worker.add_task(tasks.slow_then_quick, "slow", timeout=0.2)
    assert await (await worker.get_task_future(task_id)) == 2
    assert (await worker.get_task_info(task_id)).attempts == 2


@pytest.mark.parametrize("attempt", [1, 2, 5, 40])
def test_retry_delay_doubles_per_attempt_with_jitter_and_a_cap(attempt):
    full = min(MAX_RETRY_DELAY, 0.5 * 2 ** (attempt - 1))
    delays = [retry_delay(0.5, attempt) for _ in range(50)]
    assert all(full / 2 <= delay <= full for delay in delays)
    assert len(set(delays)) > 1  # jitter


async def test_a_deferred_task_runs_after_one_added_later_without_delay(worker):
    later = await worker.add_task(tasks.record, "deferred", run_after=timedelta(seconds=0.3))
    assert (await worker.get_task_info(later)).run_after is not None
    now = await worker.add_task(tasks.record, "immediate")
    await worker.wait_for_tasks([later, now], timeout=20)
    assert tasks.runs == ["immediate", "deferred"]
    info = await worker.get_task_info(later)
    assert info.started_at >= info.run_after


async def test_a_task_deferred_to_a_datetime_is_not_claimed_before_it(worker):
    task_id = await aenqueue(tasks.record, "tomorrow", run_after=timezone.now() + timedelta(days=1))
    quick = await aenqueue(tasks.record, "today")
    await worker.wait_for_tasks([quick], timeout=20)
    assert (await aget_task_info(task_id)).status == TaskStatus.PENDING


async def test_a_task_goes_to_its_types_queue_unless_the_call_names_one(make_worker):
    routed = await aenqueue(tasks.report, "r1")
    overridden = await aenqueue(tasks.report, "r2", queue="default")
    assert (await aget_task_info(routed)).queue == "reports"
    default_worker = await make_worker(queues=["default"])
    await default_worker.wait_for_tasks([overridden], timeout=20)
    assert (await aget_task_info(routed)).status == TaskStatus.PENDING
    reports_worker = await make_worker(queues=["reports"])
    assert await reports_worker.wait_for_tasks([routed], timeout=20) == ["r1"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be a whole number of at least 1, got 0"),
        ({"retry_backoff": -1}, "retry_backoff must be a non-negative number of seconds, got -1"),
        ({"retry_on": ("ValueError",)}, "retry_on must be a tuple of exception classes"),
        ({"queue": ""}, "queue must be a non-empty string"),
    ],
)
def test_bad_task_options_are_refused_naming_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        task("bad_options", **options)


@pytest.mark.parametrize(
    ("run_after", "message"),
    [
        (timezone.now().replace(tzinfo=None), "run_after is a naive datetime"),
        ("tomorrow", "run_after must be a datetime, a timedelta or None, got 'tomorrow'"),
    ],
)
async def test_a_bad_run_after_is_refused_and_nothing_is_stored(run_after, message):
    with pytest.raises(TaskArgumentError, match=message):
        await aenqueue(tasks.record, "never", run_after=run_after)
    assert await aget_all_tasks() == []


async def test_a_deferred_tasks_info_serialises_its_next_run_as_iso_8601():
    due = timezone.now() + timedelta(hours=2)
    info = await aget_task_info(await aenqueue(tasks.record, "json", run_after=due))
    data = info.to_dict()
    assert data["run_after"] == due.isoformat()
    assert (data["attempts"], data["max_attempts"]) == (0, 3)
    json.dumps(data)


async def test_every_failed_attempt_is_logged_with_its_worker_and_traceback(worker):
    task_id = await worker.add_task(tasks.flaky, "log", 99)
    with pytest.raises(TaskExecutionError):
        await (await worker.get_task_future(task_id))
    history = await sync_to_async(store.get_task_history)(task_id)
    assert [a.attempt for a in history.failed_attempts] == [1, 2, 3]
    assert {a.worker_id for a in history.failed_attempts} == {worker.worker_id}
    assert [a.error for a in history.failed_attempts] == ["failure 1", "failure 2", "failure 3"]
    first = history.failed_attempts[0]
    assert "Flaky: failure 1" in first.traceback
    assert first.started_at is not None and first.finished_at >= first.started_at


async def test_a_task_that_succeeds_at_once_logs_no_failed_attempt(worker):
    task_id = await worker.add_task(tasks.flaky, "fine", 0)
    await (await worker.get_task_future(task_id))
    assert (await sync_to_async(store.get_task_history)(task_id)).failed_attempts == []
