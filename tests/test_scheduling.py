"""Scheduling passes on the database, with a clock the test controls."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from django_atw import schedules, scheduling, wakeup
from django_atw.models import Schedule, ScheduleTick, TaskRecord
from django_atw.registry import periodic
from tests.sampleapp import tasks  # noqa: F401  (registers the sample task types)

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_code_schedules() -> Iterator[None]:
    before = schedules.declared()
    yield
    for name in schedules.declared():
        if name not in before:
            schedules.forget(name)


def make(cron: str = "*/5 * * * *", **fields: object) -> Schedule:
    fields.setdefault("handled_until", T0)
    fields.setdefault("task_type", "echo")
    return Schedule.objects.create(name=str(fields.pop("name", "s")), cron=cron, **fields)


def tick_tasks() -> list[tuple[str, str]]:
    return sorted(TaskRecord.objects.values_list("metadata__tick", "task_type"))


def test_each_due_tick_adds_one_task_with_the_schedules_arguments():
    make(cron="* * * * * */20", args=[1], kwargs={"x": 2})
    added = scheduling.run_pass(T0 + timedelta(seconds=41)).added
    rows = TaskRecord.objects.filter(id__in=added).order_by("created_at")
    assert [(r.metadata["tick"], r.args, r.kwargs) for r in rows] == [
        ((T0 + timedelta(seconds=20)).isoformat(), [1], {"x": 2}),
        ((T0 + timedelta(seconds=40)).isoformat(), [1], {"x": 2}),
    ]


def test_an_hourly_schedule_adds_one_task_per_real_hour_across_both_berlin_dst_changes():
    for day in (datetime(2026, 3, 28, 22, tzinfo=UTC), datetime(2026, 10, 24, 21, tzinfo=UTC)):
        TaskRecord.objects.all().delete()
        Schedule.objects.all().delete()
        make(cron="0 * * * *", timezone="Europe/Berlin", handled_until=day)
        for step in range(1, 6 * 6 + 1):  # a pass every ten minutes for six hours
            scheduling.run_pass(day + timedelta(minutes=10 * step))
        assert [tick for tick, _ in tick_tasks()] == [
            (day + timedelta(hours=h)).isoformat() for h in range(1, 7)
        ]


def test_a_second_pass_over_the_same_ticks_adds_nothing():
    make()
    scheduling.run_pass(T0 + timedelta(minutes=5))
    Schedule.objects.update(handled_until=T0)  # as if a second worker read the schedule earlier
    assert scheduling.run_pass(T0 + timedelta(minutes=5)).added == []
    assert TaskRecord.objects.count() == ScheduleTick.objects.count() == 1


def test_an_idle_pass_costs_one_query(django_assert_num_queries):
    make()
    make(name="other", cron="0 3 * * *")
    scheduling.run_pass(T0 + timedelta(minutes=1))
    with django_assert_num_queries(1):
        assert scheduling.run_pass(T0 + timedelta(minutes=2)).added == []


def test_a_pass_records_last_and_next_run():
    schedule = make()
    scheduling.run_pass(T0 + timedelta(minutes=6))
    schedule.refresh_from_db()
    assert schedule.last_run_at == T0 + timedelta(minutes=5)
    assert schedule.next_run_at == T0 + timedelta(minutes=10)
    assert TaskRecord.objects.filter(id=schedule.last_task_id).exists()


def test_a_tick_whose_task_cannot_be_added_is_not_recorded():
    make(task_type="no.such.task")
    assert scheduling.run_pass(T0 + timedelta(minutes=5)).added == []
    assert ScheduleTick.objects.count() == 0
    assert Schedule.objects.get().handled_until == T0


def test_a_schedule_failing_every_pass_is_logged_as_a_warning_once(caplog):
    make(task_type="no.such.task")
    scheduling.run_pass(T0 + timedelta(minutes=5))
    scheduling.run_pass(T0 + timedelta(minutes=6))
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "no.such.task" in r.getMessage()]
    assert len(warnings) == 1


def test_a_disabled_schedule_adds_nothing():
    make(enabled=False)
    assert scheduling.run_pass(T0 + timedelta(hours=1)).added == []


def test_an_edit_takes_effect_at_the_next_pass():
    schedule = make()
    scheduling.run_pass(T0 + timedelta(minutes=1))
    Schedule.objects.filter(id=schedule.id).update(cron="* * * * *")
    scheduling.run_pass(T0 + timedelta(minutes=2))
    assert tick_tasks() == [((T0 + timedelta(minutes=2)).isoformat(), "echo")]


def test_missed_ticks_run_once_by_default_and_the_loss_is_logged(caplog):
    make(cron="0 * * * *", handled_until=T0 - timedelta(hours=5, minutes=30))
    scheduling.run_pass(T0 + timedelta(minutes=30))
    assert tick_tasks() == [(T0.isoformat(), "echo")]
    assert "5 missed ticks" in caplog.text


def test_missed_ticks_run_each_up_to_max_catch_up_with_policy_all():
    make(cron="0 * * * *", handled_until=T0 - timedelta(hours=5, minutes=30), missed="all", max_catch_up=3)
    scheduling.run_pass(T0 + timedelta(minutes=30))
    assert [tick for tick, _ in tick_tasks()] == [(T0 - timedelta(hours=h)).isoformat() for h in (2, 1, 0)]


def test_missed_ticks_are_skipped_with_policy_skip():
    make(cron="0 * * * *", handled_until=T0 - timedelta(hours=5, minutes=30), missed="skip")
    scheduling.run_pass(T0 + timedelta(minutes=30))
    assert tick_tasks() == []
    assert Schedule.objects.get().handled_until == T0 + timedelta(minutes=30)


def test_a_pass_wakes_the_local_workers_once_committed(monkeypatch):
    woken: list[tuple[set[str], bool]] = []
    monkeypatch.setattr(
        wakeup, "notify", lambda queues: woken.append((set(queues), connection.in_atomic_block))
    )
    make()
    scheduling.run_pass(T0 + timedelta(minutes=5))
    assert woken == [({"default"}, False)]


def test_run_now_adds_a_task_without_touching_the_ticks():
    schedule = make(args=["now"])
    task_id = scheduling.run_now(schedule.id)
    assert TaskRecord.objects.get(id=task_id).args == ["now"]
    assert ScheduleTick.objects.count() == 0


def test_code_schedules_are_synced_as_rows_from_code_and_keep_their_enabled_flag():
    periodic("echo", "0 3 * * *", name="nightly", timezone="Europe/Berlin", kwargs={"k": 1})
    scheduling.sync_code_schedules(T0)
    row = Schedule.objects.get(name="nightly")
    assert (row.from_code, row.cron, row.timezone, row.kwargs) == (
        True,
        "0 3 * * *",
        "Europe/Berlin",
        {"k": 1},
    )
    Schedule.objects.filter(id=row.id).update(enabled=False)
    assert scheduling.sync_code_schedules(T0) == []
    assert Schedule.objects.get(name="nightly").enabled is False


def test_a_code_schedule_this_process_does_not_declare_is_left_to_others():
    make(from_code=True, name="elsewhere")
    assert scheduling.run_pass(T0 + timedelta(minutes=5)).added == []


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_two_concurrent_passes_add_each_tick_once():
    make(cron="* * * * * *", missed="all", max_catch_up=1000)
    now = T0 + timedelta(seconds=50)
    barrier = threading.Barrier(2)
    results: list[list[str]] = []

    def one_pass() -> None:
        try:
            barrier.wait()
            results.append(scheduling.run_pass(now).added)
        finally:
            connection.close()

    threads = [threading.Thread(target=one_pass) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(len(r) for r in results) == 50
    assert TaskRecord.objects.count() == ScheduleTick.objects.count() == 50


def test_the_tick_insert_rolls_back_with_the_callers_transaction():
    make()
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        scheduling.run_pass(T0 + timedelta(minutes=5))
        1 / 0  # noqa: B018
    assert ScheduleTick.objects.count() == TaskRecord.objects.count() == 0
