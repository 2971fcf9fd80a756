"""The database backend's size limit without a count per write, and its reconciliation."""

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_atw import AsyncCacheAdapter
from django_atw.models import CacheEntry

pytestmark = pytest.mark.django_db(transaction=True)


async def test_cleanup_trims_to_max_size_what_another_process_wrote(clock):
    limited = AsyncCacheAdapter(backend="database", max_size=3)
    elsewhere = AsyncCacheAdapter(backend="database", max_size=None)  # writes this one never sees
    for n in range(6):
        await elsewhere.set("f", (n,), {}, n)
        clock.advance(1)
    assert await limited.get("f", (0,), {}) == (True, 0)  # read last: kept
    assert await CacheEntry.objects.acount() == 6
    await limited.cleanup()
    assert await CacheEntry.objects.acount() == 3
    kept = [n for n in range(6) if (await limited.get("f", (n,), {}))[0]]
    assert kept == [0, 4, 5]


async def test_only_the_first_write_of_a_process_counts_the_table():
    adapter = AsyncCacheAdapter(backend="database", max_size=100)

    def write(key: str) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            adapter.backend.set(key, b"\x01", None, "f", None)
        return [query["sql"] for query in queries.captured_queries]

    first = await sync_to_async(write)("k1")
    second = await sync_to_async(write)("k2")
    assert any("COUNT" in sql for sql in first)
    assert not any("COUNT" in sql for sql in second)
