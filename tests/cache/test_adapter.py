"""AsyncCacheAdapter on each backend: TTL, LRU, size limits, copies, entry ids, cleanup."""

import asyncio
import logging

import pytest

from django_atw import AsyncCacheAdapter
from tests.conftest import wait_until

pytestmark = [pytest.mark.usefixtures("backend_name"), pytest.mark.django_db(transaction=True)]


async def test_set_then_get_hits_and_an_unknown_call_misses(make_adapter):
    adapter = make_adapter()
    assert await adapter.set("f", (1,), {"a": 2}, {"value": [1, 2]})
    assert await adapter.get("f", (1,), {"a": 2}) == (True, {"value": [1, 2]})
    assert await adapter.get("f", (2,), {"a": 2}) == (False, None)


async def test_an_entry_expires_after_its_own_ttl(make_adapter, clock, backend_name):
    adapter = make_adapter(default_ttl=3600)
    await adapter.set("f", (1,), {}, "short", ttl=1)
    await adapter.set("f", (2,), {}, "default")
    assert (await adapter.get("f", (1,), {}))[0]
    if backend_name == "django":
        await wait_until(lambda: adapter.get("f", (1,), {}), lambda got: got == (False, None), timeout=10)
    else:
        clock.advance(2)
        assert await adapter.get("f", (1,), {}) == (False, None)
    assert await adapter.get("f", (2,), {}) == (True, "default")


async def test_an_entry_expires_after_the_default_ttl(make_adapter, clock, backend_name):
    if backend_name == "django":
        pytest.skip("the django cache keeps time itself; the per-entry TTL test covers it")
    adapter = make_adapter(default_ttl=60)
    await adapter.set("f", (1,), {}, "value")
    clock.advance(59)
    assert await adapter.get("f", (1,), {}) == (True, "value")
    clock.advance(2)
    assert await adapter.get("f", (1,), {}) == (False, None)


async def test_without_a_ttl_an_entry_does_not_expire(make_adapter, clock, backend_name):
    adapter = make_adapter(default_ttl=None)
    await adapter.set("f", (1,), {}, "value")
    clock.advance(10 * 365 * 86400)
    assert await adapter.get("f", (1,), {}) == (True, "value")


async def test_the_least_recently_read_entry_is_evicted_first_at_max_size(make_adapter):
    adapter = make_adapter(max_size=3)
    for n in (1, 2, 3):
        await adapter.set("f", (n,), {}, n)
    # Read 1: now 2 is the least recently read.
    assert await adapter.get("f", (1,), {}) == (True, 1)
    await adapter.set("f", (4,), {}, 4)
    assert await adapter.get("f", (2,), {}) == (False, None)
    for n in (1, 3, 4):
        assert await adapter.get("f", (n,), {}) == (True, n), n


async def test_overwriting_an_entry_does_not_evict_another(make_adapter):
    adapter = make_adapter(max_size=2)
    await adapter.set("f", (1,), {}, "a")
    await adapter.set("f", (2,), {}, "b")
    await adapter.set("f", (2,), {}, "b2")
    assert await adapter.get("f", (1,), {}) == (True, "a")
    assert await adapter.get("f", (2,), {}) == (True, "b2")


async def test_a_value_over_max_serialized_size_is_not_cached_and_warns_once(make_adapter, caplog):
    adapter = make_adapter(max_serialized_size=100)
    with caplog.at_level(logging.WARNING, logger="django_atw.cache"):
        assert await adapter.set("big", (), {}, "x" * 200) is False
        assert await adapter.set("big", (1,), {}, "x" * 300) is False
    assert await adapter.get("big", (), {}) == (False, None)
    assert await adapter.set("big", (2,), {}, "small") is True
    warnings = [r for r in caplog.records if "max_serialized_size" in r.getMessage()]
    assert len(warnings) == 1


async def test_an_unserializable_value_is_not_cached(make_adapter, caplog):
    adapter = make_adapter()
    with caplog.at_level(logging.WARNING, logger="django_atw.cache"):
        assert await adapter.set("f", (), {}, {"obj": object()}) is False
    assert await adapter.get("f", (), {}) == (False, None)
    assert "cannot be cached" in caplog.text


async def test_mutating_a_returned_value_does_not_change_the_next_hit(make_adapter):
    adapter = make_adapter()
    await adapter.set("f", (), {}, {"items": [1, 2]})
    _, first = await adapter.get("f", (), {})
    first["items"].append(3)
    first["new"] = True
    assert await adapter.get("f", (), {}) == (True, {"items": [1, 2]})


async def test_a_disabled_adapter_neither_reads_nor_writes(make_adapter):
    adapter = make_adapter()
    await adapter.set("f", (), {}, "cached")
    adapter.enabled = False
    assert await adapter.get("f", (), {}) == (False, None)
    assert await adapter.set("f", (1,), {}, "x") is False
    adapter.enabled = True
    assert await adapter.get("f", (1,), {}) == (False, None)
    assert await adapter.get("f", (), {}) == (True, "cached")


async def test_temporarily_disabled_restores_the_previous_state_even_after_an_exception(make_adapter):
    adapter = make_adapter()
    await adapter.set("f", (), {}, "cached")
    with pytest.raises(RuntimeError):
        async with adapter._cache.temporarily_disabled():
            assert adapter.enabled is False
            assert await adapter.get("f", (), {}) == (False, None)
            raise RuntimeError("inside")
    assert adapter.enabled is True
    assert await adapter.get("f", (), {}) == (True, "cached")
    adapter.enabled = False
    async with adapter.temporarily_disabled():
        pass
    assert adapter.enabled is False


async def test_entry_ids_reach_and_invalidate_an_entry(make_adapter):
    adapter = make_adapter()
    task_id = "b4fd93c8-57e3-4fea-bcc6-04be7499b28f"
    entry_id = adapter.generate_entry_id("my_func", task_id)
    assert entry_id == f"my_func:{task_id}"
    assert adapter.generate_entry_id("my_func", None) == "my_func:unknown"
    await adapter.set("my_func", (1,), {}, "result", task_id=entry_id)
    assert await adapter.get_by_task_id(entry_id) == (True, "result")
    mapping = await adapter.get_id_key_mapping()
    assert mapping[entry_id] == adapter.make_key("my_func", (1,), {})
    assert await adapter.invalidate_by_task_id(entry_id) is True
    assert await adapter.get_by_task_id(entry_id) == (False, None)
    assert await adapter.get("my_func", (1,), {}) == (False, None)
    assert await adapter.invalidate_by_task_id(entry_id) is False


async def test_invalidate_and_clear(make_adapter):
    adapter = make_adapter()
    await adapter.set("f", (1,), {}, 1)
    await adapter.set("f", (2,), {}, 2)
    assert await adapter.invalidate("f", (1,), {}) is True
    assert await adapter.invalidate("f", (1,), {}) is False
    assert await adapter.get("f", (1,), {}) == (False, None)
    await adapter.clear()
    assert await adapter.get("f", (2,), {}) == (False, None)


async def test_cleanup_removes_expired_entries_and_stale_mappings(make_adapter, clock, backend_name):
    adapter = make_adapter(default_ttl=10)
    await adapter.set("f", (1,), {}, "old", task_id="f:t1")
    await adapter.set("f", (2,), {}, "kept", ttl=1000, task_id="f:t2")
    if backend_name == "django":
        await adapter.invalidate("f", (1,), {})  # the django cache expires entries itself
    else:
        clock.advance(20)
    assert await adapter.cleanup() >= 1
    assert set(await adapter.get_id_key_mapping()) == {"f:t2"}
    assert await adapter.get_by_task_id("f:t2") == (True, "kept")


async def test_the_cleanup_task_runs_at_its_interval_and_zero_disables_it(make_adapter, clock):
    adapter = make_adapter(cleanup_interval=0)
    await adapter.start_cleanup_task()
    assert adapter._cleanup_task is None
    adapter.cleanup_interval = 0.01
    await adapter.set("f", (1,), {}, "gone", task_id="f:t1")
    await adapter.invalidate("f", (1,), {})
    await adapter.start_cleanup_task()
    try:
        await wait_until(adapter.get_id_key_mapping, lambda mapping: "f:t1" not in mapping)
    finally:
        await adapter.stop_cleanup_task()
    assert adapter._cleanup_task is None


async def test_properties_validate_their_values(make_adapter):
    adapter = make_adapter(default_ttl=5, cleanup_interval=30)
    assert (adapter.default_ttl, adapter.cleanup_interval, adapter.enabled) == (5, 30, True)
    with pytest.raises(ValueError, match="default_ttl"):
        adapter.default_ttl = -1
    with pytest.raises(ValueError, match="cleanup_interval"):
        adapter.cleanup_interval = "often"
    with pytest.raises(TypeError, match="enabled"):
        adapter.enabled = "yes"
    with pytest.raises(ValueError, match="max_size"):
        AsyncCacheAdapter(max_size=0, backend="memory")
    with pytest.raises(ValueError, match="backend must be one of"):
        AsyncCacheAdapter(backend="redis")


async def test_concurrent_gets_and_sets_do_not_interfere(make_adapter):
    adapter = make_adapter()
    await asyncio.gather(*(adapter.set("f", (n,), {}, n) for n in range(10)))
    results = await asyncio.gather(*(adapter.get("f", (n,), {}) for n in range(10)))
    assert results == [(True, n) for n in range(10)]
