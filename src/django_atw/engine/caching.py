"""The result cache when a task runs: look it up, join an equal running task, store its result.

Keys are computed and looked up when a task is added: see ``cache/task_keys.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .. import store
from ..cache import AsyncCacheAdapter
from ..status import TaskStatus
from ..store.thread import DatabaseThread
from ..values import ClaimedTask

logger = logging.getLogger(__name__)

# What an in-process run tells the tasks that joined it: (succeeded, result).
RunResult = tuple[bool, Any]


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
