"""The operations dashboard's socket: a stats snapshot every few seconds, to staff only.

``/ws/atw/dashboard/`` (in ``routing.websocket_urlpatterns``). On connect the socket sends a
full snapshot (an hour of per-second throughput); then every ``INTERVAL`` seconds a refresh
whose throughput covers only the last ``OVERLAP`` seconds, which the page merges by second
(rows committed late by a worker's batched writer land in a later refresh). Frames::

    {"type": "stats", "full": bool, "at": unix seconds, "window": seconds,
     "throughput": [[unix second, completed, failed], ...],
     "queues": {queue: {"ready", "delayed", "running"}},
     "types": [{"task_type", "completed", "failed", "cancelled", "failure_rate", "p50", "p95"}],
     "sample": int, "workers": [...], "stuck": [...]}

Only active staff users with ``view_taskrecord`` are served; others are accepted and closed
with 4401 (signed out) or 4403, as the task socket does. The socket needs no channel layer:
stats come from the database. Refreshes are shared by every dashboard socket of a process
(one set of queries per interval however many pages are open).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from ..conf import get_settings
from ..store import stats
from . import protocol

logger = logging.getLogger(__name__)

# Seconds between refreshes: live enough to watch a burst, and each refresh is a handful of
# bounded queries.
INTERVAL = 2.0
# Seconds of throughput a refresh re-reads: a worker writes outcomes in batches, so a row can
# be committed a few seconds after its completed_at.
OVERLAP = 10
# Seconds of history the chart shows.
WINDOW = 3600

_shared: tuple[float, dict[str, Any]] | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def read_snapshot(full: bool) -> dict[str, Any]:
    """Read one stats frame from the database (synchronous; run it in a thread)."""
    now = timezone.now()
    alive_since = now - timedelta(seconds=get_settings().WORKER_LEASE)
    hour_ago = now - timedelta(seconds=WINDOW)
    since = hour_ago if full else now - timedelta(seconds=OVERLAP)
    # The reads are not one snapshot: throughput first, so the per-type counts read after it
    # never show fewer finished tasks than the chart of the same frame.
    throughput = [list(bucket) for bucket in stats.throughput(since)]
    types = stats.recent_outcomes(hour_ago)
    workers = stats.worker_activity(alive_since)
    for worker in workers:
        worker["last_heartbeat"] = _iso(worker["last_heartbeat"])
    stuck = stats.stuck_tasks(now, alive_since)
    for task in stuck:
        task["started_at"] = _iso(task["started_at"])
    return {
        "type": "stats",
        "full": full,
        "at": now.timestamp(),
        "window": WINDOW,
        "throughput": throughput,
        "queues": stats.unfinished_depths(now),
        "types": types,
        "sample": sum(t["completed"] + t["failed"] + t["cancelled"] for t in types),
        "workers": workers,
        "stuck": stuck,
    }


def _refresh() -> dict[str, Any]:
    """A refresh frame, read at most once per half interval for all sockets of the process."""
    global _shared
    clock = time.monotonic()
    if _shared is None or clock - _shared[0] >= INTERVAL / 2:
        _shared = (clock, read_snapshot(full=False))
    return _shared[1]


def _allowed(user: Any) -> bool:
    return bool(user.is_staff and user.has_perm("django_atw.view_taskrecord"))


class DashboardConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """One dashboard page's socket: sends stats frames until it closes; it reads nothing."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=protocol.CLOSE_ANONYMOUS)
            return
        if not user.is_active or not await database_sync_to_async(_allowed)(user):
            await self.close(code=protocol.CLOSE_FORBIDDEN)
            return
        self._sender = asyncio.ensure_future(self._send_stats())

    async def disconnect(self, code: int) -> None:
        sender = getattr(self, "_sender", None)
        if sender is not None:
            sender.cancel()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page sends nothing; anything it does send is ignored."""

    async def _send_stats(self) -> None:
        full = True  # until a full snapshot has been sent
        while True:
            try:
                if full:
                    frame = await database_sync_to_async(read_snapshot)(True)
                else:
                    frame = await database_sync_to_async(_refresh)()
                full = False
            except Exception:
                # A database outage: keep the socket, try again next interval.
                logger.warning("dashboard stats could not be read", exc_info=True)
                frame = {"type": "error", "message": "Stats could not be read; retrying."}
            try:
                await self.send_json(frame)
            except Exception:  # the socket is gone: disconnect() cancels this task
                return
            await asyncio.sleep(INTERVAL)
