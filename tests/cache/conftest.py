from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import LazySettings

from django_atw.cache import AsyncCacheAdapter
from django_atw.cache.backends import base
from tests.cache import cache_tasks

LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "atw-tests"}


@pytest.fixture(autouse=True)
def _reset_cache_tasks() -> Iterator[None]:
    cache_tasks.calls.clear()
    cache_tasks.gates.clear()
    cache_tasks.started.clear()
    yield
    for event in cache_tasks.gates.values():
        event.set()


@pytest.fixture
def atw_cache_alias(settings: LazySettings) -> str:
    """A dedicated LocMem ``atw`` alias (the django backend's default alias)."""
    settings.CACHES = {**settings.CACHES, "atw": LOCMEM}
    from django.core.cache import caches

    caches["atw"].clear()
    return "atw"


@pytest.fixture
def redis_alias(settings: LazySettings) -> Iterator[str]:
    url = os.environ.get("ATW_TEST_REDIS")
    if not url:
        pytest.skip("set ATW_TEST_REDIS=redis://host:port/db to test the django backend on Redis")
    # A prefix of its own, and no clear(): Django's RedisCache.clear() empties the whole database,
    # which other suites (the channel layer) may share. Tests give every entry a TTL.
    prefix = f"atw-test-{uuid.uuid4().hex}"
    settings.CACHES = {
        **settings.CACHES,
        "atw-redis": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
        },
    }
    yield "atw-redis"
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["memory", "database", "django"])
def backend_name(request: pytest.FixtureRequest) -> str:
    """Each backend; the django one on a LocMem alias (Redis has its own test module)."""
    if request.param == "django":
        request.getfixturevalue("atw_cache_alias")
    name: str = request.param
    return name


@pytest.fixture
def make_adapter(backend_name: str) -> Callable[..., AsyncCacheAdapter]:
    def factory(**options: Any) -> AsyncCacheAdapter:
        options.setdefault("backend", backend_name)
        return AsyncCacheAdapter(**options)

    return factory


class Clock:
    """The backends' clock, moved by hand: TTL tests need no waiting."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    real = base.now

    def now() -> datetime:
        return real() + clock.offset

    monkeypatch.setattr(base, "now", now)
    return clock
