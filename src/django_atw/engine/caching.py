"""The result cache on the task path: keys when a task is added, lookups and joins when it runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.db import transaction

from .. import store
from ..cache import AsyncCacheAdapter
from ..cache.keys import KeyFunction
from ..models import new_task_id
from ..status import TaskStatus
from ..values import ClaimedTask, NewTask
from .db import DatabaseThread

logger = logging.getLogger(__name__)

# What an in-process run tells the tasks that joined it: (succeeded, result).
RunResult = tuple[bool, Any]


def assign_cache_keys(
    new_tasks: Sequence[NewTask],
    adapter: AsyncCacheAdapter,
    *,
    enabled: bool,
    cache_key_fn: KeyFunction | None = None,
) -> None:
    """Store the cache key on each task that will use the cache, in the adding process.

    The cache applies when it is enabled globally (``enabled``, which wins over a per-task
    ``use_cache=True``) and on the adapter (``temporarily_disabled`` turns it off), and the task
    did not opt out with ``use_cache=False``. Computing the key here means the key function and
    the metadata it reads never have to reach the worker: the worker reads the stored key.
    A task without an id gets one now, so a key function can read its ``entry_id``.
    """
    if not enabled or not adapter.enabled:
        return
    for new in new_tasks:
        if new.use_cache is False:
            continue
        if new.id is None:
            new.id = new_task_id()
        entry_id = adapter.generate_entry_id(new.task_type, new.id)
        new.cache_key = adapter.make_key(
            new.task_type, new.args, new.kwargs, cache_key_fn, entry_id, new.metadata
        )


def cached_result_json(value: Any) -> str | None:
    """A cached value as the JSON text a task's result is stored as; None if it is not JSON.

    Both ways a task completes from the cache (when it is added, when it runs) decide with
    this: a value the result column cannot hold is a miss, and the task runs.
    """
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None


def complete_from_cache(new: NewTask, result_json: str) -> None:
    """Mark a task being added as completed from the cache: inserted completed, never run.

    The one place an add-time hit is decided, for whatever must follow one (futures, events).
    """
    new.cached_result_json = result_json
    new.claimed_by = None


def _lookups(new_tasks: Sequence[NewTask], adapter: AsyncCacheAdapter) -> list[tuple[str, str | None]]:
    """The ``(key, entry_id)`` pairs to look up when adding: tasks with a key that are due now.

    A task deferred by ``run_after`` is looked up when it runs: the entry may change meanwhile.
    """
    return [
        (new.cache_key, adapter.generate_entry_id(new.task_type, new.id))
        for new in new_tasks
        if new.cache_key and new.run_after is None and new.cached_result_json is None
    ]


def _apply_hits(new_tasks: Sequence[NewTask], values: dict[str, Any]) -> list[NewTask]:
    hits = []
    for new in new_tasks:
        if new.cache_key in values and new.run_after is None:
            result_json = cached_result_json(values[new.cache_key])
            if result_json is not None:
                complete_from_cache(new, result_json)
                hits.append(new)
    return hits


def add_tasks(
    new_tasks: Sequence[NewTask],
    adapter: AsyncCacheAdapter | None,
    check: Callable[[Sequence[NewTask]], None] | None = None,
) -> list[str]:
    """Look the keys ``assign_cache_keys`` gave up, mark the hits, insert all tasks; return ids.

    The one way tasks with cache keys are stored (worker and ``enqueue`` alike); synchronous,
    run on a database thread. All keys are read with one backend call; then ``check`` (the
    queue-size limit, which hits do not count against) and the single INSERT of
    ``store.add_tasks``. When the entries live in the task database, the lookup and the insert
    share one transaction: one commit. A cache that fails is logged and every task runs (it is
    looked up again then).
    """
    lookups = _lookups(new_tasks, adapter) if adapter is not None else []
    together = bool(lookups) and adapter is not None and adapter.backend.in_task_database
    with transaction.atomic() if together else contextlib.nullcontext():
        if lookups and adapter is not None:
            try:
                values = adapter.read_entries(lookups)
            except Exception:
                logger.exception("cache lookup failed while adding %d tasks; they run", len(lookups))
            else:
                _apply_hits(new_tasks, values)
        if check is not None:
            check(new_tasks)
        return store.add_tasks(new_tasks)


class ResultCache:
    """Look a claimed task up in the cache, join an equal running task, store results.

    Joining: among running tasks with one key, the one that started first runs; the others
    wait for it. One in this process is awaited directly; one in another process is polled
    at ``poll_interval`` (no event crosses processes here). If it fails, is cancelled or
    goes back to pending, the waiters look again and the next first one runs.
    """

    def __init__(
        self,
        adapter: AsyncCacheAdapter,
        *,
        is_enabled: Callable[[], bool],
        db: DatabaseThread,
        poll_interval: float,
    ) -> None:
        self.adapter = adapter
        self._is_enabled = is_enabled
        self._db = db
        self._poll_interval = poll_interval
        self._runs: dict[str, asyncio.Future[RunResult]] = {}

    def applies(self, claim: ClaimedTask) -> bool:
        return bool(claim.cache_key) and self._is_enabled() and self.adapter.enabled

    def begin(self, claim: ClaimedTask) -> None:
        """Announce a run in this process, so equal tasks here can await it."""
        self._runs[claim.id] = asyncio.get_running_loop().create_future()

    def end(self, claim: ClaimedTask, succeeded: bool, result: Any = None) -> None:
        """Tell the tasks that joined this run how it ended (always called after ``begin``)."""
        future = self._runs.pop(claim.id, None)
        if future is not None and not future.done():
            future.set_result((succeeded, result))

    async def lookup(self, claim: ClaimedTask) -> tuple[bool, Any]:
        """Return ``(True, value)`` from the cache or a joined run, or ``(False, None)``: run it.

        A cache that fails (its table missing, Redis down) is logged and the task simply runs.
        """
        try:
            return await self._lookup(claim)
        except Exception:
            logger.exception("cache lookup failed for task %s; running it", claim.id)
            return False, None

    async def _lookup(self, claim: ClaimedTask) -> tuple[bool, Any]:
        entry_id = self.adapter.generate_entry_id(claim.task_type, claim.id)
        while True:
            hit, value = await self.adapter.get_entry(claim.cache_key, entry_id=entry_id)
            if hit:
                return True, value
            first = await self._db.run(store.first_running_with_cache_key, claim.cache_key)
            if first is None or first == claim.id:
                return False, None
            logger.debug("task %s joins running task %s key=%.80s", claim.id, first, claim.cache_key)
            succeeded, value = await self._wait_for(first)
            if succeeded:
                return True, value

    async def _wait_for(self, task_id: str) -> RunResult:
        local = self._runs.get(task_id)
        if local is not None:
            return await asyncio.shield(local)
        # Another process runs it: a bounded poll of its row.
        while True:
            info = await self._db.run(store.get_task, task_id)
            if info is None or info.status is TaskStatus.PENDING:
                return False, None
            if info.status is TaskStatus.COMPLETED:
                return True, info.result
            if info.status is not TaskStatus.RUNNING:
                return False, None
            await asyncio.sleep(self._poll_interval)

    async def store(self, claim: ClaimedTask, result: Any) -> None:
        """Cache a successful result; a refusal (too large, unserializable) is only logged."""
        entry_id = self.adapter.generate_entry_id(claim.task_type, claim.id)
        try:
            await self.adapter.set_entry(
                claim.cache_key, result, claim.cache_ttl, task_type=claim.task_type, entry_id=entry_id
            )
        except Exception:
            logger.exception("could not cache the result of task %s", claim.id)
