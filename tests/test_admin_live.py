"""The task admin's pages load live.js and mark their badges and bars for it."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from django_atw import enqueue

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/django_atw/taskrecord/"


@pytest.mark.parametrize("page", ["changelist", "detail"])
def test_task_pages_bind_badges_and_bars_to_live_js(admin_client: Client, page: str) -> None:
    task_id = enqueue("echo", 1)
    url = CHANGELIST if page == "changelist" else f"{CHANGELIST}{task_id}/change/"
    html = admin_client.get(url).content.decode()
    assert '<script src="/static/django_atw/live.js" type="module"></script>' in html
    assert 'href="/static/django_atw/admin.css"' in html
    assert f'data-atw-status="{task_id}"' in html
    assert (
        '<progress class="atw-progress atw-progress-pending" value="0.0000" max="1" '
        f'data-atw-task-id="{task_id}">' in html
    )
    assert f'data-atw-percent="{task_id}">0%<' in html


def test_the_package_ships_the_browser_files() -> None:
    # Found through the app's static folder: present in an installed wheel, not only in a checkout.
    for name in ("django_atw/live.js", "django_atw/admin.js", "django_atw/admin.css"):
        assert finders.find(name), name
