"""AsyncCacheAdapter: the original library's cache API over a django_atw cache backend."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from asgiref.sync import sync_to_async

from ..conf import get_settings
from . import serialization
from .backends import CacheBackend, create_backend
from .keys import KeyFunction, make_key

logger = logging.getLogger(__name__)

T = TypeVar("T")
Runner = Callable[..., Awaitable[Any]]


async def _in_thread(func: Callable[..., T], *args: Any) -> T:
    # thread_sensitive: the database backend's queries share Django's one sync thread and its
    # connection, which the test suite and request handling already clean up.
    result: T = await sync_to_async(func, thread_sensitive=True)(*args)
    return result


class AsyncCacheAdapter:
    """Cache task results by key, with TTL, LRU size limit, entry ids and periodic cleanup.

    Parameters (the original's, plus ``backend`` and ``alias``):

    - ``default_ttl``: seconds an entry lives when ``set`` gets no ``ttl``; None or 0: forever.
    - ``enabled``: when False, ``get`` misses and ``set`` stores nothing.
    - ``max_serialized_size``: larger values are not cached (``set`` returns False).
    - ``validate_keys``: refuse over-long keys and keys with whitespace instead of hashing them.
    - ``cleanup_interval``: seconds between cleanups of expired entries and stale mappings; 0: none.
    - ``max_size``: most entries; the least recently read is evicted first. None: unlimited.
    - ``backend``: ``"database"`` (``CacheEntry`` rows), ``"memory"`` (this process only),
      ``"django"`` (the ``CACHES`` alias ``alias``), or a backend object. Default: ``ATW["CACHE"]``.
    """

    def __init__(
        self,
        default_ttl: int | None = None,
        enabled: bool = True,
        max_serialized_size: int = 10 * 1024 * 1024,
        validate_keys: bool = False,
        cleanup_interval: float = 900,
        max_size: int | None = 1000,
        backend: str | CacheBackend | None = None,
        alias: str | None = None,
    ) -> None:
        _check_size("max_serialized_size", max_serialized_size, allow_none=False)
        _check_size("max_size", max_size, allow_none=True)
        self.default_ttl = default_ttl
        self.enabled = enabled
        self.cleanup_interval = cleanup_interval
        self.max_serialized_size = max_serialized_size
        self.validate_keys = validate_keys
        self.max_size = max_size
        if backend is None or isinstance(backend, str):
            conf = get_settings().CACHE
            self.backend: CacheBackend = create_backend(
                backend or conf.BACKEND, max_size=max_size, alias=alias or conf.ALIAS
            )
        else:
            self.backend = backend
        self._runner: Runner = _in_thread
        self._warned: set[tuple[str, str]] = set()
        self._cleanup_task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, **overrides: Any) -> AsyncCacheAdapter:
        """Build an adapter from ``ATW["CACHE"]``; keyword arguments override single values."""
        conf = get_settings().CACHE
        options: dict[str, Any] = {
            "default_ttl": conf.DEFAULT_TTL,
            "enabled": conf.ENABLED,
            "max_serialized_size": conf.MAX_SERIALIZED_SIZE,
            "validate_keys": conf.VALIDATE_KEYS,
            "cleanup_interval": conf.CLEANUP_INTERVAL,
            "max_size": conf.MAX_SIZE,
            "backend": conf.BACKEND,
            "alias": conf.ALIAS,
        }
        options.update(overrides)
        return cls(**options)

    # --- properties -----------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Whether ``get`` and ``set`` touch the cache at all."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"enabled must be True or False, got {value!r}.")
        self._enabled = value

    @property
    def default_ttl(self) -> int | None:
        """Seconds an entry lives when no ttl is given; None or 0: forever."""
        return self._default_ttl

    @default_ttl.setter
    def default_ttl(self, value: int | None) -> None:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and (not number or value < 0):
            raise ValueError(f"default_ttl must be a non-negative number of seconds or None, got {value!r}.")
        self._default_ttl = value

    @property
    def cleanup_interval(self) -> float:
        """Seconds between periodic cleanups; 0 disables them."""
        return self._cleanup_interval

    @cleanup_interval.setter
    def cleanup_interval(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"cleanup_interval must be a non-negative number of seconds, got {value!r}.")
        self._cleanup_interval = value

    @property
    def _cache(self) -> AsyncCacheAdapter:
        """The adapter itself: the original's README reaches ``worker.cache._cache``."""
        return self

    @contextlib.asynccontextmanager
    async def temporarily_disabled(self) -> AsyncIterator[None]:
        """Disable the cache inside the block; restore the previous state even on error."""
        previous = self._enabled
        self._enabled = False
        try:
            yield
        finally:
            self._enabled = previous

    # --- running backend calls ------------------------------------------------------------

    def bind_runner(self, runner: Runner) -> bool:
        """Run blocking backend calls with ``runner(func, *args)``; False if another is bound.

        A worker passes its own database thread, so cache queries use the worker's connection
        instead of queueing with web requests on Django's sync thread (the default). The first
        worker to bind keeps it until it unbinds; others sharing the adapter use the default.
        """
        if self._runner is not _in_thread:
            return False
        self._runner = runner
        return True

    def unbind_runner(self, runner: Runner) -> None:
        """Go back to Django's sync thread, if ``runner`` is the one bound."""
        if self._runner == runner:
            self._runner = _in_thread

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        if self.backend.blocking:
            result: T = await self._runner(func, *args)
            return result
        return func(*args)

    # --- keys -----------------------------------------------------------------------------

    @staticmethod
    def generate_entry_id(func_name: str, task_id: str | None) -> str:
        """Return ``"<func_name>:<task_id>"`` (``":unknown"`` without an id), as the original."""
        return f"{func_name}:{task_id if task_id is not None else 'unknown'}"

    def make_key(
        self,
        func_name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        cache_key_fn: KeyFunction | None = None,
        task_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Return the key of a call (see ``keys.make_key``); raises ``InvalidCacheKeyError``."""
        return make_key(func_name, args, kwargs, cache_key_fn, task_id, metadata, validate=self.validate_keys)

    # --- by call --------------------------------------------------------------------------

    async def get(
        self,
        func_name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        cache_key_fn: KeyFunction | None = None,
        task_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[bool, Any]:
        """Return ``(hit, value)`` for a call; a hit maps ``task_id`` (an entry id) to the key."""
        if not self._enabled:
            return False, None
        key = self.make_key(func_name, args, kwargs, cache_key_fn, task_id, metadata)
        return await self.get_entry(key, entry_id=task_id)

    async def set(
        self,
        func_name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        result: Any,
        ttl: int | None = None,
        cache_key_fn: KeyFunction | None = None,
        task_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store a call's result; False if disabled, unserializable or over ``max_serialized_size``."""
        if not self._enabled:
            return False
        key = self.make_key(func_name, args, kwargs, cache_key_fn, task_id, metadata)
        return await self.set_entry(key, result, ttl, task_type=func_name, entry_id=task_id)

    async def invalidate(
        self,
        func_name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        cache_key_fn: KeyFunction | None = None,
        task_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> bool:
        """Remove a call's entry (even while disabled); True if there was one."""
        key = self.make_key(func_name, args, kwargs, cache_key_fn, task_id, metadata)
        return await self.invalidate_key(key)

    # --- by key ---------------------------------------------------------------------------

    async def get_entry(self, key: str, entry_id: str | None = None) -> tuple[bool, Any]:
        """Return ``(hit, value)`` for a stored key; each hit returns a fresh copy."""
        if not self._enabled:
            return False, None
        data = await self._run(self._read, key, entry_id)
        if data is None:
            return False, None
        try:
            return True, serialization.loads(data)
        except serialization.SerializationError:
            logger.warning("cache entry %.80s cannot be read; treated as a miss", key)
            return False, None

    def read_entries(self, lookups: Sequence[tuple[str, str | None]]) -> dict[str, Any]:
        """Return the values of the keys that hit, by key; ``lookups`` are ``(key, entry_id)`` pairs.

        As ``get_entry`` for each key, with one backend call for all of them (one transaction on
        the database, one MGET on Redis). A value that cannot be read is a miss. Synchronous:
        the caller is already on a thread that may block (a worker's database thread, enqueue).
        """
        if not self._enabled or not lookups:
            return {}
        data = self.backend.read_many(lookups, self._ttl(None))
        values: dict[str, Any] = {}
        for key, raw in data.items():
            try:
                values[key] = serialization.loads(raw)
            except serialization.SerializationError:
                logger.warning("cache entry %.80s cannot be read; treated as a miss", key)
        return values

    def _read(self, key: str, entry_id: str | None) -> bytes | None:
        data = self.backend.get(key)
        if data is not None and entry_id is not None:
            self.backend.map_entry_id(entry_id, key, self._ttl(None))
        return data

    async def set_entry(
        self,
        key: str,
        value: Any,
        ttl: int | None = None,
        *,
        task_type: str = "",
        entry_id: str | None = None,
    ) -> bool:
        """Store ``value`` under ``key``; False if disabled, unserializable or too large.

        A refusal is logged as a warning once per task type and reason, not on every call.
        """
        if not self._enabled:
            return False
        try:
            data = serialization.dumps(value)
        except serialization.SerializationError as exc:
            self._warn_once(task_type, "unserializable", "result of %s not cached: %s", task_type, exc)
            return False
        if len(data) > self.max_serialized_size:
            self._warn_once(
                task_type,
                "too-large",
                "result of %s not cached: %d bytes serialized, max_serialized_size is %d",
                task_type,
                len(data),
                self.max_serialized_size,
            )
            return False
        await self._run(self._write, key, data, self._ttl(ttl), task_type, entry_id)
        return True

    def _write(self, key: str, data: bytes, ttl: float | None, task_type: str, entry_id: str | None) -> None:
        self.backend.set(key, data, ttl, task_type, entry_id)
        if entry_id is not None:
            self.backend.map_entry_id(entry_id, key, ttl)

    async def invalidate_key(self, key: str) -> bool:
        """Remove the entry stored under ``key``; True if there was one."""
        return await self._run(self.backend.delete, key)

    def _ttl(self, ttl: int | None) -> float | None:
        effective = ttl if ttl is not None else self._default_ttl
        return effective or None

    def _warn_once(self, task_type: str, reason: str, message: str, *args: Any) -> None:
        if (task_type, reason) not in self._warned:
            self._warned.add((task_type, reason))
            logger.warning(message, *args)

    # --- by entry id ----------------------------------------------------------------------

    async def get_by_task_id(self, task_id: str) -> tuple[bool, Any]:
        """Return ``(hit, value)`` for an entry id made by ``generate_entry_id``."""
        if not self._enabled:
            return False, None
        data = await self._run(self._read_by_id, task_id)
        if data is None:
            return False, None
        try:
            return True, serialization.loads(data)
        except serialization.SerializationError:
            return False, None

    def _read_by_id(self, entry_id: str) -> bytes | None:
        key = self.backend.key_for(entry_id)
        return self.backend.get(key) if key is not None else None

    async def invalidate_by_task_id(self, task_id: str) -> bool:
        """Remove the entry an entry id maps to, and the mapping; True if an entry went."""
        return await self._run(self._delete_by_id, task_id)

    def _delete_by_id(self, entry_id: str) -> bool:
        key = self.backend.key_for(entry_id)
        if key is None:
            return False
        self.backend.unmap(entry_id)
        return self.backend.delete(key)

    async def get_id_key_mapping(self) -> dict[str, str]:
        """Return the entry-id to key mapping (the django backend knows this process's only)."""
        return await self._run(self.backend.id_key_mapping)

    async def clear(self) -> None:
        """Remove every entry and mapping."""
        await self._run(self.backend.clear)

    # --- cleanup --------------------------------------------------------------------------

    async def cleanup(self) -> int:
        """Delete expired entries and stale mappings now; return how many went."""
        return await self._run(self.backend.cleanup)

    async def start_cleanup_task(self) -> None:
        """Start the periodic cleanup (nothing when ``cleanup_interval`` is 0, or already running)."""
        if self._cleanup_interval <= 0 or (self._cleanup_task is not None and not self._cleanup_task.done()):
            return
        self._cleanup_task = asyncio.create_task(self._cleanup_loop(), name="atw-cache-cleanup")

    async def stop_cleanup_task(self) -> None:
        """Stop the periodic cleanup and wait for it to end."""
        task, self._cleanup_task = self._cleanup_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _cleanup_loop(self) -> None:
        while self._cleanup_interval > 0:
            await asyncio.sleep(self._cleanup_interval)
            try:
                removed = await self.cleanup()
            except Exception:
                logger.exception("cache cleanup failed; retrying at the next interval")
            else:
                if removed:
                    logger.info("cache cleanup removed %d expired entries and stale mappings", removed)


_default: tuple[object, AsyncCacheAdapter] | None = None


def default_adapter() -> AsyncCacheAdapter:
    """Return the adapter ``ATW["CACHE"]`` describes, for code without a worker (enqueue).

    Built once and rebuilt when the settings change (``override_settings`` in tests).
    """
    global _default
    conf = get_settings()
    if _default is None or _default[0] is not conf:
        _default = (conf, AsyncCacheAdapter.from_settings())
    return _default[1]


def _check_size(name: str, value: Any, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}.")
