"""Reads of task rows: single tasks and lists for the Python API, pages and health for the HTTP
API, and the rows live events are built from. Nothing here writes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ..models import TaskRecord, WorkerProcess
from ..status import TaskInfo, TaskStatus
from ..values import FailedAttempt, Health, PageFilters, TaskHistory
from ._vendor import FINISHED, TABLE, decode_json, hot_cursor, id_in, is_postgres, placeholders

# --- reading --------------------------------------------------------------------------------

_INFO_FIELDS = (
    "id",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "result",
    "error",
    "progress",
    "metadata",
    "from_cache",
    "task_type",
    "queue",
    "priority",
    "args",
    "kwargs",
    "error_type",
    "attempts",
    "timeout",
    "worker_id",
    "cancel_requested",
    "max_attempts",
    "run_after",
)


def _info(row: dict[str, Any]) -> TaskInfo:
    row["status"] = TaskStatus(row["status"])
    row["error"] = row["error"] or None
    return TaskInfo(**row)


def get_task(task_id: str) -> TaskInfo | None:
    """Return one task's stored state, or None."""
    row = TaskRecord.objects.filter(id=task_id).values(*_INFO_FIELDS).first()
    return _info(row) if row is not None else None


def get_task_history(task_id: str) -> TaskHistory | None:
    """Return one task's stored state, its latest traceback and its failed attempts, or None."""
    row = TaskRecord.objects.filter(id=task_id).values(*_INFO_FIELDS, "traceback", "attempt_log").first()
    if row is None:
        return None
    traceback, log = row.pop("traceback"), row.pop("attempt_log")
    attempts = [
        FailedAttempt(
            attempt=int(entry.get("attempt") or 0),
            worker_id=entry.get("worker_id") or "",
            started_at=_logged_time(entry.get("started_at")),
            finished_at=_logged_time(entry.get("finished_at")),
            error_type=entry.get("error_type") or "",
            error=entry.get("error") or "",
            traceback=entry.get("traceback") or "",
        )
        for entry in log or []
    ]
    return TaskHistory(_info(row), traceback, attempts)


def _logged_time(value: Any) -> datetime | None:
    """A time the attempt log holds as text (PostgreSQL's ISO form or SQLite's stored text)."""
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


def get_tasks(task_ids: Iterable[str]) -> dict[str, TaskInfo]:
    """Return the stored state of the named tasks that exist, by id."""
    rows = TaskRecord.objects.filter(id_in(list(task_ids))).values(*_INFO_FIELDS)
    return {row["id"]: _info(row) for row in rows}


def list_tasks(
    status: TaskStatus | str | None = None,
    limit: int | None = None,
    older_than: timedelta | None = None,
) -> list[TaskInfo]:
    """Return tasks newest first, optionally of one status, created before ``now - older_than``."""
    qs = TaskRecord.objects.order_by("-created_at")
    if status is not None:
        qs = qs.filter(status=TaskStatus(status).value)
    if older_than is not None:
        qs = qs.filter(created_at__lt=timezone.now() - older_than)
    if limit is not None:
        qs = qs[:limit]
    return [_info(row) for row in qs.values(*_INFO_FIELDS)]


def watch_states(task_ids: Iterable[str]) -> tuple[list[str], dict[str, TaskInfo]]:
    """Return the named tasks that do not exist, and the stored state of those that have finished.

    For futures: one aggregate over the list (how many exist, and the ids of the finished ones),
    then the whole state of the few finished ones. Reading every id back (to learn which exist)
    cost a 20,000-task ``wait_for_tasks`` 42 ms on the worker's claim connection, stalling its
    claims; the count costs 15. Which ids are missing is read only when some are.
    """
    ids = list(dict.fromkeys(task_ids))
    match = id_in(ids)
    statuses = placeholders(FINISHED)
    if is_postgres():
        done = f"array_agg(id) FILTER (WHERE status IN ({statuses}))"
    else:
        done = f"json_group_array(id) FILTER (WHERE status IN ({statuses}))"
    with hot_cursor() as cursor:
        cursor.execute(f"SELECT count(*), {done} FROM {TABLE} WHERE {match.sql}", [*FINISHED, *match.params])
        (count, finished_ids) = cursor.fetchone()
    finished_ids = decode_json(finished_ids) if isinstance(finished_ids, str) else (finished_ids or [])
    missing: list[str] = []
    if count < len(ids):
        known = set(TaskRecord.objects.filter(id_in(ids)).values_list("id", flat=True))
        missing = [task_id for task_id in ids if task_id not in known]
    return missing, finished_among(finished_ids) if finished_ids else {}


def finished_ids_among(task_ids: Iterable[str]) -> list[str]:
    """Return the ids of the named tasks that have finished: the cheap half of ``finished_among``.

    A worker checks the tasks awaited in it this way first: most that finished, it ran and
    resolved itself at their commit, and reading their whole state (results and arguments
    parsed from JSON) was most of what awaiting a long list cost its drain.
    """
    ids = list(task_ids)
    if not ids:
        return []
    match = id_in(ids)
    with hot_cursor() as cursor:
        # Prepared, the ids one array parameter: the ORM's statement, its ids inlined into the
        # text, cost 1.8 ms per 100 ids on PostgreSQL against 0.4 ms (a 10 ms poll runs it 100
        # times a second while a long list is awaited).
        cursor.execute(
            f"SELECT id FROM {TABLE} WHERE {match.sql} AND status IN ({placeholders(FINISHED)})",
            [*match.params, *FINISHED],
        )
        return [task_id for (task_id,) in cursor.fetchall()]


def finished_among(task_ids: Iterable[str]) -> dict[str, TaskInfo]:
    """Return the named tasks that have finished (completed, failed or cancelled), by id."""
    rows = TaskRecord.objects.filter(id_in(list(task_ids)), status__in=FINISHED).values(*_INFO_FIELDS)
    return {row["id"]: _info(row) for row in rows}


# --- HTTP API: visibility, cursor pages, health -----------------------------------------------
# Kept apart from the engine's queries above: these serve django_atw.api only.


def get_visible_task(task_id: str, owner_id: int | None) -> TaskInfo | None:
    """Return one task's state if it exists and, when ``owner_id`` is given, belongs to that user.

    One query: a task of someone else answers None, exactly like an unknown id, so a caller
    without the view permission cannot even learn that the id exists.
    """
    qs = TaskRecord.objects.filter(id=task_id)
    if owner_id is not None:
        qs = qs.filter(created_by_id=owner_id)
    row = qs.values(*_INFO_FIELDS).first()
    return _info(row) if row is not None else None


def list_tasks_page(
    filters: PageFilters, limit: int, after: tuple[datetime, str] | None = None
) -> tuple[list[TaskInfo], tuple[datetime, str] | None]:
    """Return up to ``limit`` tasks newest first, starting after the ``(created_at, id)`` key ``after``.

    Keyset pagination over (created_at DESC, id DESC): the key of the last row returned is the
    next page's start, so tasks added meanwhile (always newer) never shift a later page, and two
    tasks created in the same microsecond are still told apart by id. Returns the page and the
    key to continue from, or None when nothing follows. One query (it reads ``limit + 1`` rows).
    """
    qs = TaskRecord.objects.order_by("-created_at", "-id")
    if filters.status is not None:
        qs = qs.filter(status=filters.status.value)
    if filters.task_type is not None:
        qs = qs.filter(task_type=filters.task_type)
    if filters.queue is not None:
        qs = qs.filter(queue=filters.queue)
    if filters.created_before is not None:
        qs = qs.filter(created_at__lt=filters.created_before)
    if filters.owner_id is not None:
        qs = qs.filter(created_by_id=filters.owner_id)
    if after is not None:
        created_at, task_id = after
        qs = qs.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=task_id))
    rows = [_info(row) for row in qs.values(*_INFO_FIELDS)[: limit + 1]]
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], (last.created_at, last.id)


def read_health(alive_since: datetime, *, excluding: str | None = None) -> Health:
    """Count live workers, their task slots, and pending and running tasks.

    A worker is live when it is not stopping and its heartbeat came after ``alive_since``;
    ``excluding`` names one the caller counts itself (its own in-process worker). Three queries.
    Finished tasks are not counted: each task count is served by a partial index (claim and
    running indexes), so a health probe stays cheap however many finished rows are kept. Live
    workers are few (one row per process), so their slots are summed here.
    """
    live = WorkerProcess.objects.filter(stopping=False, last_heartbeat__gte=alive_since)
    if excluding is not None:
        live = live.exclude(id=excluding)
    slots = list(live.values_list("concurrency", flat=True))
    pending = TaskRecord.objects.filter(status=TaskStatus.PENDING.value).count()
    running = TaskRecord.objects.filter(status=TaskStatus.RUNNING.value).count()
    return Health(workers_alive=len(slots), worker_slots=sum(slots), pending=pending, running=running)


# --- live events ----------------------------------------------------------------------------

# What a live event or a WebSocket snapshot says about a task, plus who owns it (for permission
# checks), which worker runs it and when it last changed (to order events).
EVENT_FIELDS = (
    "id",
    "task_type",
    "queue",
    "status",
    "progress",
    "created_at",
    "started_at",
    "completed_at",
    "error",
    "result",
    "from_cache",
    "attempts",
    "max_attempts",
    "run_after",
    "created_by_id",
    "worker_id",
    "updated_at",
)


def event_rows(task_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Return the live-event fields of the named tasks that exist."""
    ids = list(task_ids)
    if not ids:
        return []
    return list(TaskRecord.objects.filter(id__in=ids).values(*EVENT_FIELDS))


def changed_since(
    cutoff: datetime, after: tuple[datetime, str] | None = None, limit: int = 500
) -> list[tuple[str, datetime]]:
    """Return ``(id, updated_at)`` of up to ``limit`` tasks changed after ``cutoff`` (for the relay).

    Ordered by ``(updated_at, id)``; ``after`` is the last pair of the previous page, so a
    caller pages through a large batch of changes a bounded read at a time. Only two columns:
    the relay re-reads recent changes on every poll and fetches ``event_rows`` only for those
    it has not published. Only unfinished tasks and tasks completed after ``cutoff`` can have
    changed, and each part reads through an index (the partial pending and running indexes,
    the completion index), so a poll costs little however many finished tasks are kept.
    """
    active = Q(status__in=[TaskStatus.PENDING.value, TaskStatus.RUNNING.value])
    rows = TaskRecord.objects.filter(active | Q(completed_at__gt=cutoff), updated_at__gt=cutoff)
    if after is not None:
        stamp, task_id = after
        rows = rows.filter(Q(updated_at__gt=stamp) | Q(updated_at=stamp, id__gt=task_id))
    return list(rows.order_by("updated_at", "id").values_list("id", "updated_at")[:limit])


def newest_event_rows(
    *,
    status: str | None = None,
    task_type: str | None = None,
    queue: str | None = None,
    owner_id: Any = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Return the live-event fields of the ``limit`` newest tasks matching the filters."""
    qs = TaskRecord.objects.order_by("-created_at")
    if status is not None:
        qs = qs.filter(status=status)
    if task_type is not None:
        qs = qs.filter(task_type=task_type)
    if queue is not None:
        qs = qs.filter(queue=queue)
    if owner_id is not None:
        qs = qs.filter(created_by_id=owner_id)
    return list(qs.values(*EVENT_FIELDS)[:limit])
