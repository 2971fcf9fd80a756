"""Adding task rows: one INSERT for any number of tasks, stored pending, claimed or completed.

Synchronous, like the rest of the store; the docstring of ``add_tasks`` names its transaction.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ..exceptions import DuplicateTaskIdError
from ..models import TaskRecord, new_task_id
from ..status import TaskStatus
from ..values import NewTask
from ._vendor import TABLE, TASK_ADDED_CHANNEL, hot_cursor, is_postgres, notify, placeholders

_clock_lock = threading.Lock()
_last_created_at: datetime | None = None


def _creation_time() -> datetime:
    """Return now, strictly later than the last value this process returned.

    FIFO within a priority orders by ``created_at``; two tasks added in the same microsecond
    (a bulk add always is) must still keep their order, so ties are broken by one microsecond.
    """
    global _last_created_at
    now = timezone.now()
    with _clock_lock:
        if _last_created_at is not None and now <= _last_created_at:
            now = _last_created_at + timedelta(microseconds=1)
        _last_created_at = now
    return now


# Columns an INSERT sets from each new task; the rest take their model defaults (below).
_INSERT_COLUMNS = (
    "id",
    "task_type",
    "args",
    "kwargs",
    "metadata",
    "priority",
    "queue",
    "timeout",
    "use_cache",
    "cache_ttl",
    "created_by_id",
    "created_at",
    "status",
    "worker_id",
    "started_at",
    "attempts",
    "max_attempts",
    "run_after",
    "cache_key",
    "progress",
    "result",
    "completed_at",
    "from_cache",
)
# Their types in PostgreSQL's json_to_recordset; ``result`` arrives as JSON text, cast there.
_PG_TYPES = (
    "text", "text", "jsonb", "jsonb", "jsonb", "integer", "text", "double precision", "boolean",
    "integer", "integer", "timestamptz", "text", "text", "timestamptz", "integer", "integer",
    "timestamptz", "text", "double precision", "text", "timestamptz", "boolean",
)  # fmt: skip
_STATUS = _INSERT_COLUMNS.index("status")
_TIME_COLUMNS = tuple(
    _INSERT_COLUMNS.index(name) for name in ("created_at", "started_at", "run_after", "completed_at")
)
_INSERT_DEFAULTS = (
    ("error", "''"),
    ("error_type", "''"),
    ("traceback", "''"),
    ("cancel_requested", "FALSE"),
    ("attempt_log", "'[]'"),
)


_INSERTED = ", ".join((*_INSERT_COLUMNS, *(name for name, _ in _INSERT_DEFAULTS), "updated_at"))
_DEFAULTS = ", ".join(value for _, value in _INSERT_DEFAULTS)
# A claimed row (``NewTask.claimed_by``) stored pending instead when a claim on the adding
# worker's queues would take another pending task first (see ``add_tasks``): these columns then
# take their pending values.
_HELD = {"status": "'pending'", "worker_id": "NULL", "started_at": "NULL", "attempts": "0"}
# The pending tasks a claim takes before a new one: its conditions, and priority at most the new one's.
_AHEAD = (
    f"EXISTS (SELECT 1 FROM {TABLE} AS p WHERE p.status = 'pending' AND NOT p.cancel_requested "
    "AND p.queue {queues} AND p.priority <= {priority} AND (p.run_after IS NULL OR p.run_after <= %s))"
)


def _select(value: Callable[[int, str], str], held: str | None) -> str:
    """The SELECT list of an INSERT: each column's ``value``, or under ``held`` its pending value."""
    columns = []
    for index, name in enumerate(_INSERT_COLUMNS):
        if held is not None and name in _HELD:
            columns.append(f"CASE WHEN {held} THEN {_HELD[name]} ELSE {value(index, name)} END")
        else:
            columns.append(value(index, name))
    return ", ".join(columns) + f", {_DEFAULTS}, %s"


def _pg_value(index: int, name: str) -> str:
    return "x.result::jsonb" if name == "result" else f"x.{name}"


def _sqlite_value(index: int, name: str) -> str:
    return f"json_extract(r.value, '$[{index}]')"


# PostgreSQL: json_to_recordset reads each row's object by column name, a nested value as jsonb.
_PG_ROWS = (
    "json_to_recordset(%s::json) AS x("
    + ", ".join(f"{name} {kind}" for name, kind in zip(_INSERT_COLUMNS, _PG_TYPES, strict=True))
    + ")"
)
_PG_INSERT = f"INSERT INTO {TABLE} ({_INSERTED}) SELECT {_select(_pg_value, None)} FROM {_PG_ROWS}"


@functools.cache
def _pg_insert_claiming(queue_count: int) -> str:
    """The claiming INSERT for a worker serving ``queue_count`` queues (one parameter each).

    OFFSET 0 keeps the lateral subquery from being inlined: the check runs once per row, not
    once per column that depends on it. The queues are separate parameters, not one array:
    with an array of unknown length PostgreSQL never settled on the prepared statement's
    generic plan and planned every run anew (0.47 ms a one-row add, against 0.29 ms).
    """
    return (
        f"INSERT INTO {TABLE} ({_INSERTED}) SELECT {_select(_pg_value, 'h.held')} FROM {_PG_ROWS} "
        "CROSS JOIN LATERAL (SELECT x.status = 'running' AND "
        + _AHEAD.format(queues=f"IN ({placeholders(range(queue_count))})", priority="x.priority")
        + " AS held OFFSET 0) AS h RETURNING id, status"
    )


# SQLite: json_extract gives JSON text for the nested arguments and plain values for the rest.
_SQLITE_INSERT = (
    f"INSERT INTO {TABLE} ({_INSERTED}) SELECT {_select(_sqlite_value, None)} FROM json_each(%s) AS r"
)
_SQLITE_INSERT_CLAIMING = (
    f"INSERT INTO {TABLE} ({_INSERTED}) SELECT {_select(_sqlite_value, 'r.held')} FROM "
    f"(SELECT j.value AS value, json_extract(j.value, '$[{_STATUS}]') = 'running' AND "
    + _AHEAD.format(
        queues="IN (SELECT q.value FROM json_each(%s) AS q)",
        priority=f"json_extract(j.value, '$[{_INSERT_COLUMNS.index('priority')}]')",
    )
    + " AS held FROM json_each(%s) AS j) AS r RETURNING id, status"
)


def add_tasks(new_tasks: Sequence[NewTask], claim_queues: Sequence[str] = ()) -> list[str]:
    """Insert tasks with one INSERT statement, whatever their number, and return their ids in order.

    One statement, so one transaction: a taken custom id raises ``DuplicateTaskIdError`` and
    stores none. The rows travel as one JSON document (PostgreSQL ``json_to_recordset``, SQLite
    ``json_each``): the statement text never grows with the batch, no model instance is built per
    task (the ORM's bulk_create spent most of the time of a bulk add there), and the driver
    adapts one parameter, not one array per column (most of a one-task INSERT's time).
    A task with ``claimed_by`` set is stored running under that worker, its first attempt
    begun: the worker that added it starts it without a claim round trip. Unless a claim on
    ``claim_queues`` (that worker's) would take a pending task first, one of the same or a more
    urgent priority: then it is stored pending, to wait its turn, and its ``claimed_by`` is
    cleared. The same statement decides, so the check costs no round trip. No NOTIFY: the add
    path announces the queues after the commit (``announce_added``), once per burst of adds,
    since a NOTIFY in every adding transaction serializes their commits on PostgreSQL's
    notification queue lock. A task with ``cached_result_json`` set is stored completed from
    the cache (``from_cache``, progress 1.0, started and completed now): nothing claims it.
    """
    ids = [new.id or new_task_id() for new in new_tasks]
    if len(set(ids)) != len(ids):
        dup = next(task_id for index, task_id in enumerate(ids) if task_id in ids[:index])
        raise DuplicateTaskIdError(f"task_id {dup!r} appears twice in one add_tasks call.", task_id=dup)
    if not ids:
        return ids
    now = timezone.now()
    rows: list[list[Any]] = [
        _insert_row(task_id, new, now) for task_id, new in zip(ids, new_tasks, strict=True)
    ]
    claiming = bool(claim_queues) and any(row[_STATUS] == TaskStatus.RUNNING.value for row in rows)
    sql_params: list[Any]
    if is_postgres():
        for row in rows:
            for index in _TIME_COLUMNS:
                if row[index] is not None:
                    row[index] = row[index].isoformat()
        document = json.dumps([dict(zip(_INSERT_COLUMNS, row, strict=True)) for row in rows], allow_nan=False)
        if claiming:
            sql, sql_params = _pg_insert_claiming(len(claim_queues)), [now, document, *claim_queues, now]
        else:
            sql, sql_params = _PG_INSERT, [now, document]
    else:
        adapt = connection.ops.adapt_datetimefield_value
        stored_now = adapt(now)
        for row in rows:
            for index in _TIME_COLUMNS:
                value = row[index]
                if value is not None:
                    row[index] = stored_now if value is now else adapt(value)
        if claiming:
            sql = _SQLITE_INSERT_CLAIMING
            sql_params = [stored_now, json.dumps(list(claim_queues)), stored_now, json.dumps(rows)]
        else:
            sql, sql_params = _SQLITE_INSERT, [stored_now, json.dumps(rows)]
    # Inside the caller's transaction a failed INSERT would abort it on PostgreSQL, and the
    # lookup below could not run: a savepoint keeps the transaction usable. Outside one, the
    # statement is its own transaction and needs no BEGIN/COMMIT round trips.
    guard = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    try:
        with guard, hot_cursor() as cursor:
            cursor.execute(sql, sql_params)
            held = (
                {task_id for task_id, status in cursor.fetchall() if status == "pending"} if claiming else ()
            )
    except IntegrityError as exc:
        taken = list(TaskRecord.objects.filter(id__in=ids).values_list("id", flat=True)[:5])
        if not taken:
            raise
        raise DuplicateTaskIdError(
            f"task_id {taken[0]!r} is already used by another task; pass a new id or none.", task_id=taken[0]
        ) from exc
    for task_id, new in zip(ids, new_tasks, strict=True):
        if task_id in held:
            new.claimed_by = None
    return ids


def announce_added(queues: Iterable[str]) -> None:
    """NOTIFY workers in other processes that ``queues`` got claimable tasks (PostgreSQL only).

    Its own statement, committed at once outside a transaction: ``wakeup``'s notifier calls it on
    its own connection after the tasks were committed, for every queue added to meanwhile.
    """
    notify(TASK_ADDED_CHANNEL, queues)


def _insert_row(task_id: str, new: NewTask, now: datetime) -> list[Any]:
    """One task's values, in ``_INSERT_COLUMNS`` order: pending, claimed, or completed from the cache."""
    cached = new.cached_result_json is not None
    if cached:
        status = TaskStatus.COMPLETED.value
    elif new.claimed_by:
        status = TaskStatus.RUNNING.value
    else:
        status = TaskStatus.PENDING.value
    return [
        task_id,
        new.task_type,
        new.args,
        new.kwargs,
        new.metadata,
        new.priority,
        new.queue,
        new.timeout,
        new.use_cache,
        new.cache_ttl,
        new.created_by_id,
        new.created_at or _creation_time(),
        status,
        None if cached else new.claimed_by,
        now if cached or new.claimed_by else None,
        1 if new.claimed_by and not cached else 0,
        new.max_attempts,
        new.run_after,
        new.cache_key,
        1.0 if cached else 0.0,
        new.cached_result_json,  # JSON text, stored as is (NULL when not cached)
        now if cached else None,
        cached,
    ]
