"""Publish task events from the process that changes the task.

Events come from the process that runs the task (its ``EventPublisher``), published after
the change is committed, so a snapshot read later is never older than an event sent earlier.
Changes no worker publishes (a task enqueued or cancelled before it ran, a task returned to
pending) and, with the in-memory layer, everything a worker in another process does are
published by the ``Relay`` of each web process (``realtime.relay``), which reads them from
the database. Nothing here runs unless ``CHANNEL_LAYERS`` is configured.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from .. import store
from ..status import TaskStatus
from ..store.thread import DatabaseThread
from .groups import LIST_GROUP, task_group
from .layer import count_dropped, get_layer, group_send, may_have_members, task_group_send
from .payloads import MAX_RESULT_BYTES, batch_message, event_message

logger = logging.getLogger(__name__)

# Changes a publisher holds while the layer is slow or hung. A worker queues one item per task
# start, per outcome and per flushed progress value (at most one per task per flush), so this
# is several seconds' worth for thousands of running tasks; beyond it the oldest progress is
# dropped first (a newer value of the same task supersedes it anyway).
MAX_PENDING = 10_000
# Seconds ``stop`` waits for queued events: a healthy layer needs milliseconds, a hung one
# gets one ``SEND_TIMEOUT`` and the database read before it; what is left then is dropped.
STOP_TIMEOUT = 2.0

# Rows published per loop turn: one list-group message each, and one message per watched task.
# A turn then costs a few milliseconds with the in-memory layer on a site with thousands of
# watched tasks (its group scan runs once a chunk: ``layer.task_group_send``), and a batch
# message stays small (about 60 KB) for a Redis layer.
PUBLISH_CHUNK = 100

# Ids of the workers of this process that publish their own events (see ``Relay``).
_local_workers: set[str] = set()


def publishes_here(worker_id: str) -> bool:
    """True when ``worker_id`` is a worker of this process that publishes its own events."""
    return worker_id in _local_workers


async def publish_rows(layer: Any, rows: Iterable[dict[str, Any]]) -> int:
    """Send each row's event to its task group, and the events to the list group in batches;
    return how many rows went.

    Rows go ``PUBLISH_CHUNK`` at a time: each chunk is one message to the list group and one
    per watched task, and the loop gets a turn between chunks, so publishing thousands of
    changes never holds up the process's requests. Each send is bounded
    (``layer.SEND_TIMEOUT``). The first one the layer fails or does not take ends the call and
    the rest are dropped: the next would most likely fail the same way, after as long a wait.
    """
    rows = list(rows)
    sent = 0
    for start in range(0, len(rows), PUBLISH_CHUNK):
        if start:
            await asyncio.sleep(0)
        chunk = rows[start : start + PUBLISH_CHUNK]
        messages = [event_message(row) for row in chunk]
        delivered = True
        for row, message in zip(chunk, messages, strict=True):
            group = task_group(row["id"])
            if may_have_members(layer, group) and not await task_group_send(layer, group, message):
                delivered = False
                break
        if not (delivered and await group_send(layer, LIST_GROUP, batch_message(messages))):
            count_dropped(layer, len(rows) - sent)
            break
        sent += len(chunk)
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
    of each status, so a slow layer delays events but never queues stale ones. A hung layer
    costs at most ``SEND_TIMEOUT`` per batch; the backlog is bounded by ``MAX_PENDING`` and
    ``stop`` by its timeout.
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
        self._overflowing = False
        self.dropped = 0  # changes dropped from a full backlog, since start

    @property
    def pending(self) -> int:
        """The number of changes waiting to be published."""
        return len(self._queue)

    @classmethod
    def for_worker(cls, worker_id: str) -> EventPublisher | None:
        """Return a publisher for a worker, or None if no channel layer is configured."""
        layer = get_layer()
        return cls(layer, worker_id) if layer is not None else None

    def start(self) -> None:
        _local_workers.add(self._worker_id)
        self._task = asyncio.create_task(self._run(), name=f"atw-events-{self._worker_id}")

    def side_tasks(self) -> list[asyncio.Task[None]]:
        """The long-lived tasks the worker watches (the publishing loop)."""
        return [self._task] if self._task is not None else []

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Publish what is queued for up to ``timeout`` seconds, drop the rest, then stop."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait({task}, timeout=timeout)
            finally:
                if not task.done():
                    logger.warning(
                        "task events not published within %.1fs of stopping were dropped worker=%s",
                        timeout,
                        self._worker_id,
                    )
                    task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        _local_workers.discard(self._worker_id)
        await self._db.close()

    # --- hooks called by the engine on its loop (cheap: no I/O) ---

    def task_started(self, claim: store.ClaimedTask) -> None:
        self._enqueue([("read", claim.id, None)])

    # The writer calls these right after its commit and before it starts the next write, so
    # their stamp orders the change after this write and before the next, as the rows'
    # ``updated_at`` does: events built from memory and rows read later compare correctly.

    def progress_committed(self, progress: Sequence[tuple[str, float]]) -> None:
        stamp = timezone.now()
        self._enqueue([("progress", item, stamp) for item in progress])

    def outcomes_committed(self, outcomes: Sequence[store.Outcome]) -> None:
        stamp = timezone.now()
        self._enqueue([("outcome", outcome, stamp) for outcome in outcomes])

    def _enqueue(self, items: list[tuple[str, Any, datetime | None]]) -> None:
        self._queue.extend(items)
        if len(self._queue) > MAX_PENDING:
            self._make_room()
        self._wake.set()

    def _make_room(self) -> None:
        """Shrink a full backlog to ``MAX_PENDING``: superseded progress, then the oldest
        progress, then (a backlog of starts and outcomes only) the oldest changes go."""
        queue = self._queue
        newest = {item[0]: index for index, (kind, item, _) in enumerate(queue) if kind == "progress"}
        queue = [
            entry
            for index, entry in enumerate(queue)
            if entry[0] != "progress" or newest[entry[1][0]] == index
        ]
        excess = len(queue) - MAX_PENDING
        if excess > 0:
            kept = []
            for entry in queue:
                if excess > 0 and entry[0] == "progress":
                    excess -= 1
                else:
                    kept.append(entry)
            queue = kept
        if excess > 0:
            for kind, item, _ in queue[:excess]:
                if kind == "outcome":
                    self._rows.pop(self._task_id(kind, item), None)
            queue = queue[excess:]
        dropped = len(self._queue) - len(queue)
        self._queue = queue
        self.dropped += dropped
        count_dropped(self._layer, dropped)
        if not self._overflowing:
            self._overflowing = True
            logger.warning(
                "task event backlog is full (%d changes): dropping the oldest progress first worker=%s",
                MAX_PENDING,
                self._worker_id,
            )

    # --- publishing ---

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if batch:
                try:
                    complete = await self._publish(batch)
                except Exception:
                    logger.exception("could not publish %d task events", len(batch))
                    complete = False
                if complete and self._overflowing and not self._queue:
                    self._overflowing = False
                    logger.info(
                        "task event backlog drained; %d changes dropped since start worker=%s",
                        self.dropped,
                        self._worker_id,
                    )
            if self._stopping and not self._queue:
                return

    async def _publish(self, batch: list[tuple[str, Any, datetime | None]]) -> bool:
        """Publish a batch of changes; return False if the layer did not take all of them."""
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
        return await publish_rows(self._layer, latest.values()) == len(latest)

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
        outcome: store.Outcome = item
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
