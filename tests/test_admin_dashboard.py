"""The operations dashboard's admin page: who may open it, the admin's link to it, its assets."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.staticfiles import finders
from django.test import Client

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/django_atw/operationsdashboard/"


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def staff(name: str, *codenames: str) -> User:
    user = User.objects.create_user(name, is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return User.objects.get(pk=user.pk)


def test_a_superuser_sees_the_page_with_its_socket_and_chart_library():
    admin = User.objects.create_superuser("root")
    response = client_for(admin).get(DASHBOARD)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-socket="/ws/atw/dashboard/"' in html
    assert "django_atw/vendor/uPlot.iife.min.js" in html
    assert "django_atw/dashboard.js" in html
    for table in ("atw-dash-queues", "atw-dash-types", "atw-dash-workers", "atw-dash-stuck"):
        assert f'id="{table}"' in html


def test_the_admin_index_links_to_the_dashboard():
    admin = User.objects.create_superuser("root")
    html = client_for(admin).get("/admin/").content.decode()
    assert f'href="{DASHBOARD}"' in html
    assert "Operations dashboard" in html


def test_staff_with_view_permission_may_open_it():
    assert client_for(staff("viewer", "view_taskrecord")).get(DASHBOARD).status_code == 200


def test_staff_without_view_permission_get_403_and_no_link():
    user = staff("nobody")
    assert client_for(user).get(DASHBOARD).status_code == 403
    assert DASHBOARD not in client_for(user).get("/admin/").content.decode()


def test_a_signed_in_user_who_is_not_staff_is_sent_to_the_login():
    user = User.objects.create_user("alice")
    user.user_permissions.add(Permission.objects.get(codename="view_taskrecord"))
    response = client_for(user).get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_an_anonymous_visitor_is_sent_to_the_login():
    response = client_for(None).get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_nothing_can_be_added_changed_or_deleted_there():
    admin = User.objects.create_superuser("root")
    assert client_for(admin).get(DASHBOARD + "add/").status_code == 404


def test_the_static_files_ship_with_the_package():
    for name in ("dashboard.js", "dashboard.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"):
        assert finders.find(f"django_atw/{name}"), name
    assert finders.find("django_atw/vendor/uPlot.LICENSE")


def test_a_frame_never_counts_fewer_finished_tasks_per_type_than_its_chart(monkeypatch):
    """The frame's reads are not one snapshot. A task that finished between them used to be in
    the chart (throughput, read last) but not in the per-type table (read first)."""
    from django.utils import timezone

    from django_atw import enqueue
    from django_atw.models import TaskRecord
    from django_atw.realtime import dashboard
    from django_atw.store import stats

    real_throughput = stats.throughput

    def a_task_ends_just_before(since):
        task_id = enqueue("noop")  # it runs and completes "meanwhile"
        now = timezone.now()
        TaskRecord.objects.filter(id=task_id).update(status="completed", started_at=now, completed_at=now)
        return real_throughput(since)

    monkeypatch.setattr(stats, "throughput", a_task_ends_just_before)
    frame = dashboard.read_snapshot(full=True)
    charted = sum(bucket[1] for bucket in frame["throughput"])
    tabled = sum(t["completed"] for t in frame["types"])
    assert charted == 1
    assert tabled >= charted
