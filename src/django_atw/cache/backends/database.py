"""Cache entries as ``CacheEntry`` rows: shared by every process on the database, durable.

All cache-entry SQL lives here. A hit is one statement: an UPDATE that refreshes
``last_accessed`` (the LRU order) and returns the value, only while the entry is unexpired.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef

from ...models import CacheEntry, CacheTaskKey
from . import base

TABLE = CacheEntry._meta.db_table
# Keys one ``read_many`` statement looks up: well under SQLite's bound-parameter limit.
GET_MANY_CHUNK = 500


class DatabaseBackend:
    """Entries in the ``CacheEntry`` table; expiry by ``expires_at``, LRU by ``last_accessed``.

    ``max_size`` is kept without counting the table on every write: the process keeps an
    estimate (counted once, then moved by its own inserts and deletes) and evicts the least
    recently read rows when the estimate passes the limit. Writes by other processes are
    reconciled by ``cleanup``, which counts and trims the table.
    """

    blocking = True
    in_task_database = True

    def __init__(self, max_size: int | None = 1000) -> None:
        self.max_size = max_size
        self._estimate: int | None = None
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        stamp = connection.ops.adapt_datetimefield_value(base.now())
        quoted = connection.ops.quote_name("key")
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {TABLE} SET last_accessed = %s, hits = hits + 1 "
                f"WHERE {quoted} = %s AND (expires_at IS NULL OR expires_at > %s) RETURNING value",
                [stamp, key, stamp],
            )
            row = cursor.fetchone()
        return bytes(row[0]) if row is not None else None

    def read_many(self, lookups: Sequence[tuple[str, str | None]], ttl: float | None) -> dict[str, bytes]:
        """One transaction: an UPDATE as in ``get`` for all keys (per chunk), one mapping upsert."""
        stamp = connection.ops.adapt_datetimefield_value(base.now())
        quoted = connection.ops.quote_name("key")
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(key for key, _ in lookups))
        with transaction.atomic(), connection.cursor() as cursor:
            for start in range(0, len(unique), GET_MANY_CHUNK):
                chunk = unique[start : start + GET_MANY_CHUNK]
                cursor.execute(
                    f"UPDATE {TABLE} SET last_accessed = %s, hits = hits + 1 "
                    f"WHERE {quoted} IN ({', '.join(['%s'] * len(chunk))}) "
                    f"AND (expires_at IS NULL OR expires_at > %s) RETURNING {quoted}, value",
                    [stamp, *chunk, stamp],
                )
                found.update((key, bytes(value)) for key, value in cursor.fetchall())
            pairs = [(entry_id, key) for key, entry_id in lookups if key in found and entry_id is not None]
            if pairs:
                self._map_entry_ids(pairs)
        return found

    def set(self, key: str, value: bytes, ttl: float | None, task_type: str, entry_id: str | None) -> None:
        now = base.now()
        fields = {
            "value": value,
            "size": len(value),
            "task_type": task_type[:255],
            "task_id": (entry_id or "")[:255],
            "created_at": now,
            "expires_at": now + timedelta(seconds=ttl) if ttl else None,
            "last_accessed": now,
            "hits": 0,
        }
        if CacheEntry.objects.filter(key=key).update(**fields):
            return
        try:
            with transaction.atomic():
                CacheEntry.objects.create(key=key, **fields)
        except IntegrityError:  # another process inserted it first: overwrite
            CacheEntry.objects.filter(key=key).update(**fields)
            return
        self._inserted()

    def _inserted(self) -> None:
        if self.max_size is None:
            return
        with self._lock:
            if self._estimate is None:
                self._estimate = CacheEntry.objects.count()
            else:
                self._estimate += 1
            excess = self._estimate - self.max_size
        if excess > 0:
            self._evict(excess)

    def _evict(self, count: int) -> None:
        keys = list(CacheEntry.objects.order_by("last_accessed").values_list("key", flat=True)[:count])
        deleted, _ = CacheEntry.objects.filter(key__in=keys).delete()
        with self._lock:
            if self._estimate is not None:
                self._estimate -= deleted

    def delete(self, key: str) -> bool:
        deleted, _ = CacheEntry.objects.filter(key=key).delete()
        if deleted:
            with self._lock:
                if self._estimate is not None:
                    self._estimate -= deleted
        return bool(deleted)

    def clear(self) -> None:
        with transaction.atomic():
            CacheEntry.objects.all().delete()
            CacheTaskKey.objects.all().delete()
        with self._lock:
            self._estimate = 0

    def map_entry_id(self, entry_id: str, key: str, ttl: float | None) -> None:
        self._map_entry_ids([(entry_id, key)])

    def _map_entry_ids(self, pairs: Sequence[tuple[str, str]]) -> None:
        now = base.now()
        # One row per entry id (the last mapping wins), as the upsert needs.
        latest = {entry_id[:255]: key for entry_id, key in pairs}
        CacheTaskKey.objects.bulk_create(
            [CacheTaskKey(entry_id=entry_id, key=key, created_at=now) for entry_id, key in latest.items()],
            update_conflicts=True,
            unique_fields=["entry_id"],
            update_fields=["key", "created_at"],
        )

    def key_for(self, entry_id: str) -> str | None:
        return CacheTaskKey.objects.filter(entry_id=entry_id).values_list("key", flat=True).first()

    def unmap(self, entry_id: str) -> None:
        CacheTaskKey.objects.filter(entry_id=entry_id).delete()

    def id_key_mapping(self) -> dict[str, str]:
        return dict(CacheTaskKey.objects.values_list("entry_id", "key"))

    def cleanup(self) -> int:
        """Delete expired rows, then stale mappings, one short transaction per batch; trim to max_size."""
        removed = purge_expired()
        has_entry = CacheEntry.objects.filter(key=OuterRef("key"))
        while True:
            stale = list(
                CacheTaskKey.objects.filter(~Exists(has_entry)).values_list("entry_id", flat=True)[
                    : base.CLEANUP_BATCH
                ]
            )
            if stale:
                removed += CacheTaskKey.objects.filter(entry_id__in=stale).delete()[0]
            if len(stale) < base.CLEANUP_BATCH:
                break
        count = CacheEntry.objects.count()
        with self._lock:
            self._estimate = count
        if self.max_size is not None and count > self.max_size:
            self._evict(count - self.max_size)
        return removed


def delete_entries(keys: list[str]) -> int:
    """Delete the named entries (the admin's "invalidate" action); return how many went."""
    deleted, _ = CacheEntry.objects.filter(key__in=keys).delete()
    return deleted


def purge_expired() -> int:
    """Delete every expired entry in bounded batches; return how many went."""
    removed = 0
    while True:
        expired = list(
            CacheEntry.objects.filter(expires_at__lte=base.now()).values_list("key", flat=True)[
                : base.CLEANUP_BATCH
            ]
        )
        if expired:
            removed += CacheEntry.objects.filter(key__in=expired, expires_at__lte=base.now()).delete()[0]
        if len(expired) < base.CLEANUP_BATCH:
            return removed
