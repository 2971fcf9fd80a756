"""Live task events on the Channels layer: what is published, to which groups, from where.

Every status change and every coalesced progress update of a task is sent to two groups:
``atw.task.<id>`` (clients watching that task) and ``atw.tasks`` (clients watching a task
list; each filters by its own criteria and permissions). Group names are made here only.

Events come from the process that runs the task (its ``EventPublisher``), published after
the change is committed, so a snapshot read later is never older than an event sent earlier.
Changes no worker publishes (a task enqueued or cancelled before it ran, a task returned to
pending) and, with the in-memory layer, everything a worker in another process does are
published by the ``Relay`` of each web process, which reads them from the database.

Payloads are small: the protocol's task fields, ``result`` only when its JSON fits in
``MAX_RESULT_BYTES``. Nothing here runs unless ``CHANNEL_LAYERS`` is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from . import store
from .engine.db import DatabaseThread
from .status import TaskStatus
from .values import ClaimedTask, Outcome

logger = logging.getLogger(__name__)

LIST_GROUP = "atw.tasks"
TASK_GROUP_PREFIX = "atw.task."
# The consumer method that receives events: Channels maps "atw.task" to ``atw_task``.
EVENT_TYPE = "atw.task"
# Results larger than this (as JSON) are left out of events and snapshots; the page fetches
# them another way if it needs them.
MAX_RESULT_BYTES = 4096
# Channels accepts group names of ASCII letters, digits, hyphens, underscores and periods,
# shorter than 100 characters; other task ids get a digest instead.
_GROUP_SAFE = re.compile(r"[A-Za-z0-9._-]{1,80}")
# How far back each relay poll looks again, for commits that landed after the previous poll
# with an earlier timestamp (another process's clock or a long transaction).
RELAY_LOOKBACK = timedelta(seconds=2)

# Ids of the workers of this process that publish their own events (see Relay).
_local_workers: set[str] = set()


def task_group(task_id: str) -> str:
    """Return the channel-layer group of one task's events."""
    if _GROUP_SAFE.fullmatch(task_id):
        return TASK_GROUP_PREFIX + task_id
    return TASK_GROUP_PREFIX + "h" + hashlib.sha256(task_id.encode()).hexdigest()[:40]


def get_layer() -> Any:
    """Return the default channel layer, or None when Channels is absent or unconfigured."""
    try:
        from channels.layers import get_channel_layer
    except ImportError:
        return None
    return get_channel_layer()


def crosses_processes(layer: Any) -> bool:
    """True unless ``layer`` is Channels' in-memory layer, which reaches this process only."""
    from channels.layers import InMemoryChannelLayer

    return not isinstance(layer, InMemoryChannelLayer)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def task_payload(row: dict[str, Any]) -> dict[str, Any]:
    """Return the protocol's ``<task>`` object for a row of ``store.EVENT_FIELDS``."""
    status = str(row["status"])
    payload: dict[str, Any] = {
        "id": row["id"],
        "task_type": row["task_type"],
        "queue": row["queue"],
        "status": status,
        "progress": float(row["progress"]),
        "created_at": _iso(row["created_at"]),
        "started_at": _iso(row["started_at"]),
        "completed_at": _iso(row["completed_at"]),
        "error": row["error"] or None,
        "from_cache": bool(row["from_cache"]),
        "attempts": int(row["attempts"]),
        "max_attempts": int(row["max_attempts"]),
        "run_after": _iso(row["run_after"]),
    }
    if status == TaskStatus.COMPLETED.value:
        result = row["result"]
        if not row.get("result_truncated") and len(json.dumps(result)) <= MAX_RESULT_BYTES:
            payload["result"] = result
        else:
            payload["result_truncated"] = True
    return payload


def event_message(row: dict[str, Any]) -> dict[str, Any]:
    """Return the channel-layer message for a row: the payload plus what consumers filter on."""
    owner = row["created_by_id"]
    return {
        "type": EVENT_TYPE,
        "task": task_payload(row),
        "owner": str(owner) if owner is not None else None,
        # Orders events and snapshots of one task: a consumer drops anything older than
        # what it already sent.
        "version": row["updated_at"].timestamp(),
    }


async def publish_rows(layer: Any, rows: Iterable[dict[str, Any]]) -> int:
    """Send each row's event to its task group and to the list group; return how many."""
    sent = 0
    for row in rows:
        message = event_message(row)
        await layer.group_send(task_group(row["id"]), message)
        await layer.group_send(LIST_GROUP, message)
        sent += 1
    return sent


async def publish_tasks(task_ids: Iterable[str], layer: Any = None) -> int:
    """Read the tasks' committed state and publish it (for changes made outside a worker)."""
    layer = layer if layer is not None else get_layer()
    if layer is None:
        return 0
    from asgiref.sync import sync_to_async

    rows = await sync_to_async(store.event_rows)(list(task_ids))
    return await publish_rows(layer, rows)


class EventPublisher:
    """A worker's events: task starts, progress after each flush, outcomes after each commit.

    The worker's hooks only append to a list and set an event; the publishing (a database read
    when a task starts, then sends to the layer) runs in its own asyncio task and never delays
    the engine's claims or writes. Progress and outcomes are built from the row read at start,
    so they cost no query. Several updates of one task waiting together collapse to the newest
    of each status, so a slow layer delays events but never queues stale ones.
    """

    def __init__(self, layer: Any, worker_id: str) -> None:
        self._layer = layer
        self._worker_id = worker_id
        self._db = DatabaseThread(f"atw-events-{worker_id}")
        self._rows: dict[str, dict[str, Any]] = {}  # running tasks' last published rows
        self._queue: list[tuple[str, Any, datetime | None]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_worker(cls, worker_id: str) -> EventPublisher | None:
        """Return a publisher for a worker, or None if no channel layer is configured."""
        layer = get_layer()
        return cls(layer, worker_id) if layer is not None else None

    def start(self) -> None:
        _local_workers.add(self._worker_id)
        self._task = asyncio.create_task(self._run(), name=f"atw-events-{self._worker_id}")

    async def stop(self) -> None:
        """Publish what is queued, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        _local_workers.discard(self._worker_id)
        await self._db.close()

    # --- hooks called by the engine on its loop (cheap: no I/O) ---

    def task_started(self, claim: ClaimedTask) -> None:
        self._queue.append(("read", claim.id, None))
        self._wake.set()

    # The writer calls these right after its commit and before it starts the next write, so
    # their stamp orders the change after this write and before the next, as the rows'
    # ``updated_at`` does: events built from memory and rows read later compare correctly.

    def progress_committed(self, progress: Sequence[tuple[str, float]]) -> None:
        stamp = timezone.now()
        self._queue.extend(("progress", item, stamp) for item in progress)
        self._wake.set()

    def outcomes_committed(self, outcomes: Sequence[Outcome]) -> None:
        stamp = timezone.now()
        self._queue.extend(("outcome", outcome, stamp) for outcome in outcomes)
        self._wake.set()

    # --- publishing ---

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if batch:
                try:
                    await self._publish(batch)
                except Exception:
                    logger.exception("could not publish %d task events", len(batch))
            if self._stopping and not self._queue:
                return

    async def _publish(self, batch: list[tuple[str, Any, datetime | None]]) -> None:
        need = {self._task_id(kind, item) for kind, item, _ in batch}
        need = {task_id for task_id in need if task_id not in self._rows}
        # A start is always read: a row kept from an earlier run of the task is stale (that
        # run's outcome was turned away after its lease was lost, so nothing dropped the row).
        need.update(str(item) for kind, item, _ in batch if kind == "read")
        read: dict[str, dict[str, Any]] = {}
        if need:
            read = {row["id"]: row for row in await self._db.run(store.event_rows, need)}
            for task_id, row in read.items():
                if row["status"] == TaskStatus.RUNNING.value:
                    self._rows[task_id] = row
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for kind, item, stamp in batch:
            task_id = self._task_id(kind, item)
            after = self._row_after(kind, item, stamp, task_id, read)
            if after is not None:
                key = (task_id, str(after["status"]))
                latest.pop(key, None)  # re-insert: keep the position of the newest
                latest[key] = after
        await publish_rows(self._layer, latest.values())

    @staticmethod
    def _task_id(kind: str, item: Any) -> str:
        if kind == "read":
            return str(item)
        if kind == "progress":
            return str(item[0])
        return str(item.task_id)

    def _row_after(
        self, kind: str, item: Any, stamp: datetime | None, task_id: str, read: dict[str, dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The row to publish after one change, from the row read or the last one published."""
        known = self._rows.get(task_id)
        if kind == "read" or known is None or stamp is None:
            if kind == "outcome":
                self._rows.pop(task_id, None)
            return read.get(task_id)
        if kind == "progress":
            if stamp <= known["updated_at"]:
                return None  # the row read at start is already newer
            known = {**known, "progress": item[1], "updated_at": stamp}
            self._rows[task_id] = known
            return known
        # The final state is always sent, and always as the newest.
        now = max(stamp, known["updated_at"] + timedelta(microseconds=1))
        outcome: Outcome = item
        del self._rows[task_id]
        retry = outcome.status is TaskStatus.PENDING  # back in the queue until its next run
        row = {
            **known,
            "status": outcome.status.value,
            "progress": 0.0 if retry else outcome.progress,
            "error": outcome.error,
            "started_at": None if retry else known["started_at"],
            "completed_at": None if retry else outcome.completed_at or now,
            "run_after": outcome.run_after if retry else None,
            "from_cache": outcome.from_cache,
            "updated_at": now,
            "result": None,
        }
        if outcome.result_json is not None:
            if len(outcome.result_json) <= MAX_RESULT_BYTES:
                row["result"] = json.loads(outcome.result_json)
            else:
                row["result_truncated"] = True
        return row


class Relay:
    """Publish task changes read from the database that no worker publishes to this layer.

    Runs in web processes (started with the server by ``django_atw.asgi.with_worker``). With a
    layer that crosses processes (Redis), workers publish their own tasks' events and the relay
    adds only changes made outside a worker: tasks enqueued, cancelled before they ran, or
    returned to pending. With the in-memory layer, which never leaves its process, it also
    relays what workers in other processes do, so their progress still reaches this process's
    clients, every ``interval`` seconds.
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

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
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
        """Publish the changes committed after ``cutoff`` not yet relayed; return how many."""
        rows = await self._db.run(store.changed_since, cutoff)
        fresh = []
        for row in rows:
            task_id, version = row["id"], row["updated_at"]
            if self._seen.get(task_id) == version:
                continue
            self._seen[task_id] = version
            worker_id = row["worker_id"]
            published_by_worker = worker_id is not None and (
                self._only_unowned or worker_id in _local_workers
            )
            if not published_by_worker:
                fresh.append(row)
        self._seen = {task_id: v for task_id, v in self._seen.items() if v > cutoff}
        sent = await publish_rows(self._layer, fresh)
        self.relayed += sent
        return sent


__all__ = [
    "EVENT_TYPE",
    "LIST_GROUP",
    "MAX_RESULT_BYTES",
    "EventPublisher",
    "Relay",
    "crosses_processes",
    "event_message",
    "get_layer",
    "publish_rows",
    "publish_tasks",
    "task_group",
    "task_payload",
]
