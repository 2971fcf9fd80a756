"""Worker rows: registration, heartbeats, clean stops, lease recovery of dead workers, pruning."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from ..models import TaskRecord, WorkerProcess
from ..status import TaskStatus
from ..values import Reaped
from ._vendor import TASK_ADDED_CHANNEL, appended_attempt, notify, param
from .tasks import CANCEL_ERROR_TYPE, CANCELLED_WHILE_RUNNING

# The error type stored on a task failed because its worker died on its last attempt.
WORKER_DIED_ERROR_TYPE = "WorkerDiedError"
# Worker rows deleted per prune: pruning shares the heartbeat's connection, so one batch must
# take milliseconds; a backlog (thousands of short-lived workers) goes one batch per heartbeat.
PRUNE_BATCH = 500

# --- workers --------------------------------------------------------------------------------


def register_worker(worker_id: str, hostname: str, pid: int, queues: Sequence[str], concurrency: int) -> None:
    """Record a starting worker process (or revive the row of one whose lease had expired)."""
    now = timezone.now()
    WorkerProcess.objects.update_or_create(
        id=worker_id,
        defaults={
            "hostname": hostname,
            "pid": pid,
            "queues": list(queues),
            "concurrency": concurrency,
            "started_at": now,
            "last_heartbeat": now,
            "stopping": False,
            "stopped_at": None,
            "tasks_running": 0,
        },
    )


def heartbeat(worker_id: str, tasks_running: int) -> bool:
    """Refresh a worker's heartbeat and running count; False if its lease was already taken.

    A worker whose row another worker marked stopped (its heartbeat was older than the lease)
    has lost its running tasks to lease recovery: it must drop them and register again.
    """
    updated = WorkerProcess.objects.filter(id=worker_id, stopped_at__isnull=True).update(
        last_heartbeat=timezone.now(), tasks_running=tasks_running
    )
    return updated == 1


def mark_worker_stopped(worker_id: str) -> None:
    """Record a clean exit: the row stays for the admin, flagged as stopped, until pruned."""
    now = timezone.now()
    WorkerProcess.objects.filter(id=worker_id).update(
        stopping=True, stopped_at=now, tasks_running=0, last_heartbeat=now
    )


def reap_stale_workers(lease: timedelta) -> Reaped:
    """Mark workers silent for longer than ``lease`` stopped and recover their running tasks.

    A recovered task goes back to pending (its dead attempt stays counted, so the next claim
    makes it attempt 2) or, when it has no attempts left, fails with an error that says its
    worker died; one whose cancel was requested is stored cancelled, never run again. Running
    tasks of stopped or unknown workers are recovered too. One transaction.
    Workers are marked first: a heartbeat racing this call either lands before (the worker is
    live and keeps its tasks) or finds its row stopped (and drops its tasks). Each task update is
    conditioned on the row still running, so two workers reaping at once recover a task once.
    """
    now = timezone.now()
    cutoff = now - lease
    with transaction.atomic():
        stale = WorkerProcess.objects.filter(stopped_at__isnull=True, last_heartbeat__lt=cutoff)
        dead = list(stale.values_list("id", flat=True))
        if dead:
            stale.filter(id__in=dead).update(stopped_at=now, stopping=True, tasks_running=0)
        live = WorkerProcess.objects.filter(stopped_at__isnull=True).values("id")
        orphans = list(
            TaskRecord.objects.filter(status=TaskStatus.RUNNING.value)
            .exclude(worker_id__in=live)
            .values_list("id", "attempts", "max_attempts", "queue", "worker_id", "cancel_requested")
        )
        if not orphans:
            return Reaped(dead, [], [])
        running = TaskRecord.objects.filter(status=TaskStatus.RUNNING.value)
        cancelled = [row for row in orphans if row[5]]
        exhausted = [row for row in orphans if not row[5] and row[1] >= row[2]]
        requeued = [row for row in orphans if not row[5] and row[1] < row[2]]
        for ran_by in {row[4] for row in cancelled}:
            ids = [row[0] for row in cancelled if row[4] == ran_by]
            running.filter(id__in=ids, worker_id=ran_by).update(
                status=TaskStatus.CANCELLED.value,
                error=CANCELLED_WHILE_RUNNING,
                error_type=CANCEL_ERROR_TYPE,
                completed_at=now,
                updated_at=now,
            )
        # Not cancel_requested: a cancel requested since the read above leaves the task
        # running, and the next pass cancels it, rather than returning it to the queue.
        running = running.filter(cancel_requested=False)
        by_worker: dict[str | None, list[str]] = {}
        for task_id, _attempts, _max, _queue, worker_id, _cancel in exhausted:
            by_worker.setdefault(worker_id, []).append(task_id)
        for owner, ids in by_worker.items():
            died = _worker_died(owner, lease, "and the task has no attempts left")
            running.filter(id__in=ids, worker_id=owner).update(
                status=TaskStatus.FAILED.value,
                error=died,
                error_type=WORKER_DIED_ERROR_TYPE,
                attempt_log=_died_attempt(now, died),
                completed_at=now,
                updated_at=now,
            )
        for owner in {row[4] for row in requeued}:
            ids = [row[0] for row in requeued if row[4] == owner]
            running.filter(id__in=ids, worker_id=owner).update(
                status=TaskStatus.PENDING.value,
                worker=None,
                started_at=None,
                progress=0.0,
                run_after=None,
                # The attempt failed with its worker: logged, though the task goes on.
                attempt_log=_died_attempt(now, _worker_died(owner, lease, "so the task was queued again")),
                updated_at=now,
            )
        notify(TASK_ADDED_CHANNEL, {row[3] for row in requeued})
    return Reaped(
        dead, [row[0] for row in requeued], [row[0] for row in exhausted], [row[0] for row in cancelled]
    )


def _worker_died(owner: str | None, lease: timedelta, then: str) -> str:
    return (
        f"The worker running this task ({owner or 'unknown'}) died: it stopped heart-beating for "
        f"longer than the {lease.total_seconds():g} s lease, {then}."
    )


def _died_attempt(now: datetime, error: str) -> RawSQL:
    """The attempt log with the running attempt appended as failed because its worker died."""
    sql = appended_attempt("", param("timestamptz"), param("text"), param("text"), "''")
    return RawSQL(sql, [now, WORKER_DIED_ERROR_TYPE, error])


def prune_workers(stopped_before: datetime, batch_size: int = PRUNE_BATCH) -> int:
    """Delete up to ``batch_size`` rows of workers stopped before ``stopped_before``, oldest first.

    Returns how many; fewer than ``batch_size`` means none is left. One short transaction, so it
    can share the heartbeat's connection: callers prune a backlog one batch per heartbeat.
    """
    with transaction.atomic():
        old = WorkerProcess.objects.filter(stopped_at__lt=stopped_before).order_by("stopped_at")
        ids = list(old.values_list("id", flat=True)[:batch_size])
        if not ids:
            return 0
        deleted, _ = WorkerProcess.objects.filter(id__in=ids, stopped_at__lt=stopped_before).delete()
    return deleted


def list_workers() -> list[dict[str, Any]]:
    """Return every worker row as a dict, newest first (for ``atw_status`` and the admin)."""
    return [
        dict(row)
        for row in WorkerProcess.objects.order_by("-started_at").values(
            "id",
            "hostname",
            "pid",
            "queues",
            "concurrency",
            "tasks_running",
            "started_at",
            "last_heartbeat",
            "stopping",
            "stopped_at",
        )
    ]
