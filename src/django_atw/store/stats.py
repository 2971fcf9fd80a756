"""Aggregate reads for the operations dashboard and the metrics endpoint. Nothing here writes.

Every query is bounded by an index or a limit, so a dashboard refreshing every few seconds
costs little however many finished rows are kept: unfinished rows are read through the
partial pending and running indexes, finished ones through the completion index over a
recent window. Only ``outcome_totals`` counts the whole table; it serves a metrics scrape,
which comes every 15 s or more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import TruncSecond

from ..models import TaskRecord, WorkerProcess
from ..status import TaskStatus
from ._vendor import FINISHED

# The newest finished rows that runtime percentiles and failure rates are computed from: enough
# for a stable p95 per task type, small enough to read every refresh (a few hundred KB).
RUNTIME_SAMPLE = 2000
# Running rows examined for stuck tasks; running rows are bounded by the workers' slots anyway.
RUNNING_LIMIT = 1000
OUTCOMES = (TaskStatus.COMPLETED.value, TaskStatus.FAILED.value)


def throughput(since: datetime) -> list[tuple[int, int, int]]:
    """Return ``(unix second, completed, failed)`` for each second after ``since`` that had any.

    One grouped read of the rows completed after ``since`` (the completion index's range).
    """
    rows = (
        TaskRecord.objects.filter(completed_at__gte=since, status__in=OUTCOMES)
        .annotate(second=TruncSecond("completed_at"))
        .order_by()
        .values("second", "status")
        .annotate(count=Count("id"))
    )
    buckets: dict[int, list[int]] = {}
    for row in rows:
        counts = buckets.setdefault(int(row["second"].timestamp()), [0, 0])
        counts[0 if row["status"] == TaskStatus.COMPLETED.value else 1] += row["count"]
    return [(second, done, failed) for second, (done, failed) in sorted(buckets.items())]


def unfinished_depths(now: datetime) -> dict[str, dict[str, int]]:
    """Count unfinished tasks per queue: ``{queue: {"ready", "delayed", "running"}}``.

    Two grouped reads, each through its partial index (pending, running); "delayed" are pending
    tasks whose ``run_after`` (a delay or a retry's backoff) is still ahead.
    """
    depths: dict[str, dict[str, int]] = {}
    pending = (
        TaskRecord.objects.filter(status=TaskStatus.PENDING.value)
        .order_by()
        .values("queue")
        .annotate(total=Count("id"), delayed=Count("id", filter=Q(run_after__gt=now)))
    )
    for row in pending:
        depths[row["queue"]] = {
            "ready": row["total"] - row["delayed"],
            "delayed": row["delayed"],
            "running": 0,
        }
    running = (
        TaskRecord.objects.filter(status=TaskStatus.RUNNING.value)
        .order_by()
        .values("queue")
        .annotate(count=Count("id"))
    )
    for queued in running:
        depths.setdefault(queued["queue"], {"ready": 0, "delayed": 0, "running": 0})["running"] = queued[
            "count"
        ]
    return dict(sorted(depths.items()))


def recent_outcomes(since: datetime, limit: int = RUNTIME_SAMPLE) -> list[dict[str, Any]]:
    """Per task type, over the newest ``limit`` tasks finished after ``since``: counts by outcome,
    the failure rate, and runtime p50/p95 in seconds of those that ran (not cancelled pending).

    One read through the completion index, newest first. The sample is what makes the read
    bounded; on a busy site it covers less than the window, which the caller shows.
    """
    rows = (
        TaskRecord.objects.filter(completed_at__gte=since, status__in=FINISHED)
        .order_by("-completed_at")
        .values_list("task_type", "status", "started_at", "completed_at")[:limit]
    )
    by_type: dict[str, dict[str, Any]] = {}
    for task_type, status, started_at, completed_at in rows:
        assert completed_at is not None  # filtered on completed_at
        entry = by_type.setdefault(task_type, {"completed": 0, "failed": 0, "cancelled": 0, "runtimes": []})
        entry[status] += 1
        if started_at is not None and status in OUTCOMES:
            entry["runtimes"].append(max(0.0, (completed_at - started_at).total_seconds()))
    summary = []
    for task_type, entry in sorted(by_type.items()):
        runtimes = sorted(entry.pop("runtimes"))
        ran = entry["completed"] + entry["failed"]
        summary.append(
            {
                "task_type": task_type,
                **entry,
                "failure_rate": entry["failed"] / ran if ran else 0.0,
                "p50": percentile(runtimes, 0.5),
                "p95": percentile(runtimes, 0.95),
            }
        )
    return summary


def recent_runtimes(since: datetime, limit: int = RUNTIME_SAMPLE) -> list[tuple[str, str, float]]:
    """Return ``(task_type, queue, seconds)`` of the newest ``limit`` tasks that ran and finished
    (completed or failed) after ``since``. One read through the completion index."""
    rows = (
        TaskRecord.objects.filter(completed_at__gte=since, status__in=OUTCOMES, started_at__isnull=False)
        .order_by("-completed_at")
        .values_list("task_type", "queue", "started_at", "completed_at")[:limit]
    )
    return [
        (task_type, queue, max(0.0, (done - start).total_seconds()))
        for task_type, queue, start, done in rows
        if start is not None and done is not None
    ]


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of sorted values (None when there are none)."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def worker_activity(alive_since: datetime) -> list[dict[str, Any]]:
    """Return the workers not stopped, newest first, each with ``alive`` (heartbeat after
    ``alive_since``) and ``in_flight`` (its running tasks, counted from the task rows).

    Two reads: worker rows are few (one per process); running rows through the running index.
    """
    rows = WorkerProcess.objects.filter(stopped_at__isnull=True).order_by("-started_at")
    fields = ("id", "hostname", "pid", "queues", "concurrency", "tasks_running", "last_heartbeat", "stopping")
    workers: list[dict[str, Any]] = [dict(row) for row in rows.values(*fields)]
    in_flight = dict(
        TaskRecord.objects.filter(status=TaskStatus.RUNNING.value, worker__isnull=False)
        .order_by()
        .values_list("worker_id")
        .annotate(count=Count("id"))
    )
    for worker in workers:
        worker["alive"] = worker["last_heartbeat"] >= alive_since
        worker["in_flight"] = in_flight.get(worker["id"], 0)
    return workers


def stuck_tasks(now: datetime, alive_since: datetime, limit: int = RUNNING_LIMIT) -> list[dict[str, Any]]:
    """Return running tasks past their timeout, or whose worker missed its lease (its heartbeat
    is older than ``alive_since``, it has stopped, or its row is gone), oldest first.

    Two reads: up to ``limit`` running rows (running index) and the worker rows they name. A
    timeout is a per-row number of seconds, so the deadline is compared here rather than in SQL.
    """
    rows = TaskRecord.objects.filter(status=TaskStatus.RUNNING.value).order_by("started_at")
    fields = ("id", "task_type", "queue", "worker_id", "started_at", "timeout", "attempts")
    running: list[dict[str, Any]] = [dict(row) for row in rows.values(*fields)[:limit]]
    worker_ids = {row["worker_id"] for row in running if row["worker_id"]}
    heartbeats = dict(
        WorkerProcess.objects.filter(id__in=worker_ids, stopped_at__isnull=True).values_list(
            "id", "last_heartbeat"
        )
    )
    stuck = []
    for row in running:
        started = row["started_at"]
        reasons = []
        timeout = row["timeout"]
        if timeout is not None and started is not None and started + timedelta(seconds=timeout) < now:
            reasons.append("past its timeout")
        heartbeat = heartbeats.get(row["worker_id"])
        if heartbeat is None or heartbeat < alive_since:
            reasons.append("worker missed its lease")
        if reasons:
            row["reason"] = " and ".join(reasons)
            row["running_for"] = (now - started).total_seconds() if started is not None else None
            stuck.append(row)
    return stuck


def outcome_totals() -> list[tuple[str, str, str, int]]:
    """Return ``(status, task_type, queue, count)`` over every stored task: one grouped scan of
    the whole table, for a metrics scrape (not for a page refreshing every few seconds)."""
    rows = (
        TaskRecord.objects.order_by().values_list("status", "task_type", "queue").annotate(count=Count("id"))
    )
    return [(status, task_type, queue, count) for status, task_type, queue, count in rows]
