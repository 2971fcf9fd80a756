"""GET tasks: filters, limits and cursor pagination that stays stable while tasks are added."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from django_atw import aenqueue, store
from django_atw.models import TaskRecord
from django_atw.values import NewTask
from tests.api.conftest import API

pytestmark = pytest.mark.django_db(transaction=True)


async def ids(client, query: str = "") -> list[str]:
    response = await client.get(API + "tasks" + query)
    assert response.status_code == 200, response.json()
    return [task["id"] for task in response.json()["tasks"]]


def flat(pages: list[list[str]]) -> list[str]:
    return [task_id for page in pages for task_id in page]


async def walk(client, query: str, between_pages=None) -> list[list[str]]:
    """Follow ``next`` to the end; return the ids of each page."""
    pages: list[list[str]] = []
    url = API + "tasks" + query
    while True:
        body = (await client.get(url)).json()
        assert body["count"] == len(body["tasks"])
        pages.append([task["id"] for task in body["tasks"]])
        if body["next"] is None:
            return pages
        if between_pages is not None:
            await between_pages()
        separator = "&" if "?" in query else "?"
        url = API + "tasks" + query + f"{separator}cursor={body['next']}"


async def test_lists_newest_first_with_count_and_no_next_on_the_last_page(operator):
    first, second = await aenqueue("noop"), await aenqueue("noop")
    body = (await operator.client.get(API + "tasks")).json()
    assert ([t["id"] for t in body["tasks"]], body["count"], body["next"]) == ([second, first], 2, None)


async def test_filters_by_status_task_type_and_queue(operator):
    noop, echo, elsewhere = await aenqueue("noop"), await aenqueue("echo"), await aenqueue("noop", queue="q2")
    await operator.client.delete(API + f"tasks/{noop}")
    assert await ids(operator.client, "?status=cancelled") == [noop]
    assert await ids(operator.client, "?status=pending&task_type=noop") == [elsewhere]
    assert await ids(operator.client, "?task_type=echo") == [echo]
    assert await ids(operator.client, "?queue=q2") == [elsewhere]


async def test_task_status_filters_as_in_the_original_router(operator):
    cancelled, _pending = await aenqueue("noop"), await aenqueue("noop")
    await operator.client.delete(API + f"tasks/{cancelled}")
    assert await ids(operator.client, "?task_status=cancelled") == [cancelled]


async def test_older_than_minutes_keeps_only_older_tasks(operator):
    old = await aenqueue("noop")
    await TaskRecord.objects.filter(id=old).aupdate(created_at=timezone.now() - timedelta(minutes=30))
    await aenqueue("noop")
    assert await ids(operator.client, "?older_than_minutes=10") == [old]


async def test_created_by_me_keeps_the_callers_tasks(operator, make_user):
    other = await make_user("other")
    mine, _theirs = await aenqueue("noop", created_by=operator), await aenqueue("noop", created_by=other)
    assert await ids(operator.client, "?created_by=me") == [mine]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=ten", "limit"),
        ("?status=done", "status"),
        ("?older_than_minutes=-1", "older_than_minutes"),
        ("?created_by=someone", "created_by"),
        ("?stauts=pending", "stauts"),  # a typo is an error, not an ignored filter
        ("?cursor=bm90LWEtY3Vyc29y", "cursor"),
    ],
)
async def test_bad_query_parameters_answer_422_naming_them(operator, query, field):
    response = await operator.client.get(API + "tasks" + query)
    assert (response.status_code, response.json()["error"]["field"]) == (422, field)


async def test_pages_cover_every_task_once_in_order(operator):
    created = [await aenqueue("noop") for _ in range(7)]
    pages = await walk(operator.client, "?limit=3")
    assert [len(page) for page in pages] == [3, 3, 1]
    assert flat(pages) == created[::-1]


async def test_pagination_is_stable_while_tasks_are_added(operator):
    created = [await aenqueue("noop") for _ in range(6)]
    added: list[str] = []

    async def add_two() -> None:
        added.extend([await aenqueue("noop"), await aenqueue("noop")])

    pages = await walk(operator.client, "?limit=2", between_pages=add_two)
    # Tasks added after the first page are newer than the cursor: they never shift or repeat
    # what the walk already saw, nor appear in its later pages.
    assert flat(pages) == created[::-1]
    assert len(added) == 4 and not set(added) & set(flat(pages))
    assert (await ids(operator.client, "?limit=4")) == added[::-1]


async def test_pagination_tells_apart_tasks_created_in_the_same_microsecond(operator):
    now = timezone.now()
    same = [
        NewTask(
            id=f"same-{n}", task_type="noop", args=[], kwargs={}, metadata={}, priority=0, queue="default",
            timeout=None, use_cache=None, cache_ttl=None, created_at=now,
        )
        for n in range(5)
    ]  # fmt: skip
    await sync_to_async(store.add_tasks)(same)
    pages = await walk(operator.client, "?limit=2")
    assert flat(pages) == [f"same-{n}" for n in (4, 3, 2, 1, 0)]


async def test_filters_apply_on_every_page(operator):
    for n in range(5):
        await aenqueue("noop" if n % 2 else "echo")
    pages = await walk(operator.client, "?task_type=echo&limit=1")
    assert len(flat(pages)) == 3
