"""Cancelling, releasing and deleting task rows (adding them is ``inserts``).

Every function is synchronous (Django's ORM and transactions are); async callers run them in a
thread. Each docstring names the transaction it takes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from ..models import TaskRecord
from ..status import TaskStatus
from ._vendor import (
    CANCEL_CHANNEL,
    FINISHED,
    TABLE,
    TASK_ADDED_CHANNEL,
    id_in,
    notify,
    placeholders,
)

# Rows deleted per statement by retention cleanup: small enough that no statement holds
# SQLite's write lock for long, large enough that cleanup of a busy day takes few round trips.
DELETE_BATCH = 1000


def count_pending(queues: Sequence[str] | None = None, *, ready_only: bool = False) -> int:
    """Count pending tasks (all queues, or the named ones).

    ``ready_only`` leaves out tasks deferred to later by ``run_after``, but not retries waiting
    out their backoff: a worker draining a queue finishes what was started.
    """
    qs = TaskRecord.objects.filter(status=TaskStatus.PENDING.value)
    if queues is not None:
        qs = qs.filter(queue__in=list(queues))
    if ready_only:
        qs = qs.filter(Q(run_after__isnull=True) | Q(run_after__lte=timezone.now()) | Q(attempts__gt=0))
    return qs.count()


def release(worker_id: str, task_ids: Iterable[str] | None = None) -> int:
    """Return this worker's unfinished running tasks to pending, as if never claimed; return how many.

    ``task_ids`` None: every task running under ``worker_id`` (a process exiting at once, whose
    engine may have claimed tasks it has not started yet).
    Used by a graceful stop; the attempt is not counted, since the task did not fail. A task
    whose cancel was requested is stored cancelled instead, as if its run had been cancelled:
    the request is final, and back in the queue the task would run again. One UPDATE decides
    per row, so a cancel racing the release either lands before it or finds the task pending.
    One transaction; on PostgreSQL it NOTIFYs the queues, so another worker takes them at once.
    """
    ids = None if task_ids is None else list(task_ids)
    if ids == []:
        return 0
    chosen = "" if ids is None else f"id IN ({placeholders(ids)}) AND "
    now = timezone.now()
    pending, cancelled = TaskStatus.PENDING.value, TaskStatus.CANCELLED.value
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET "
            f"status = CASE WHEN cancel_requested THEN '{cancelled}' ELSE '{pending}' END, "
            "worker_id = CASE WHEN cancel_requested THEN worker_id END, "
            "started_at = CASE WHEN cancel_requested THEN started_at END, "
            "progress = CASE WHEN cancel_requested THEN progress ELSE 0 END, "
            "attempts = CASE WHEN cancel_requested THEN attempts ELSE attempts - 1 END, "
            "completed_at = CASE WHEN cancel_requested THEN %s END, "
            "error = CASE WHEN cancel_requested THEN %s ELSE error END, "
            "error_type = CASE WHEN cancel_requested THEN %s ELSE error_type END, "
            "updated_at = %s "
            f"WHERE {chosen}status = 'running' AND worker_id = %s "
            "RETURNING status, queue",
            [now, CANCELLED_WHILE_RUNNING, CANCEL_ERROR_TYPE, now, *(ids or ()), worker_id],
        )
        released = [queue for status, queue in cursor.fetchall() if status == pending]
        notify(TASK_ADDED_CHANNEL, released)
    return len(released)


# --- cancelling -----------------------------------------------------------------------------

CANCELLED_PENDING = "cancelled"
CANCEL_REQUESTED = "requested"
NOT_CANCELLABLE = "not-cancellable"
# What a cancelled task stores, as the engine stores a run it cancelled (engine/pool.py).
CANCEL_ERROR_TYPE = "TaskCancellationError"
CANCELLED_WHILE_RUNNING = "Task cancelled while running"


def cancel(task_id: str) -> tuple[str, str | None]:
    """Cancel a pending task at once, or flag a running one for its worker.

    Returns (``CANCELLED_PENDING``, None), (``CANCEL_REQUESTED``, worker_id) or
    (``NOT_CANCELLABLE``, None) for an unknown or finished task. Each branch is one
    conditional UPDATE, so a cancel racing a claim either wins or sees the task running.
    """
    now = timezone.now()
    done = TaskRecord.objects.filter(id=task_id, status=TaskStatus.PENDING.value).update(
        status=TaskStatus.CANCELLED.value,
        error="Task cancelled before execution",
        error_type=CANCEL_ERROR_TYPE,
        completed_at=now,
        updated_at=now,
    )
    if done:
        return CANCELLED_PENDING, None
    flagged = TaskRecord.objects.filter(id=task_id, status=TaskStatus.RUNNING.value).update(
        cancel_requested=True, updated_at=now
    )
    if flagged:
        notify(CANCEL_CHANNEL, [task_id])
        worker_id = TaskRecord.objects.filter(id=task_id).values_list("worker_id", flat=True).first()
        return CANCEL_REQUESTED, worker_id
    return NOT_CANCELLABLE, None


def cancel_requested_among(worker_id: str, task_ids: Iterable[str]) -> list[str]:
    """Return which of this worker's running tasks another process asked to cancel."""
    ids = list(task_ids)
    if not ids:
        return []
    return list(
        TaskRecord.objects.filter(
            id_in(ids), worker_id=worker_id, status=TaskStatus.RUNNING.value, cancel_requested=True
        ).values_list("id", flat=True)
    )


# --- retention ------------------------------------------------------------------------------


def delete_finished_before(
    cutoff: datetime, batch_size: int = DELETE_BATCH, statuses: Sequence[str] = tuple(FINISHED)
) -> int:
    """Delete finished tasks (of ``statuses``) completed before ``cutoff`` in batches; return how many.

    One short transaction per batch (``delete_finished_chunk``), so a large cleanup never holds
    a lock for long. It holds the calling thread until done: a worker deletes chunk by chunk
    instead (``engine.housekeeping.delete_finished_in_chunks``), letting its claims in between.
    """
    total = 0
    while True:
        deleted = delete_finished_chunk(cutoff, batch_size, statuses)
        total += deleted
        if deleted < batch_size:
            return total


def count_finished_before(cutoff: datetime, statuses: Sequence[str] = tuple(FINISHED)) -> int:
    """Count the finished tasks (of ``statuses``) ``delete_finished_before`` would delete; one query."""
    wanted = [TaskStatus(status).value for status in statuses if TaskStatus(status).value in FINISHED]
    if not wanted:
        return 0
    return TaskRecord.objects.filter(status__in=wanted, completed_at__lt=cutoff).count()


def delete_finished_chunk(
    cutoff: datetime, batch_size: int = DELETE_BATCH, statuses: Sequence[str] = tuple(FINISHED)
) -> int:
    """Delete up to ``batch_size`` finished tasks completed before ``cutoff``; return how many.

    One transaction of two statements (pick the ids, delete them). Fewer than ``batch_size``
    deleted means none is left. On SQLite the transaction holds the single write lock: keep
    ``batch_size`` small enough that a heartbeat waiting for it waits a moment only.
    """
    wanted = [TaskStatus(status).value for status in statuses if TaskStatus(status).value in FINISHED]
    if not wanted:
        return 0
    with transaction.atomic():
        done = TaskRecord.objects.filter(status__in=wanted, completed_at__lt=cutoff)
        ids = list(done.values_list("id", flat=True)[:batch_size])
        if not ids:
            return 0
        deleted, _ = TaskRecord.objects.filter(id__in=ids, status__in=wanted).delete()
    return deleted


def queue_depths() -> dict[str, dict[str, int]]:
    """Count tasks per queue and status: ``{queue: {status: count}}`` (one grouped scan)."""
    depths: dict[str, dict[str, int]] = {}
    for row in TaskRecord.objects.order_by().values("queue", "status").annotate(count=Count("id")):
        depths.setdefault(row["queue"], {})[row["status"]] = row["count"]
    return depths


# --- result cache ---------------------------------------------------------------------------


def first_running_with_cache_key(cache_key: str) -> str | None:
    """Return the id of the running task with ``cache_key`` that started first (ties: lowest id).

    Tasks with equal keys join the first one instead of running again. Every task waits on the
    same first one, never on a later one, so waits can never form a cycle. One indexed read
    (``atw_task_cache_key_idx`` holds running rows with a key only).
    """
    return (
        TaskRecord.objects.filter(status=TaskStatus.RUNNING.value, cache_key=cache_key)
        .order_by("started_at", "id")
        .values_list("id", flat=True)
        .first()
    )
