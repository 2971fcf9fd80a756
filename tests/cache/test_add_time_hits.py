"""A cache hit found when a task is added: the row is inserted completed, never claimed or run."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_atw import AsyncCacheAdapter, QueueFullError, TaskStatus, aget_task_info, enqueue, enqueue_many
from django_atw.cache.adapter import default_adapter
from django_atw.models import CacheEntry, TaskRecord
from django_atw.store.thread import DatabaseThread
from tests.cache import cache_tasks

pytestmark = pytest.mark.django_db(transaction=True)
TASK_TABLE = TaskRecord._meta.db_table
ENTRY_TABLE = CacheEntry._meta.db_table


def touching(captured: list[dict[str, Any]], table: str) -> list[str]:
    """The captured statements that name ``table``."""
    return [q["sql"] for q in captured if table in q["sql"]]


@contextlib.asynccontextmanager
async def queries_on(*threads: DatabaseThread) -> AsyncIterator[list[dict[str, Any]]]:
    """Capture the SQL run on a worker's own database threads (their connections)."""
    captured: list[dict[str, Any]] = []
    contexts = []
    for thread in dict.fromkeys(threads):
        context = await thread.run(lambda: CaptureQueriesContext(connections["default"]))
        await thread.run(context.__enter__)
        contexts.append((thread, context))
    try:
        yield captured
    finally:
        for thread, context in contexts:
            await thread.run(context.__exit__, None, None, None)
            captured.extend(context.captured_queries)


async def assert_completed_from_cache(task_id: str, result: Any) -> None:
    record = await TaskRecord.objects.aget(id=task_id)
    assert (record.status, record.from_cache, record.progress, record.result) == (
        TaskStatus.COMPLETED.value,
        True,
        1.0,
        result,
    )
    assert record.started_at is not None and record.started_at == record.completed_at
    assert record.updated_at is not None and record.worker_id is None and record.attempts == 0


async def check_hit_at_add(worker: Any) -> None:
    first = await worker.add_task(cache_tasks.square, 5)
    assert await (await worker.get_task_future(first)) == 25
    assert cache_tasks.calls["cache_square"] == 1
    async with queries_on(worker._db, worker._runtime.write_db) as captured:
        task_id = await worker.add_task(cache_tasks.square, 5)
        future = await worker.get_task_future(task_id)
    assert future.done() and future.result() == 25  # resolved at add time, nothing awaited
    assert cache_tasks.calls["cache_square"] == 1
    statements = touching(captured, TASK_TABLE)
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith(("INSERT", "WITH")), statements
    await assert_completed_from_cache(task_id, 25)
    assert task_id not in worker.running_task_ids()


async def test_a_hit_at_add_time_is_inserted_completed_on_each_backend(make_worker, make_adapter):
    worker = await make_worker(cache_enabled=True, cache_adapter=make_adapter())
    await check_hit_at_add(worker)


async def test_a_hit_at_add_time_on_redis(make_worker, redis_alias):
    adapter = AsyncCacheAdapter(backend="django", alias=redis_alias, default_ttl=60)
    worker = await make_worker(cache_enabled=True, cache_adapter=adapter)
    await check_hit_at_add(worker)


async def test_an_add_time_hit_counts_and_maps_like_a_hit_when_running(make_worker):
    adapter = AsyncCacheAdapter(backend="database")
    worker = await make_worker(cache_enabled=True, cache_adapter=adapter)
    first = await worker.add_task(cache_tasks.square, 6)
    await worker.wait_for_tasks([first], timeout=10)
    entry = await CacheEntry.objects.aget()
    task_id = await worker.add_task(cache_tasks.square, 6)
    hit = await CacheEntry.objects.aget()
    assert hit.hits == entry.hits + 1 and hit.last_accessed > entry.last_accessed
    assert await adapter.get_by_task_id(adapter.generate_entry_id("cache_square", task_id)) == (True, 36)
    assert (await worker.get_task_info(task_id)).from_cache


async def test_add_tasks_with_hits_and_misses_keeps_order_and_ids(make_worker):
    adapter = AsyncCacheAdapter(backend="database")
    worker = await make_worker(cache_enabled=True, cache_adapter=adapter)
    await worker.wait_for_tasks([await worker.add_task(cache_tasks.square, n) for n in (2, 4)], timeout=10)
    assert cache_tasks.calls["cache_square"] == 2
    async with queries_on(worker._db) as captured:
        ids = await worker.add_tasks(cache_tasks.square, [(1,), (2,), (3,), (4,), (2,)])
    assert len(touching(captured, ENTRY_TABLE)) == 1  # one batched lookup for all five
    assert await worker.wait_for_tasks(ids, timeout=10) == [1, 4, 9, 16, 4]
    assert cache_tasks.calls["cache_square"] == 4  # only 1 and 3 ran
    records = {r.id: r async for r in TaskRecord.objects.filter(id__in=ids)}
    assert [records[i].args for i in ids] == [[1], [2], [3], [4], [2]]
    assert [records[i].from_cache for i in ids] == [False, True, False, True, True]
    created = [records[i].created_at for i in ids]
    assert created == sorted(created) and len(set(created)) == len(ids)


async def test_an_unreadable_entry_falls_back_to_running_the_task(make_worker):
    adapter = AsyncCacheAdapter(backend="memory")
    worker = await make_worker(cache_enabled=True, cache_adapter=adapter)
    key = adapter.make_key("cache_square", [7], {})
    adapter.backend.set(key, b"\xc1 not msgpack", None, "cache_square", None)
    task_id = await worker.add_task(cache_tasks.square, 7)
    assert await (await worker.get_task_future(task_id)) == 49
    assert cache_tasks.calls["cache_square"] == 1
    assert (await aget_task_info(task_id)).from_cache is False


async def test_a_value_json_cannot_hold_falls_back_to_running_the_task(make_worker):
    adapter = AsyncCacheAdapter(backend="memory")
    worker = await make_worker(cache_enabled=True, cache_adapter=adapter)
    await adapter.set_entry(adapter.make_key("cache_square", [8], {}), {1, 2})  # a set: not JSON
    task_id = await worker.add_task(cache_tasks.square, 8)
    assert await (await worker.get_task_future(task_id)) == 64
    assert cache_tasks.calls["cache_square"] == 1


async def test_a_deferred_task_is_looked_up_when_it_runs_not_when_added(make_worker):
    worker = await make_worker(cache_enabled=True, cache_adapter=AsyncCacheAdapter(backend="memory"))
    await worker.wait_for_tasks([await worker.add_task(cache_tasks.square, 3)], timeout=10)
    task_id = await worker.add_task(cache_tasks.square, 3, run_after=timedelta(milliseconds=50))
    assert (await aget_task_info(task_id)).status == TaskStatus.PENDING
    assert await (await worker.get_task_future(task_id)) == 9
    assert (await aget_task_info(task_id)).from_cache and cache_tasks.calls["cache_square"] == 1


async def test_an_entry_stored_after_the_add_is_found_when_the_task_runs(make_worker):
    """The lookup when a task runs stays: here the entry appears between add and claim."""
    with override_settings(ATW={"CACHE": {"ENABLED": True, "BACKEND": "memory"}}):
        task_id = await enqueue_async(cache_tasks.square, 9)
        adapter = default_adapter()
        assert (await aget_task_info(task_id)).status == TaskStatus.PENDING
        await adapter.set_entry(adapter.make_key("cache_square", [9], {}), 81)
        worker = await make_worker(cache_enabled=True, cache_adapter=adapter)
        assert await (await worker.get_task_future(task_id)) == 81
    assert (await aget_task_info(task_id)).from_cache and cache_tasks.calls["cache_square"] == 0


async def enqueue_async(*args: Any, **kwargs: Any) -> str:
    from django_atw import aenqueue

    task_id: str = await aenqueue(*args, **kwargs)
    return task_id


@contextlib.contextmanager
def cache_settings(backend: str, alias: str = "atw") -> Iterator[AsyncCacheAdapter]:
    with override_settings(
        ATW={"CACHE": {"ENABLED": True, "BACKEND": backend, "ALIAS": alias, "DEFAULT_TTL": 60}}
    ):
        yield default_adapter()


def seed(adapter: AsyncCacheAdapter, func_name: str, args: list[Any], value: Any) -> None:
    async_to_sync(adapter.set_entry)(adapter.make_key(func_name, args, {}), value, task_type=func_name)


def check_enqueue_hit(adapter: AsyncCacheAdapter) -> None:
    seed(adapter, "cache_square", [4], 16)
    with CaptureQueriesContext(connection) as captured:
        task_id = enqueue(cache_tasks.square, 4)
    statements = touching(captured.captured_queries, TASK_TABLE)
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith(("INSERT", "WITH"))
    async_to_sync(assert_completed_from_cache)(task_id, 16)
    assert cache_tasks.calls["cache_square"] == 0


def test_enqueue_without_a_worker_stores_a_hit_completed(backend_name: str):
    with cache_settings(backend_name) as adapter:
        check_enqueue_hit(adapter)


def test_enqueue_without_a_worker_on_redis(redis_alias: str):
    with cache_settings("django", redis_alias) as adapter:
        check_enqueue_hit(adapter)


def test_enqueue_many_with_hits_and_misses_is_one_insert():
    with cache_settings("database") as adapter:
        seed(adapter, "cache_square", [2], 4)
        with CaptureQueriesContext(connection) as captured:
            ids = enqueue_many(cache_tasks.square, [(1,), (2,), (3,)])
        assert len(touching(captured.captured_queries, TASK_TABLE)) == 1
        assert len(touching(captured.captured_queries, ENTRY_TABLE)) == 1
    records = {r.id: r for r in TaskRecord.objects.filter(id__in=ids)}
    assert [(records[i].status, records[i].result) for i in ids] == [
        ("pending", None),
        ("completed", 4),
        ("pending", None),
    ]


def test_use_cache_false_and_the_switch_off_still_insert_pending():
    with cache_settings("memory") as adapter:
        seed(adapter, "cache_square", [4], 16)
        opted_out = enqueue(cache_tasks.square, 4, use_cache=False)
        assert TaskRecord.objects.get(id=opted_out).status == "pending"
    with override_settings(ATW={"CACHE": {"ENABLED": False, "BACKEND": "memory"}}):
        seed(default_adapter(), "cache_square", [4], 16)
        switched_off = enqueue(cache_tasks.square, 4)
    assert TaskRecord.objects.get(id=switched_off).status == "pending"


async def test_the_worker_switch_off_wins_at_add_time(make_worker):
    adapter = AsyncCacheAdapter(backend="memory")
    await adapter.set_entry(adapter.make_key("cache_square", [4], {}), 16)
    worker = await make_worker(cache_enabled=False, cache_adapter=adapter)
    task_id = await worker.add_task(cache_tasks.square, 4, use_cache=True)
    assert await (await worker.get_task_future(task_id)) == 16
    assert cache_tasks.calls["cache_square"] == 1
    assert not (await aget_task_info(task_id)).from_cache


async def test_a_hit_does_not_count_against_max_queue_size(make_worker):
    adapter = AsyncCacheAdapter(backend="memory")
    await adapter.set_entry(adapter.make_key("cache_square", [4], {}), 16)
    worker = await make_worker(cache_enabled=True, cache_adapter=adapter, max_queue_size=1)
    await worker.add_task(cache_tasks.square, 1, queue="elsewhere")  # pending: the queue is full
    task_id = await worker.add_task(cache_tasks.square, 4)
    assert await (await worker.get_task_future(task_id)) == 16
    with pytest.raises(QueueFullError):
        await worker.add_task(cache_tasks.square, 5)
