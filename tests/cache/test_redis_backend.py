"""The django backend on Django's own RedisCache: a cache shared by every process and host."""

import pytest

from django_atw import AsyncCacheAdapter
from tests.cache import cache_tasks
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


async def test_entries_are_shared_between_adapters_as_between_processes(redis_alias):
    writer = AsyncCacheAdapter(backend="django", alias=redis_alias, default_ttl=600)
    reader = AsyncCacheAdapter(backend="django", alias=redis_alias, default_ttl=600)
    assert await writer.set("f", (1,), {"a": [1, 2]}, {"when": "now", "items": {1, 2}}, task_id="f:t1")
    assert await reader.get("f", (1,), {"a": [1, 2]}) == (True, {"when": "now", "items": {1, 2}})
    assert await reader.get_by_task_id("f:t1") == (True, {"when": "now", "items": {1, 2}})
    assert await reader.invalidate_by_task_id("f:t1") is True
    assert await writer.get("f", (1,), {"a": [1, 2]}) == (False, None)


async def test_redis_expires_an_entry_after_its_ttl(redis_alias):
    adapter = AsyncCacheAdapter(backend="django", alias=redis_alias, default_ttl=600)
    await adapter.set("f", (), {}, "short", ttl=1)
    await adapter.set("f", (2,), {}, "long", ttl=600)
    await wait_until(lambda: adapter.get("f", (), {}), lambda got: got == (False, None), timeout=10)
    assert await adapter.get("f", (2,), {}) == (True, "long")


async def test_the_least_recently_read_entry_is_evicted_at_max_size(redis_alias):
    adapter = AsyncCacheAdapter(backend="django", alias=redis_alias, max_size=2, default_ttl=600)
    await adapter.set("f", (1,), {}, 1)
    await adapter.set("f", (2,), {}, 2)
    await adapter.get("f", (1,), {})
    await adapter.set("f", (3,), {}, 3)
    assert [await adapter.get("f", (n,), {}) for n in (1, 2, 3)] == [(True, 1), (False, None), (True, 3)]


async def test_a_worker_completes_a_repeated_task_from_redis(redis_alias, make_worker):
    adapter = AsyncCacheAdapter(backend="django", alias=redis_alias, default_ttl=600)
    worker = await make_worker(cache_enabled=True, cache_adapter=adapter)
    first = await worker.add_task(cache_tasks.square, 12)
    assert await (await worker.get_task_future(first)) == 144
    second = await worker.add_task(cache_tasks.square, 12)
    assert await (await worker.get_task_future(second)) == 144
    assert (await worker.get_task_info(second)).from_cache is True
    assert cache_tasks.calls["cache_square"] == 1
    assert await worker.invalidate_cache(cache_tasks.square, 12) is True
    assert await adapter.get("cache_square", (12,), {}) == (False, None)


def test_a_missing_alias_is_a_configuration_error_naming_it():
    from django_atw import ConfigurationError

    with pytest.raises(ConfigurationError, match="'nope', which is not in settings.CACHES"):
        AsyncCacheAdapter(backend="django", alias="nope")
