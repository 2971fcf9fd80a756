"""Relay task changes from the database to the channel layer, in web processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from .. import store
from ..store.thread import DatabaseThread
from .layer import crosses_processes
from .publisher import STOP_TIMEOUT, publish_rows, publishes_here

logger = logging.getLogger(__name__)

# How far back each relay poll looks again, for commits that landed after the previous poll
# with an earlier timestamp (another process's clock or a long transaction).
RELAY_LOOKBACK = timedelta(seconds=2)
# Rows read per query: a bulk enqueue elsewhere is relayed a bounded page at a time.
RELAY_PAGE = 500


class Relay:
    """Publish task changes read from the database that no worker publishes to this layer.

    Runs in web processes (started with the server by ``django_atw.asgi.with_worker``). With a
    layer that crosses processes (Redis), workers publish their own tasks' events and the relay
    adds only changes made outside a worker: tasks enqueued, cancelled before they ran, or
    returned to pending. With the in-memory layer, which never leaves its process, it also
    relays what workers in other processes do, so their progress still reaches this process's
    clients, every ``interval`` seconds. Sends to a hung layer are bounded and dropped (see
    ``realtime.layer``), and so is ``stop``.
    """

    def __init__(self, layer: Any, interval: float) -> None:
        self._layer = layer
        self._interval = interval
        self._only_unowned = crosses_processes(layer)
        self._seen: dict[str, datetime] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._db = DatabaseThread("atw-relay")
        self.relayed = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="atw-relay")

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Let a poll under way finish for up to ``timeout`` seconds, then stop."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait({task}, timeout=timeout)
            finally:
                task.cancel()  # does nothing if it finished
                await asyncio.gather(task, return_exceptions=True)
        await self._db.close()

    async def _run(self) -> None:
        since = timezone.now()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._stop.wait()
            started = timezone.now()
            try:
                await self.poll(since - RELAY_LOOKBACK)
            except Exception:
                logger.exception("relaying task changes failed; retrying in %.1fs", self._interval)
                continue
            since = started

    async def poll(self, cutoff: datetime) -> int:
        """Publish the changes committed after ``cutoff`` not yet relayed; return how many.

        Reads ``RELAY_PAGE`` rows at a time, each page after the last row of the one before,
        and gives the loop a turn between pages (and ``publish_rows`` between chunks), so a
        bulk enqueue of thousands of tasks elsewhere costs this process bounded turns, not a
        freeze.
        """
        sent = 0
        after: tuple[datetime, str] | None = None
        while True:
            keys, rows = await self._db.run(self._read_page, cutoff, after)
            fresh = []
            for row in rows:
                self._seen[row["id"]] = row["updated_at"]
                worker_id = row["worker_id"]
                published_by_worker = worker_id is not None and (
                    self._only_unowned or publishes_here(worker_id)
                )
                if not published_by_worker:
                    fresh.append(row)
            published = await publish_rows(self._layer, fresh)
            sent += published
            self.relayed += published
            if len(keys) < RELAY_PAGE or published < len(fresh):
                break  # the last page, or a layer that does not take events now
            after = keys[-1]
            await asyncio.sleep(0)
        self._seen = {task_id: v for task_id, v in self._seen.items() if v > cutoff}
        return sent

    def _read_page(
        self, cutoff: datetime, after: tuple[datetime, str] | None
    ) -> tuple[list[tuple[datetime, str]], list[dict[str, Any]]]:
        """One page of changes: the page's ``(updated_at, id)`` keys, and the event rows of
        the tasks among them not yet relayed at that version. Runs on the database thread
        while ``poll`` awaits it, so reading ``_seen`` here races with nothing."""
        keys = [(stamp, task_id) for task_id, stamp in store.changed_since(cutoff, after, RELAY_PAGE)]
        unseen = [task_id for stamp, task_id in keys if self._seen.get(task_id) != stamp]
        return keys, (store.event_rows(unseen) if unseen else [])
