"""The scheduling loop inside a running worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from django_atw import TaskStatus, schedules
from django_atw.engine import scheduler
from django_atw.models import Schedule, TaskRecord
from django_atw.registry import periodic
from tests.conftest import wait_until
from tests.sampleapp import tasks as sample

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


async def test_a_worker_adds_and_runs_a_due_tick_woken_at_commit_not_by_its_poll(make_worker, monkeypatch):
    monkeypatch.setattr(scheduler, "clock", lambda: T0 + timedelta(seconds=5))
    await Schedule.objects.acreate(
        name="s",
        task_type="record",
        cron="* * * * * *",
        args=["tick"],
        handled_until=T0 + timedelta(seconds=4),
    )
    # The pool polls once a minute: only the wake-up at commit can start the task in time.
    await make_worker(worker_poll_interval=60)
    record = await wait_until(TaskRecord.objects.filter(status=TaskStatus.COMPLETED.value).afirst, bool)
    assert (record.metadata["tick"], record.result) == ((T0 + timedelta(seconds=5)).isoformat(), "tick")


async def test_a_worker_syncs_its_code_schedules_at_start(make_worker):
    periodic(sample.noop, "0 3 * * *", name="nightly-noop")
    try:
        await make_worker()
        row = await wait_until(Schedule.objects.filter(name="nightly-noop").afirst, bool)
        assert (row.from_code, row.task_type) == (True, "noop")
    finally:
        schedules.forget("nightly-noop")


@override_settings(ATW={"SCHEDULER": False, "POLL_INTERVAL": 0.2})
async def test_a_worker_with_the_scheduler_off_adds_no_ticks(make_worker, monkeypatch):
    monkeypatch.setattr(scheduler, "clock", lambda: T0 + timedelta(seconds=5))
    await Schedule.objects.acreate(name="s", task_type="noop", cron="* * * * * *", handled_until=T0)
    worker = await make_worker()
    assert worker._runtime.scheduler is None
    assert not await TaskRecord.objects.aexists()
