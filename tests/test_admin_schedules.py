"""The schedule admin: both kinds listed, code schedules read-only but for enabled, "Run now"."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client

from django_atw.models import Schedule, ScheduleTick, TaskRecord
from tests.sampleapp import tasks  # noqa: F401  (registers the sample task types)

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/django_atw/schedule/"
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def form(**fields: object) -> dict[str, object]:
    data = {
        "name": "s", "task_type": "echo", "cron": "*/5 * * * *", "timezone": "UTC", "args": "[]",
        "kwargs": "{}", "enabled": "on", "missed": "once", "max_catch_up": "100",
    }  # fmt: skip
    data.update(fields)
    return data


def test_the_changelist_lists_code_and_admin_schedules(admin_client: Client):
    Schedule.objects.create(name="from-code", task_type="noop", cron="0 3 * * *", from_code=True)
    Schedule.objects.create(name="from-admin", task_type="echo", cron="*/5 * * * *")
    page = admin_client.get(CHANGELIST).content.decode()
    assert "from-code" in page and "from-admin" in page


def test_a_schedule_added_in_the_admin_starts_from_the_moment_it_is_saved(admin_client: Client):
    response = admin_client.post(CHANGELIST + "add/", form())
    assert response.status_code == 302
    assert Schedule.objects.get(name="s").handled_until > LONG_AGO


def test_an_invalid_cron_string_is_refused_with_its_value(admin_client: Client):
    response = admin_client.post(CHANGELIST + "add/", form(cron="61 * * * *"))
    assert response.status_code == 200
    assert "&#x27;61 * * * *&#x27; is not a valid cron expression" in response.content.decode()
    assert not Schedule.objects.exists()


def test_changing_the_cron_restarts_the_schedule_from_now(admin_client: Client):
    schedule = Schedule.objects.create(name="s", task_type="echo", cron="*/5 * * * *", handled_until=LONG_AGO)
    admin_client.post(f"{CHANGELIST}{schedule.pk}/change/", form(cron="*/10 * * * *"))
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.handled_until > LONG_AGO) == ("*/10 * * * *", True)


def test_a_code_schedule_can_only_be_enabled_or_disabled(admin_client: Client):
    schedule = Schedule.objects.create(name="code", task_type="noop", cron="0 3 * * *", from_code=True)
    admin_client.post(f"{CHANGELIST}{schedule.pk}/change/", form(name="code", cron="* * * * *", enabled=""))
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.enabled) == ("0 3 * * *", False)


def test_run_now_adds_one_task_through_the_add_path(admin_client: Client):
    schedule = Schedule.objects.create(name="s", task_type="echo", cron="0 3 * * *", args=[7])
    admin_client.post(CHANGELIST, {"action": "run_now", "_selected_action": [schedule.pk]})
    task = TaskRecord.objects.get()
    assert (task.task_type, task.args, task.metadata) == ("echo", [7], {"schedule": "s"})
    assert not ScheduleTick.objects.exists()
