"""Cache entries in a Django cache (``CACHES`` alias): with Django's Redis backend, shared by all hosts.

Give the cache its own alias: ``clear()`` empties the whole alias. Keys are hashed, so any
Django cache backend accepts them (memcached limits length and characters).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.cache import caches

from ...exceptions import ConfigurationError
from . import base

_ENTRY_PREFIX = "atw:e:"
_MAP_PREFIX = "atw:m:"


def _hashed(prefix: str, name: str) -> str:
    return prefix + hashlib.sha256(name.encode()).hexdigest()


class DjangoCacheBackend:
    """Entries in ``caches[alias]``, which enforces their TTL itself.

    ``max_size`` is enforced per process: each process evicts the least recently read of the
    entries it wrote or read once it knows more than ``max_size``. The cache's own limit
    (``MAX_ENTRIES``, Redis ``maxmemory``) bounds the total. The entry-id mapping kept here is
    the one this process wrote; lookups by entry id read the shared cache.
    """

    blocking = True
    in_task_database = False

    def __init__(self, alias: str = "atw", max_size: int | None = 1000) -> None:
        if alias not in settings.CACHES:
            raise ConfigurationError(
                f'ATW["CACHE"]["ALIAS"] is {alias!r}, which is not in settings.CACHES. Add a '
                f"CACHES[{alias!r}] entry (a dedicated one: clear() empties it) or choose another alias."
            )
        self.alias = alias
        self.max_size = max_size
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._mapping: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def _cache(self) -> Any:
        return caches[self.alias]

    def _touch(self, key: str) -> list[str]:
        """Mark ``key`` as just used; return the keys this process should evict."""
        with self._lock:
            self._recent[key] = None
            self._recent.move_to_end(key)
            evict: list[str] = []
            if self.max_size is not None:
                while len(self._recent) > self.max_size:
                    evict.append(self._recent.popitem(last=False)[0])
            return evict

    def get(self, key: str) -> bytes | None:
        value = self._cache.get(_hashed(_ENTRY_PREFIX, key))
        if value is None:
            with self._lock:
                self._recent.pop(key, None)
            return None
        self._evict(self._touch(key))
        return bytes(value)

    def read_many(self, lookups: Sequence[tuple[str, str | None]], ttl: float | None) -> dict[str, bytes]:
        by_hash = {_hashed(_ENTRY_PREFIX, key): key for key, _ in lookups}
        stored = self._cache.get_many(list(by_hash))  # one MGET on Redis
        found = {by_hash[hashed]: bytes(value) for hashed, value in stored.items() if value is not None}
        with self._lock:
            for key in by_hash.values():
                if key not in found:
                    self._recent.pop(key, None)
        evict: list[str] = []
        for key in found:
            evict += self._touch(key)
        self._evict(evict)
        pairs = [(entry_id, key) for key, entry_id in lookups if key in found and entry_id is not None]
        if pairs:
            self._map_entry_ids(pairs, ttl)
        return found

    def set(self, key: str, value: bytes, ttl: float | None, task_type: str, entry_id: str | None) -> None:
        self._cache.set(_hashed(_ENTRY_PREFIX, key), value, timeout=ttl or None)
        self._evict(self._touch(key))

    def _evict(self, keys: list[str]) -> None:
        if keys:
            self._cache.delete_many([_hashed(_ENTRY_PREFIX, key) for key in keys])

    def delete(self, key: str) -> bool:
        with self._lock:
            self._recent.pop(key, None)
        return bool(self._cache.delete(_hashed(_ENTRY_PREFIX, key)))

    def clear(self) -> None:
        self._cache.clear()
        with self._lock:
            self._recent.clear()
            self._mapping.clear()

    def map_entry_id(self, entry_id: str, key: str, ttl: float | None) -> None:
        self._cache.set(_hashed(_MAP_PREFIX, entry_id), key, timeout=ttl or None)
        with self._lock:
            self._mapping[entry_id] = key

    def _map_entry_ids(self, pairs: Sequence[tuple[str, str]], ttl: float | None) -> None:
        hashed = {_hashed(_MAP_PREFIX, entry_id): key for entry_id, key in pairs}
        self._cache.set_many(hashed, timeout=ttl or None)
        with self._lock:
            self._mapping.update(pairs)

    def key_for(self, entry_id: str) -> str | None:
        key = self._cache.get(_hashed(_MAP_PREFIX, entry_id))
        return key if isinstance(key, str) else None

    def unmap(self, entry_id: str) -> None:
        self._cache.delete(_hashed(_MAP_PREFIX, entry_id))
        with self._lock:
            self._mapping.pop(entry_id, None)

    def id_key_mapping(self) -> dict[str, str]:
        with self._lock:
            return dict(self._mapping)

    def cleanup(self) -> int:
        """Forget this process's mappings and LRU records of entries the cache has expired."""
        removed = 0
        with self._lock:
            mapped = list(self._mapping.items())
            recent = list(self._recent)
        for start in range(0, len(mapped), base.CLEANUP_BATCH):
            batch = mapped[start : start + base.CLEANUP_BATCH]
            present = self._cache.get_many([_hashed(_ENTRY_PREFIX, key) for _, key in batch])
            for entry_id, key in batch:
                if _hashed(_ENTRY_PREFIX, key) not in present:
                    self.unmap(entry_id)
                    removed += 1
        for start in range(0, len(recent), base.CLEANUP_BATCH):
            batch_keys = recent[start : start + base.CLEANUP_BATCH]
            present = self._cache.get_many([_hashed(_ENTRY_PREFIX, key) for key in batch_keys])
            with self._lock:
                for key in batch_keys:
                    if _hashed(_ENTRY_PREFIX, key) not in present:
                        self._recent.pop(key, None)
        return removed
