"""The task admin's screens: short ids, live durations, coloured bars, Cancel, and no Delete while running."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from django_atw import TaskStatus
from django_atw.models import TaskRecord
from tests import test_admin
from tests.helpers.processes import ROOT
from tests.test_admin import CHANGELIST, run_action

pytestmark = pytest.mark.django_db
tasks = test_admin.tasks  # the fixture: one task per status


def detail(task_id: str) -> str:
    return f"{CHANGELIST}{task_id}/change/"


def test_list_shows_short_ids_with_a_copy_button(admin_client: Client, tasks: dict[str, str]) -> None:
    html = admin_client.get(CHANGELIST).content.decode()
    for task_id in tasks.values():
        assert f'<a href="{detail(task_id)}" title="{task_id}"><code>{task_id[:8]}</code></a>' in html
        assert f'data-atw-copy="{task_id}"' in html
        assert f">{task_id}<" not in html  # the full id is never the visible text
    assert '<script src="/static/django_atw/admin.js" type="module"></script>' in html


def test_list_durations_tick_for_running_tasks_only(admin_client: Client, tasks: dict[str, str]) -> None:
    html = admin_client.get(CHANGELIST).content.decode()
    started = TaskRecord.objects.get(id=tasks["running"]).started_at
    assert started is not None
    assert (
        f'data-atw-duration="{tasks["running"]}" data-atw-started="{started.isoformat()}" '
        'data-atw-running="1">' in html
    )
    assert f'data-atw-duration="{tasks["completed"]}"' in html
    assert 'data-atw-running="">2.00 s</span>' in html


def test_bars_carry_their_status_so_failed_bars_are_coloured_as_failed(
    admin_client: Client, tasks: dict[str, str]
) -> None:
    html = admin_client.get(CHANGELIST).content.decode()
    assert (
        'class="atw-progress atw-progress-failed" value="0.0000" max="1" '
        f'data-atw-task-id="{tasks["failed"]}"' in html
    )
    css = (ROOT / "src/django_atw/static/django_atw/admin.css").read_text()
    assert ".atw-progress-failed::-webkit-progress-value { background: #dc3545; }" in css
    assert ".atw-progress-failed::-moz-progress-bar { background: #dc3545; }" in css


@pytest.mark.parametrize(("which", "shown"), [("running", True), ("pending", True), ("completed", False)])
def test_detail_page_has_a_cancel_button_while_the_task_can_be_cancelled(
    admin_client: Client, tasks: dict[str, str], which: str, shown: bool
) -> None:
    task_id = tasks[which]
    html = admin_client.get(detail(task_id)).content.decode()
    assert (f'action="{CHANGELIST}{task_id}/cancel/"' in html) is shown
    assert (f'data-atw-cancel="{task_id}">Cancel task</button>' in html) is shown


def test_cancel_button_cancels_through_a_post(admin_client: Client, tasks: dict[str, str]) -> None:
    response = admin_client.post(f"{CHANGELIST}{tasks['running']}/cancel/", follow=True)
    assert response.redirect_chain[-1][0] == detail(tasks["running"])
    assert "Asked the task&#x27;s worker to cancel it." in response.content.decode()
    assert TaskRecord.objects.get(id=tasks["running"]).cancel_requested

    admin_client.post(f"{CHANGELIST}{tasks['pending']}/cancel/")
    assert TaskRecord.objects.get(id=tasks["pending"]).status == TaskStatus.CANCELLED.value

    response = admin_client.post(f"{CHANGELIST}{tasks['completed']}/cancel/", follow=True)
    assert "already finished" in response.content.decode()
    assert admin_client.get(f"{CHANGELIST}{tasks['running']}/cancel/").status_code == 405


def test_cancel_needs_csrf_and_the_change_permission(
    client: Client, django_user_model: Any, tasks: dict[str, str]
) -> None:
    user = django_user_model.objects.create_user(username="viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_taskrecord"))
    client.force_login(user)
    assert "Cancel task" not in client.get(detail(tasks["running"])).content.decode()
    assert client.post(f"{CHANGELIST}{tasks['running']}/cancel/").status_code == 403

    admin = django_user_model.objects.create_superuser(username="boss", password="pw")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin)
    assert strict.post(f"{CHANGELIST}{tasks['running']}/cancel/").status_code == 403
    assert not TaskRecord.objects.get(id=tasks["running"]).cancel_requested


def test_a_running_task_cannot_be_deleted(admin_client: Client, tasks: dict[str, str]) -> None:
    running = tasks["running"]
    assert f'href="{CHANGELIST}{running}/delete/"' not in admin_client.get(detail(running)).content.decode()
    assert admin_client.post(f"{CHANGELIST}{running}/delete/", {"post": "yes"}).status_code == 403
    assert TaskRecord.objects.filter(id=running).exists()
    failed = tasks["failed"]
    assert f'href="{CHANGELIST}{failed}/delete/"' in admin_client.get(detail(failed)).content.decode()


def test_bulk_delete_refuses_a_selection_with_a_running_task(
    admin_client: Client, tasks: dict[str, str]
) -> None:
    messages = run_action(admin_client, "delete_selected", [tasks["running"], tasks["completed"]])
    assert any("1 running task selected: a running task cannot be deleted" in m for m in messages)
    assert TaskRecord.objects.filter(id__in=[tasks["running"], tasks["completed"]]).count() == 2

    response = admin_client.post(
        CHANGELIST,
        {
            "action": "delete_selected",
            "_selected_action": [tasks["completed"], tasks["failed"]],
            "post": "yes",
        },
    )
    assert response.status_code == 302
    assert not TaskRecord.objects.filter(id__in=[tasks["completed"], tasks["failed"]]).exists()


def test_bulk_delete_keeps_a_task_that_started_after_the_confirmation_page(
    admin_client: Client, tasks: dict[str, str]
) -> None:
    admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [tasks["pending"]]})
    TaskRecord.objects.filter(id=tasks["pending"]).update(status=TaskStatus.RUNNING.value)
    admin_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [tasks["pending"]], "post": "yes"}
    )
    assert TaskRecord.objects.filter(id=tasks["pending"]).exists()
