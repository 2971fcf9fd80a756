"""The result cache through the worker: hits, opt-outs, TTLs, README key functions, joining."""

import asyncio
import logging

import pytest
from django.test import override_settings

from django_atw import (
    AsyncCacheAdapter,
    TaskStatus,
    aenqueue,
    aget_task_info,
    compose_key_functions,
    extract_key_component,
    key_component,
)
from django_atw.exceptions import TaskTimeoutError
from django_atw.models import TaskRecord
from tests.cache import cache_tasks
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


async def run(worker, func, *args, **options):
    """Add a task, wait for it, return (result, TaskInfo)."""
    task_id = await worker.add_task(func, *args, **options)
    result = await (await worker.get_task_future(task_id))
    return result, await worker.get_task_info(task_id)


async def stored_key(task_id):
    return (await TaskRecord.objects.aget(id=task_id)).cache_key


async def test_a_repeated_call_completes_from_the_cache_on_each_backend(make_worker, make_adapter):
    worker = await make_worker(cache_enabled=True, cache_adapter=make_adapter())
    first, info = await run(worker, cache_tasks.square, 4)
    assert (first, info.from_cache) == (16, False)
    second, info = await run(worker, cache_tasks.square, 4)
    assert (second, info.from_cache, info.progress, info.status) == (16, True, 1.0, TaskStatus.COMPLETED)
    assert cache_tasks.calls["cache_square"] == 1
    stored = await aget_task_info(info.id)
    assert stored.from_cache is True and stored.result == 16


async def test_the_global_switch_off_wins_over_use_cache_true(make_worker):
    worker = await make_worker(cache_enabled=False)
    for _ in range(2):
        _, info = await run(worker, cache_tasks.square, 3, use_cache=True)
        assert info.from_cache is False
        assert await stored_key(info.id) == ""
    assert cache_tasks.calls["cache_square"] == 2


async def test_use_cache_false_bypasses_an_enabled_cache(make_worker):
    worker = await make_worker(cache_enabled=True)
    await run(worker, cache_tasks.square, 3)
    _, info = await run(worker, cache_tasks.square, 3, use_cache=False)
    assert info.from_cache is False
    assert cache_tasks.calls["cache_square"] == 2


async def test_a_per_task_ttl_and_the_default_ttl_expire_entries(make_worker, clock):
    worker = await make_worker(cache_enabled=True, cache_ttl=100)
    await run(worker, cache_tasks.square, 5, cache_ttl=10)
    await run(worker, cache_tasks.double, 5)
    clock.advance(11)
    _, short = await run(worker, cache_tasks.square, 5)
    _, default = await run(worker, cache_tasks.double, 5)
    assert (short.from_cache, default.from_cache) == (False, True)
    clock.advance(100)
    _, default = await run(worker, cache_tasks.double, 5)
    assert default.from_cache is False
    assert cache_tasks.calls == {"cache_square": 2, "cache_double": 2}


async def test_keyword_argument_order_does_not_matter(make_worker):
    worker = await make_worker(cache_enabled=True)
    await run(worker, cache_tasks.describe, a=1, b=2)
    result, info = await run(worker, cache_tasks.describe, b=2, a=1)
    assert info.from_cache and result == {"a": 1, "b": 2, "items": [1, 2]}


async def test_different_functions_with_equal_arguments_never_share_an_entry(make_worker):
    worker = await make_worker(cache_enabled=True)
    assert (await run(worker, cache_tasks.square, 3))[0] == 9
    result, info = await run(worker, cache_tasks.double, 3)
    assert (result, info.from_cache) == (6, False)


async def test_version_based_keys_from_metadata_as_in_the_readme(make_worker):
    def versioned_cache_key(context):
        func = context["func_name"]
        version = context.get("metadata", {}).get("api_version", "v1")
        return f"{func}:{version}"

    worker = await make_worker(cache_enabled=True)
    options = {"use_cache": True, "cache_key_fn": versioned_cache_key, "user_id": 123}
    _, v1 = await run(worker, cache_tasks.get_user_data, metadata={"api_version": "v1"}, **options)
    _, again = await run(worker, cache_tasks.get_user_data, metadata={"api_version": "v1"}, **options)
    _, v2 = await run(worker, cache_tasks.get_user_data, metadata={"api_version": "v2"}, **options)
    assert (v1.from_cache, again.from_cache, v2.from_cache) == (False, True, False)
    assert await stored_key(v2.id) == "get_user_data:v2"


async def test_tenant_isolation_as_in_the_readme(make_worker):
    key = tenant_key = compose_key_functions(
        extract_key_component("func_name"),
        extract_key_component("metadata.tenant_id"),
        extract_key_component("args.0"),
    )
    worker = await make_worker(cache_enabled=True)
    results = {}
    for tenant_id in ["tenant1", "tenant2", "tenant3"]:
        results[tenant_id], info = await run(
            worker,
            cache_tasks.process_data,
            "dataset",
            use_cache=True,
            metadata={"tenant_id": tenant_id},
            cache_key_fn=tenant_key,
        )
        assert not info.from_cache
    tenant2 = {"tenant_id": "tenant2"}
    again, info = await run(worker, cache_tasks.process_data, "dataset", metadata=tenant2, cache_key_fn=key)
    assert info.from_cache and again == results["tenant2"]
    assert await stored_key(info.id) == "tenant_process_data:tenant2:dataset"


async def test_composite_and_component_keys_as_in_the_readme(make_worker):
    worker = await make_worker(cache_enabled=True)
    composite_key = compose_key_functions(
        extract_key_component("func_name"),
        extract_key_component("kwargs.user_id"),
        extract_key_component("metadata.version"),
    )
    # The key function reaches the key, never the task function (which would fail on it).
    result, info = await run(
        worker, cache_tasks.get_user_data, user_id=123, metadata={"version": "v2"}, cache_key_fn=composite_key
    )
    assert result["user_id"] == 123
    assert await stored_key(info.id) == "get_user_data:123:v2"

    @key_component("user")
    def user_component(context):
        return str(context["kwargs"].get("user_id", "anonymous"))

    @key_component("region")
    def region_component(context):
        return context["kwargs"].get("region", "global")

    @key_component()
    def timestamp(context):
        return context.get("metadata", {}).get("timestamp", "0")

    named = compose_key_functions(user_component, region_component, timestamp)
    _, info = await run(
        worker,
        cache_tasks.get_regional_data,
        user_id=123,
        region="eu-west",
        use_cache=True,
        metadata={"timestamp": "2023-04-01"},
        cache_key_fn=named,
    )
    assert await stored_key(info.id) == "user:123:region:eu-west:timestamp:2023-04-01"


async def test_a_key_function_returning_a_non_string_is_refused_when_adding(make_worker):
    from django_atw import InvalidCacheKeyError

    worker = await make_worker(cache_enabled=True)
    with pytest.raises(InvalidCacheKeyError, match="must return a str"):
        await worker.add_task(cache_tasks.square, 2, cache_key_fn=lambda context: 42)
    assert await TaskRecord.objects.acount() == 0


async def test_temporarily_disabled_bypasses_the_cache_as_in_the_readme(make_worker):
    worker = await make_worker(cache_enabled=True)
    await run(worker, cache_tasks.square, 7)
    async with worker.cache._cache.temporarily_disabled():
        _, info = await run(worker, cache_tasks.square, 7, use_cache=True)
    assert info.from_cache is False and cache_tasks.calls["cache_square"] == 2
    assert worker.cache.enabled is True


async def test_a_task_result_is_reachable_by_its_entry_id_as_in_the_readme(make_worker):
    worker = await make_worker(cache_enabled=True)
    result, info = await run(worker, cache_tasks.square, 8)
    entry_id = worker.cache.generate_entry_id(info.task_type, info.id)
    assert await worker.cache.get_by_task_id(entry_id) == (True, result)
    # A task completed from the cache is reachable by its own entry id too.
    _, hit = await run(worker, cache_tasks.square, 8)
    hit_entry_id = worker.cache.generate_entry_id(hit.task_type, hit.id)
    assert await worker.cache.get_by_task_id(hit_entry_id) == (True, 64)
    assert await worker.cache.invalidate_by_task_id(entry_id) is True
    assert await worker.cache.get_by_task_id(entry_id) == (False, None)


async def test_invalidate_cache_and_clear_cache(make_worker):
    worker = await make_worker(cache_enabled=True)
    await run(worker, cache_tasks.square, 2)
    await run(worker, cache_tasks.double, 2)
    assert await worker.invalidate_cache(cache_tasks.square, 2) is True
    assert await worker.invalidate_cache("cache_square", 2) is False
    _, info = await run(worker, cache_tasks.square, 2)
    assert info.from_cache is False
    await worker.clear_cache()
    _, info = await run(worker, cache_tasks.double, 2)
    assert info.from_cache is False
    assert cache_tasks.calls == {"cache_square": 2, "cache_double": 2}


async def test_invalidate_cache_takes_the_key_function_and_metadata_used(make_worker):
    key_fn = compose_key_functions(extract_key_component("func_name"), extract_key_component("metadata.v"))
    worker = await make_worker(cache_enabled=True)
    await run(worker, cache_tasks.square, 2, metadata={"v": "1"}, cache_key_fn=key_fn)
    assert await worker.invalidate_cache(cache_tasks.square, 2, cache_key_fn=key_fn, metadata={"v": "1"})


async def test_an_oversize_result_completes_the_task_but_is_not_cached(make_worker, caplog):
    adapter = AsyncCacheAdapter(max_serialized_size=64, backend="database")
    worker = await make_worker(cache_enabled=True, cache_adapter=adapter)
    for _ in range(2):
        result, info = await run(worker, cache_tasks.big, 100)
        assert len(result) == 100 and info.from_cache is False
    assert cache_tasks.calls["cache_big"] == 2
    assert caplog.text.count("max_serialized_size") == 1


async def test_a_running_duplicate_joins_the_first_run(make_worker):
    worker = await make_worker(cache_enabled=True)
    first = await worker.add_task(cache_tasks.gated, "join")
    await cache_tasks.started_event("join").wait()
    second = await worker.add_task(cache_tasks.gated, "join")
    await wait_until(lambda: aget_task_info(second), lambda info: info.status == TaskStatus.RUNNING)
    cache_tasks.gate("join").set()
    assert await worker.wait_for_tasks([first, second], timeout=10) == ["join done", "join done"]
    assert cache_tasks.calls["cache_gated"] == 1
    assert (await worker.get_task_info(second)).from_cache is True
    assert (await worker.get_task_info(first)).from_cache is False


async def test_a_duplicate_runs_itself_when_the_first_run_fails(make_worker):
    by_name = extract_key_component("args.0")
    worker = await make_worker(cache_enabled=True)
    first = await worker.add_task(cache_tasks.gated, "jf", fail=True, cache_key_fn=by_name)
    await cache_tasks.started_event("jf").wait()
    second = await worker.add_task(cache_tasks.gated, "jf", cache_key_fn=by_name)
    await wait_until(lambda: aget_task_info(second), lambda info: info.status == TaskStatus.RUNNING)
    assert cache_tasks.calls["cache_gated"] == 1  # waiting, not running
    cache_tasks.gate("jf").set()
    assert await (await worker.get_task_future(second)) == "jf done"
    assert (await aget_task_info(first)).status == TaskStatus.FAILED
    assert (await aget_task_info(second)).from_cache is False
    assert cache_tasks.calls["cache_gated"] == 2


async def test_a_duplicate_runs_itself_when_the_first_run_is_cancelled(make_worker):
    worker = await make_worker(cache_enabled=True)
    first = await worker.add_task(cache_tasks.gated, "jc")
    await cache_tasks.started_event("jc").wait()
    second = await worker.add_task(cache_tasks.gated, "jc")
    await wait_until(lambda: aget_task_info(second), lambda info: info.status == TaskStatus.RUNNING)
    assert await worker.cancel_task(first)
    await wait_until(lambda: aget_task_info(second), lambda _: cache_tasks.calls["cache_gated"] == 2)
    cache_tasks.gate("jc").set()
    assert await (await worker.get_task_future(second)) == "jc done"


async def test_a_duplicate_in_another_worker_joins_through_the_database(make_worker, caplog):
    """Two workers keep separate in-process state, so the second finds the first in the database."""
    caplog.set_level(logging.DEBUG, logger="django_atw.engine.caching")
    # Separate queues, so each task runs in the worker the test means (either may claim otherwise).
    one = await make_worker(cache_enabled=True, worker_poll_interval=0.05, queues=["one"])
    two = await make_worker(cache_enabled=True, worker_poll_interval=0.05, queues=["two"])
    first = await one.add_task(cache_tasks.gated, "remote")
    await cache_tasks.started_event("remote").wait()
    second = await two.add_task(cache_tasks.gated, "remote")
    running = await wait_until(lambda: aget_task_info(second), lambda info: info.status == TaskStatus.RUNNING)
    assert running.worker_id == two.worker_id
    # Open the gate only once the second has joined: "running" is stored before its worker
    # looks for an equal task, and each worker's cache is its own memory, so a second that
    # looked after the first had finished would find neither and run again.
    joined = f"task {second} joins running task {first}"

    async def joins() -> bool:
        return any(record.getMessage().startswith(joined) for record in caplog.records)

    await wait_until(joins, bool)
    cache_tasks.gate("remote").set()
    assert await (await two.get_task_future(second)) == "remote done"
    assert (await aget_task_info(second)).from_cache is True
    assert (await aget_task_info(first)).from_cache is False
    assert cache_tasks.calls["cache_gated"] == 1


async def test_enqueue_without_a_worker_stores_the_key_a_worker_then_uses(make_worker):
    with override_settings(ATW={"POLL_INTERVAL": 0.2, "CLEANUP_INTERVAL": 0, "CACHE": {"ENABLED": True}}):
        first = await aenqueue(cache_tasks.get_user_data, user_id=5, metadata={"v": "1"},
                               cache_key_fn=extract_key_component("metadata.v"))  # fmt: skip
        assert await stored_key(first) == "1"
        plain = await aenqueue(cache_tasks.square, 6)
        opted_out = await aenqueue(cache_tasks.square, 6, use_cache=False)
        assert await stored_key(plain) != "" and await stored_key(opted_out) == ""
    worker = await make_worker(cache_enabled=True, max_workers=1)
    await worker.wait_for_tasks([first, plain, opted_out], timeout=10)
    assert cache_tasks.calls["cache_square"] == 2
    again = await aenqueue(cache_tasks.square, 6)  # caching off in settings: no key, runs
    await worker.wait_for_tasks([again], timeout=10)
    assert cache_tasks.calls["cache_square"] == 3


async def test_the_worker_starts_and_stops_the_cache_cleanup(make_worker):
    worker = await make_worker(cache_enabled=True, cache_cleanup_interval=60)
    assert worker.cache._cleanup_task is not None and not worker.cache._cleanup_task.done()
    await worker.stop()
    assert worker.cache._cleanup_task is None
    idle = await make_worker(cache_enabled=True, cache_cleanup_interval=0)
    assert idle.cache._cleanup_task is None


def test_from_settings_drives_the_worker_cache():
    from django_atw import AsyncTaskWorker

    with override_settings(
        ATW={"CACHE": {"ENABLED": True, "BACKEND": "memory", "DEFAULT_TTL": 5, "MAX_SIZE": 7}}
    ):
        worker = AsyncTaskWorker.from_settings()
    assert worker.cache_enabled and worker.cache.enabled
    assert (worker.cache.default_ttl, worker.cache.max_size) == (5, 7)
    assert type(worker.cache.backend).__name__ == "MemoryBackend"


async def test_a_given_adapter_runs_on_the_worker_database_thread_while_it_runs(make_worker):
    adapter = AsyncCacheAdapter(backend="database")
    one = await make_worker(cache_enabled=True, cache_adapter=adapter)
    two = await make_worker(cache_enabled=True, cache_adapter=adapter)
    assert adapter._runner == one._db.run  # the first worker keeps it; the second shares
    await run(two, cache_tasks.square, 9)
    _, info = await run(two, cache_tasks.square, 9)
    assert info.from_cache
    await one.stop()
    assert adapter._runner != one._db.run  # back on Django's sync thread, never a closed one
    _, info = await run(two, cache_tasks.square, 9)
    assert info.from_cache


async def test_a_failing_cache_never_fails_the_task(make_worker, atw_cache_alias, settings, caplog):
    adapter = AsyncCacheAdapter(backend="django", alias=atw_cache_alias)
    worker = await make_worker(cache_enabled=True, cache_adapter=adapter)
    settings.CACHES = {**settings.CACHES, "atw": {"BACKEND": "no.such.CacheBackend"}}
    async with asyncio.timeout(10):  # without the guard the task would never finish
        result, info = await run(worker, cache_tasks.square, 11)
    assert (result, info.status, info.from_cache) == (121, TaskStatus.COMPLETED, False)
    assert "cache lookup failed" in caplog.text


@pytest.mark.parametrize("where", ["same worker", "another worker"])
async def test_a_duplicate_joined_to_a_long_run_times_out_at_its_own_timeout(make_worker, where):
    """Waiting for an equal running task counts against the waiting task's timeout."""
    one = await make_worker(cache_enabled=True, worker_poll_interval=0.05, queues=["one"])
    two = (
        one
        if where == "same worker"
        else await make_worker(cache_enabled=True, worker_poll_interval=0.05, queues=["two"])
    )
    first = await one.add_task(cache_tasks.gated, "long", queue="one")
    await cache_tasks.started_event("long").wait()
    second = await two.add_task(cache_tasks.gated, "long", timeout=0.2, queue=two.queues[0])
    with pytest.raises(TaskTimeoutError, match=r"timed out after 0.2 seconds \(waiting for an equal"):
        async with asyncio.timeout(10):
            await (await two.get_task_future(second))
    assert (await aget_task_info(first)).status == TaskStatus.RUNNING  # the long run goes on
    cache_tasks.gate("long").set()
    assert await (await one.get_task_future(first)) == "long done"
