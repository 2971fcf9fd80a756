"""The task and worker admin: listing, filters, search, the read-only detail page and actions."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from django_atw import TaskStatus, enqueue
from django_atw.models import TaskRecord, WorkerProcess

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/django_atw/taskrecord/"
TRACEBACK = 'Traceback (most recent call last):\n  File "tasks.py", line 3\nValueError: <boom> & more'


def finish(task_id: str, status: TaskStatus, **fields: Any) -> None:
    """Give a task a final state as a worker would have written it."""
    now = timezone.now()
    fields.setdefault("started_at", now - timedelta(seconds=2))
    fields.setdefault("completed_at", now)
    TaskRecord.objects.filter(id=task_id).update(status=status.value, **fields)


@pytest.fixture
def tasks() -> dict[str, str]:
    """One task per status, with distinct types, queues and metadata."""
    ids = {
        "pending": enqueue("echo", 1, queue="default", metadata={"customer": "acme"}),
        "running": enqueue("wait_for_gate", "g", queue="slow", metadata={"customer": "globex"}),
        "completed": enqueue("echo", 2, greeting="hi", metadata={"city": "Zürich", "customer": "initech"}),
        "failed": enqueue("fail", "boom"),
        "cancelled": enqueue("noop"),
    }
    now = timezone.now()
    TaskRecord.objects.filter(id=ids["running"]).update(
        status=TaskStatus.RUNNING.value, started_at=now, progress=0.42
    )
    finish(ids["completed"], TaskStatus.COMPLETED, progress=1.0, result={"args": [2], "kwargs": {"k": "é"}})
    finish(ids["failed"], TaskStatus.FAILED, error="boom", error_type="ValueError", traceback=TRACEBACK)
    finish(ids["cancelled"], TaskStatus.CANCELLED)
    return ids


def listed_ids(client: Client, query: str = "") -> set[str]:
    response = client.get(CHANGELIST + query)
    assert response.status_code == 200
    return {row.pk for row in response.context["cl"].result_list}


def test_changelist_shows_every_status_with_progress_bars(
    admin_client: Client, tasks: dict[str, str]
) -> None:
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert listed_ids(admin_client) == set(tasks.values())
    for status in TaskStatus:
        assert f"atw-status-{status.value}" in html
    running = tasks["running"]
    assert re.search(rf'<progress[^>]*value="0\.4200"[^>]*max="1"[^>]*data-atw-task-id="{running}"', html)
    assert "42%" in html
    assert html.count("<progress") == len(tasks)
    assert "2.00 s" in html  # duration of a finished task
    # Newest first.
    assert response.context["cl"].result_list[0].pk == tasks["cancelled"]


def test_changelist_defers_large_columns(admin_client: Client, tasks: dict[str, str]) -> None:
    rows = admin_client.get(CHANGELIST).context["cl"].result_list
    assert {"traceback", "result", "args"} <= rows[0].get_deferred_fields()


def test_filters_by_status_and_task_type(admin_client: Client, tasks: dict[str, str]) -> None:
    assert listed_ids(admin_client, "?status__exact=failed") == {tasks["failed"]}
    assert listed_ids(admin_client, "?status__exact=running") == {tasks["running"]}
    assert listed_ids(admin_client, "?task_type=echo") == {tasks["pending"], tasks["completed"]}
    assert listed_ids(admin_client, "?task_type=echo&status__exact=pending") == {tasks["pending"]}
    assert listed_ids(admin_client, "?queue=slow") == {tasks["running"]}


def test_search_by_id_type_and_metadata(admin_client: Client, tasks: dict[str, str]) -> None:
    assert listed_ids(admin_client, f"?q={tasks['failed']}") == {tasks["failed"]}
    assert listed_ids(admin_client, "?q=wait_for") == {tasks["running"]}
    assert listed_ids(admin_client, "?q=globex") == {tasks["running"]}
    assert listed_ids(admin_client, "?q=INITECH") == {tasks["completed"]}
    assert listed_ids(admin_client, "?q=Zürich") == {tasks["completed"]}
    # Every word must match somewhere.
    assert listed_ids(admin_client, "?q=echo+acme") == {tasks["pending"]}
    assert listed_ids(admin_client, "?q=nothing-like-this") == set()


def test_detail_page_is_read_only_with_pretty_json_and_traceback(
    admin_client: Client, tasks: dict[str, str]
) -> None:
    response = admin_client.get(f"{CHANGELIST}{tasks['completed']}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    # (Keys in jsonb's own order, short keys first, so both databases render the same.)
    assert (
        "<pre>{\n  &quot;city&quot;: &quot;Zürich&quot;,\n"
        "  &quot;customer&quot;: &quot;initech&quot;\n}</pre>" in html
    )
    assert "<pre>[\n  2\n]</pre>" in html  # args
    assert "&quot;greeting&quot;: &quot;hi&quot;" in html  # kwargs
    assert "&quot;k&quot;: &quot;é&quot;" in html  # result, not ASCII-escaped
    assert 'name="_save"' not in html
    assert 'name="_continue"' not in html
    assert not response.context["adminform"].form.fields  # every field is read-only
    assert "<textarea" not in html
    assert not re.search(r'<input[^>]*name="(?!csrfmiddlewaretoken)', html)
    assert "/delete/" in html  # deleting stays allowed

    failed = admin_client.get(f"{CHANGELIST}{tasks['failed']}/change/").content.decode()
    assert (
        "<pre>Traceback (most recent call last):\n  File &quot;tasks.py&quot;, line 3\n"
        "ValueError: &lt;boom&gt; &amp; more</pre>"
    ) in failed


def test_detail_page_refuses_posts_and_there_is_no_add(admin_client: Client, tasks: dict[str, str]) -> None:
    url = f"{CHANGELIST}{tasks['pending']}/change/"
    assert admin_client.post(url, {"task_type": "noop", "priority": "5"}).status_code == 403
    assert TaskRecord.objects.get(id=tasks["pending"]).priority == 0
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert f'href="{CHANGELIST}add/"' not in admin_client.get(CHANGELIST).content.decode()


def test_delete_stays_allowed(admin_client: Client, tasks: dict[str, str]) -> None:
    response = admin_client.post(f"{CHANGELIST}{tasks['failed']}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not TaskRecord.objects.filter(id=tasks["failed"]).exists()


def run_action(client: Client, action: str, ids: list[str]) -> list[str]:
    response = client.post(CHANGELIST, {"action": action, "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_cancel_action(admin_client: Client, tasks: dict[str, str]) -> None:
    messages = run_action(
        admin_client, "cancel_tasks", [tasks["pending"], tasks["running"], tasks["completed"]]
    )
    assert TaskRecord.objects.get(id=tasks["pending"]).status == TaskStatus.CANCELLED.value
    running = TaskRecord.objects.get(id=tasks["running"])
    assert running.status == TaskStatus.RUNNING.value
    assert running.cancel_requested
    assert TaskRecord.objects.get(id=tasks["completed"]).status == TaskStatus.COMPLETED.value
    text = " ".join(messages)
    assert "Cancelled 1 task." in text
    assert "1 running task" in text
    assert "1 task had already finished and could not be cancelled." in text


def test_rerun_action_adds_new_pending_tasks(admin_client: Client, tasks: dict[str, str]) -> None:
    before = set(TaskRecord.objects.values_list("id", flat=True))
    messages = run_action(admin_client, "rerun_tasks", [tasks["completed"], tasks["failed"]])
    assert "Added 2 new tasks." in messages
    new = TaskRecord.objects.exclude(id__in=before).order_by("created_at")
    assert [task.task_type for task in new] == ["echo", "fail"]  # oldest original first
    copy, original = new[0], TaskRecord.objects.get(id=tasks["completed"])
    assert copy.status == TaskStatus.PENDING.value
    assert (copy.args, copy.kwargs, copy.metadata) == (original.args, original.kwargs, original.metadata)
    assert (copy.priority, copy.queue, copy.timeout) == (original.priority, original.queue, original.timeout)
    assert copy.created_by is not None and copy.created_by.username == "admin"
    assert copy.result is None and copy.progress == 0.0


def test_rerun_reports_unknown_task_types(admin_client: Client, tasks: dict[str, str]) -> None:
    TaskRecord.objects.filter(id=tasks["failed"]).update(task_type="no_such_task_type")
    before = TaskRecord.objects.count()
    messages = run_action(admin_client, "rerun_tasks", [tasks["failed"]])
    assert TaskRecord.objects.count() == before
    assert any("could not be run again" in m and "no_such_task_type" in m for m in messages)


def test_staff_without_add_permission_cannot_rerun(
    client: Client, django_user_model: Any, tasks: dict[str, str]
) -> None:
    user = django_user_model.objects.create_user(username="staff", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="django_atw", codename__in=["view_taskrecord", "change_taskrecord"]
        )
    )
    client.force_login(user)
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    actions = [value for value, _label in response.context["action_form"].fields["action"].choices]
    assert "cancel_tasks" in actions
    assert "rerun_tasks" not in actions
    before = TaskRecord.objects.count()
    client.post(CHANGELIST, {"action": "rerun_tasks", "_selected_action": [tasks["completed"]]})
    assert TaskRecord.objects.count() == before

    user.user_permissions.add(Permission.objects.get(codename="add_taskrecord"))
    user = django_user_model.objects.get(pk=user.pk)  # fresh permission cache
    client.force_login(user)
    actions = [value for value, _ in client.get(CHANGELIST).context["action_form"].fields["action"].choices]
    assert "rerun_tasks" in actions


def test_worker_changelist_is_read_only(admin_client: Client) -> None:
    now = timezone.now()
    WorkerProcess.objects.create(
        id="w-1",
        hostname="web-7",
        pid=4242,
        queues=["default", "slow"],
        concurrency=4,
        tasks_running=2,
        started_at=now,
        last_heartbeat=now,
    )
    response = admin_client.get("/admin/django_atw/workerprocess/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "web-7" in html
    assert "default, slow" in html
    assert 'href="/admin/django_atw/workerprocess/add/"' not in html
    detail = admin_client.get("/admin/django_atw/workerprocess/w-1/change/")
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert (
        admin_client.post("/admin/django_atw/workerprocess/w-1/delete/", {"post": "yes"}).status_code == 302
    )
    assert not WorkerProcess.objects.filter(id="w-1").exists()


def test_task_detail_links_worker_even_when_its_row_is_gone(
    admin_client: Client, tasks: dict[str, str]
) -> None:
    TaskRecord.objects.filter(id=tasks["running"]).update(worker_id="gone-worker")
    response = admin_client.get(f"{CHANGELIST}{tasks['running']}/change/")
    assert response.status_code == 200
    assert 'href="/admin/django_atw/workerprocess/gone-worker/change/"' in response.content.decode()
