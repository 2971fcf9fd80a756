"""The small interface every cache backend implements.

Backends store serialized bytes under string keys and never see Python values: serialization,
keys, TTL defaults and the enabled switch live in ``AsyncCacheAdapter``. Methods are
synchronous; a backend with ``blocking = True`` (database, network) is called from a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from django.utils import timezone

# Rows or keys one cleanup statement handles: bounded so no statement holds a lock for long.
CLEANUP_BATCH = 500


def now() -> datetime:
    """The backends' clock (one place, so tests can move it)."""
    return timezone.now()


class CacheBackend(Protocol):
    """Storage for cache entries and the task-id to key mapping."""

    #: True when calls block on I/O: the adapter then runs them in a thread.
    blocking: bool
    #: True when entries live in the task database: adding tasks then looks their keys up
    #: and inserts them in one transaction.
    in_task_database: bool

    def get(self, key: str) -> bytes | None:
        """Return the entry's bytes and mark it as just read, or None if missing or expired."""
        ...

    def read_many(self, lookups: Sequence[tuple[str, str | None]], ttl: float | None) -> dict[str, bytes]:
        """Return the present, unexpired entries among the ``(key, entry_id)`` pairs' keys, by key.

        As ``get`` and then ``map_entry_id`` for each hit, batched where the store allows (the
        database: one transaction; Redis: one MGET): adding many tasks looks them up at once.
        """
        ...

    def set(self, key: str, value: bytes, ttl: float | None, task_type: str, entry_id: str | None) -> None:
        """Store an entry (``ttl`` seconds, None: no expiry), evicting LRU entries past max_size."""
        ...

    def delete(self, key: str) -> bool:
        """Remove an entry; True if it existed."""
        ...

    def clear(self) -> None:
        """Remove every entry and mapping."""
        ...

    def map_entry_id(self, entry_id: str, key: str, ttl: float | None) -> None:
        """Remember that ``entry_id`` (``func_name:task_id``) maps to ``key``."""
        ...

    def key_for(self, entry_id: str) -> str | None:
        """Return the key ``entry_id`` maps to, if known."""
        ...

    def unmap(self, entry_id: str) -> None:
        """Forget a mapping."""
        ...

    def id_key_mapping(self) -> dict[str, str]:
        """Return the known entry-id to key mappings."""
        ...

    def cleanup(self) -> int:
        """Delete expired entries and stale mappings in bounded batches; return how many went."""
        ...
