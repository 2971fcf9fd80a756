"""In-process LRU cache: fastest, private to one process, gone on restart."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from . import base


class MemoryBackend:
    """An ordered dict of serialized values, least recently read first.

    Values are kept as bytes, so each hit deserializes a fresh copy: a caller that mutates
    what it got never changes what the next caller gets.
    """

    blocking = False
    in_task_database = False

    def __init__(self, max_size: int | None = 1000) -> None:
        self.max_size = max_size
        self._entries: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._mapping: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                return None
            value, expires = item
            if expires is not None and expires <= base.now().timestamp():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def read_many(self, lookups: Sequence[tuple[str, str | None]], ttl: float | None) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for key, entry_id in lookups:
            value = found.get(key) or self.get(key)
            if value is not None:
                found[key] = value
                if entry_id is not None:
                    self.map_entry_id(entry_id, key, ttl)
        return found

    def set(self, key: str, value: bytes, ttl: float | None, task_type: str, entry_id: str | None) -> None:
        expires = base.now().timestamp() + ttl if ttl else None
        with self._lock:
            self._entries[key] = (value, expires)
            self._entries.move_to_end(key)
            if self.max_size is not None:
                while len(self._entries) > self.max_size:
                    self._entries.popitem(last=False)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._entries.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._mapping.clear()

    def map_entry_id(self, entry_id: str, key: str, ttl: float | None) -> None:
        with self._lock:
            self._mapping[entry_id] = key

    def key_for(self, entry_id: str) -> str | None:
        return self._mapping.get(entry_id)

    def unmap(self, entry_id: str) -> None:
        with self._lock:
            self._mapping.pop(entry_id, None)

    def id_key_mapping(self) -> dict[str, str]:
        with self._lock:
            return dict(self._mapping)

    def cleanup(self) -> int:
        removed = 0
        while True:  # one batch per lock hold, so gets are never held up for long
            stamp = base.now().timestamp()
            with self._lock:
                expired = [k for k, (_, exp) in self._entries.items() if exp is not None and exp <= stamp]
                expired = expired[: base.CLEANUP_BATCH]
                for key in expired:
                    del self._entries[key]
                stale = [e for e, k in self._mapping.items() if k not in self._entries]
                stale = stale[: base.CLEANUP_BATCH]
                for entry_id in stale:
                    del self._mapping[entry_id]
            removed += len(expired) + len(stale)
            if len(expired) < base.CLEANUP_BATCH and len(stale) < base.CLEANUP_BATCH:
                return removed
