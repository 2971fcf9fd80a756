"""The API's store functions: one query each, whatever the filters or page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from django_atw import enqueue, store
from django_atw.status import TaskStatus

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_filtered_page_after_a_cursor_costs_one_query(django_assert_num_queries, django_user_model):
    owner = django_user_model.objects.create_user("owner")
    for _ in range(5):
        enqueue("noop", created_by=owner)
    first, key = store.list_tasks_page(store.PageFilters(owner_id=owner.pk), 2)
    filters = store.PageFilters(
        status=TaskStatus.PENDING,
        task_type="noop",
        queue="default",
        created_before=timezone.now() + timedelta(minutes=1),
        owner_id=owner.pk,
    )
    with django_assert_num_queries(1):
        page, _next = store.list_tasks_page(filters, 2, key)
    assert len(page) == 2 and not {t.id for t in page} & {t.id for t in first}


def test_reading_a_visible_task_costs_one_query_and_hides_others_tasks(
    django_assert_num_queries, django_user_model
):
    owner = django_user_model.objects.create_user("owner")
    task_id = enqueue("noop")
    with django_assert_num_queries(1):
        assert store.get_visible_task(task_id, owner.pk) is None
    assert store.get_visible_task(task_id, None) is not None


def test_reading_health_costs_three_queries(django_assert_num_queries):
    with django_assert_num_queries(3):
        store.read_health(timezone.now() - timedelta(minutes=1), excluding="embedded")
