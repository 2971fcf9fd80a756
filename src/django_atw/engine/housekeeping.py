"""A running worker's background duties: heartbeats, other processes' changes, retention."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .. import store
from .db import DatabaseThread
from .futures import TaskFutureManager
from .pool import WorkerPool

logger = logging.getLogger(__name__)

# Seconds between heartbeats of the worker's row (its liveness for the admin and for leases).
HEARTBEAT_INTERVAL = 5.0


class Housekeeper:
    """Notice, at the poll interval, what no in-process event announces.

    Futures of tasks that run in other processes resolve from the stored outcome; a cancel
    request stored by another process cancels the task here; the worker's row gets its
    heartbeat. Retention cleanup runs on its own, slower interval (none when disabled).
    """

    def __init__(
        self,
        *,
        worker_id: str,
        db: DatabaseThread,
        pool: WorkerPool,
        futures: TaskFutureManager,
        poll_interval: float,
        cleanup: Callable[[], Awaitable[int]] | None,
        cleanup_interval: float,
    ) -> None:
        self._worker_id = worker_id
        self._db = db
        self._pool = pool
        self._futures = futures
        self._poll_interval = poll_interval
        self._cleanup = cleanup
        self._cleanup_interval = cleanup_interval
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._poll_loop(), name=f"atw-housekeeping-{self._worker_id}"))
        if self._cleanup is not None:
            self._tasks.append(
                asyncio.create_task(self._cleanup_loop(), name=f"atw-cleanup-{self._worker_id}")
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_heartbeat = loop.time() + HEARTBEAT_INTERVAL
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self._poll_once()
                if loop.time() >= next_heartbeat:
                    await self._db.run(store.heartbeat, self._worker_id, len(self._pool.running))
                    next_heartbeat = loop.time() + HEARTBEAT_INTERVAL
            except Exception:
                logger.exception("worker housekeeping failed; retrying at the next poll")

    async def _poll_once(self) -> None:
        running = self._pool.running
        remote = [task_id for task_id in self._futures.watched() if task_id not in running]
        if remote:
            for info in (await self._db.run(store.finished_among, remote)).values():
                self._futures.resolve_from_info(info)
        if running:
            for task_id in await self._db.run(store.cancel_requested_among, self._worker_id, list(running)):
                self._pool.cancel(task_id)

    async def _cleanup_loop(self) -> None:
        assert self._cleanup is not None
        while True:
            await asyncio.sleep(self._cleanup_interval)
            try:
                await self._cleanup()
            except Exception:
                logger.exception("retention cleanup failed; retrying at the next interval")
