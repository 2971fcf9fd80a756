"""The CacheEntry admin: listing, expiry flag, search by key and task id, actions."""

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from django_atw.models import CacheEntry

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/django_atw/cacheentry/"


def entry(key: str, *, expired: bool = False, task_id: str = "") -> CacheEntry:
    now = timezone.now()
    return CacheEntry.objects.create(
        key=key,
        value=b"\xa1x",
        size=2,
        task_type="cache_square",
        task_id=task_id,
        created_at=now,
        expires_at=now + timedelta(seconds=-5 if expired else 600),
        last_accessed=now,
        hits=3,
    )


@pytest.fixture
def staff(admin_client: Client) -> Client:
    return admin_client


def test_the_list_shows_key_task_type_size_expiry_and_hits(staff):
    entry("cache_square:live")
    entry("cache_square:old", expired=True)
    page = staff.get(CHANGELIST).content.decode()
    assert "cache_square:live" in page and "cache_square:old" in page
    assert 'alt="True"' in page and 'alt="False"' in page  # the expired column


def test_search_finds_entries_by_key_and_by_task_id(staff):
    entry("alpha-key", task_id="cache_square:task-111")
    entry("beta-key", task_id="cache_square:task-222")
    by_key = staff.get(CHANGELIST, {"q": "alpha"}).content.decode()
    assert "alpha-key" in by_key and "beta-key" not in by_key
    by_task = staff.get(CHANGELIST, {"q": "task-222"}).content.decode()
    assert "beta-key" in by_task and "alpha-key" not in by_task


def test_invalidate_selected_deletes_only_those(staff):
    entry("one")
    entry("two")
    response = staff.post(CHANGELIST, {"action": "invalidate_entries", "_selected_action": ["one"]})
    assert response.status_code == 302
    assert list(CacheEntry.objects.values_list("key", flat=True)) == ["two"]
    assert "Invalidated 1 cache entry." in [str(m) for m in get_messages(response.wsgi_request)]


def test_purge_expired_deletes_every_expired_entry(staff):
    entry("live")
    entry("old-1", expired=True)
    entry("old-2", expired=True)
    response = staff.post(CHANGELIST, {"action": "purge_expired", "_selected_action": ["live"]})
    assert response.status_code == 302
    assert list(CacheEntry.objects.values_list("key", flat=True)) == ["live"]


def test_entries_cannot_be_added_or_edited(staff):
    entry("k")
    assert staff.get(CHANGELIST + "add/").status_code == 403
    page = staff.get(CHANGELIST + "k/change/").content.decode()
    assert 'name="key"' not in page
