"""Every query, transaction and lock on task and worker rows.

The engine, the admin and the module functions call these; nothing else writes tasks.
All functions are synchronous (Django's ORM and transactions are); async callers run them in
a thread. Vendor differences live here: PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``,
SQLite relies on its single writer (see ``claim_batch``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from .exceptions import DuplicateTaskIdError
from .models import TaskRecord, WorkerProcess, new_task_id
from .status import TaskInfo, TaskStatus
from .submit import NewTask

TABLE = TaskRecord._meta.db_table
WORKER_TABLE = WorkerProcess._meta.db_table
# Rows deleted per statement by retention cleanup: small enough that no statement holds
# SQLite's write lock for long, large enough that cleanup of a busy day takes few round trips.
DELETE_BATCH = 1000
FINISHED = [TaskStatus.COMPLETED.value, TaskStatus.FAILED.value, TaskStatus.CANCELLED.value]
# PostgreSQL NOTIFY channels: tasks became claimable in a queue (payload: the queue name); a
# running task was asked to cancel (payload: its id). See engine/wakeup.py for the listener.
TASK_ADDED_CHANNEL = "atw_task_added"
CANCEL_CHANNEL = "atw_cancel"
# The error type stored on a task failed because its worker died on its last attempt.
WORKER_DIED_ERROR_TYPE = "WorkerDiedError"

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


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _json(value: Any) -> Any:
    """Decode a JSON column read by raw SQL (SQLite and Django's psycopg set-up give text)."""
    if value == "[]":  # no arguments: the common case, decoded once per claimed task
        return []
    if value == "{}":
        return {}
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _params(values: Sequence[Any]) -> str:
    return ", ".join(["%s"] * len(values))


# --- adding ---------------------------------------------------------------------------------


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
_PG_ARRAY_TYPES = (
    "text", "text", "jsonb", "jsonb", "jsonb", "integer", "text", "double precision", "boolean",
    "integer", "integer", "timestamptz", "text", "text", "timestamptz", "integer", "integer",
    "timestamptz", "text", "double precision", "jsonb", "timestamptz", "boolean",
)  # fmt: skip
_INSERT_DEFAULTS = (
    ("error", "''"),
    ("error_type", "''"),
    ("traceback", "''"),
    ("cancel_requested", "FALSE"),
)


def add_tasks(new_tasks: Sequence[NewTask]) -> list[str]:
    """Insert tasks with one INSERT statement, whatever their number, and return their ids in order.

    One statement, so one transaction: a taken custom id raises ``DuplicateTaskIdError`` and
    stores none. The rows travel as one array per column (PostgreSQL ``unnest``) or as one JSON
    document (SQLite ``json_each``): the statement text never grows with the batch, and no model
    instance is built per task (the ORM's bulk_create spent most of the time of a bulk add there).
    A task with ``claimed_by`` set is stored running under that worker, its first attempt
    begun: the worker that added it starts it without a claim round trip. On PostgreSQL the
    same statement NOTIFYs the queues that got claimable tasks, so idle workers in other
    processes wake on commit. A task with ``cached_result_json`` set is stored completed from
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
    columns = ", ".join((*_INSERT_COLUMNS, *(name for name, _ in _INSERT_DEFAULTS), "updated_at"))
    defaults = ", ".join(value for _, value in _INSERT_DEFAULTS)
    sql_params: list[Any]
    if _is_postgres():
        for row in rows:
            row[2:5] = [json.dumps(value) for value in row[2:5]]
        arrays = ", ".join(f"%s::{kind}[]" for kind in _PG_ARRAY_TYPES)
        sql = (
            f"WITH added AS (INSERT INTO {TABLE} ({columns}) SELECT x.*, {defaults}, %s "
            f"FROM unnest({arrays}) AS x({', '.join(_INSERT_COLUMNS)}) RETURNING queue, status) "
            f"SELECT pg_notify('{TASK_ADDED_CHANNEL}', queue) "
            "FROM (SELECT DISTINCT queue FROM added WHERE status = 'pending') AS q"
        )
        sql_params = [now, *(list(column) for column in zip(*rows, strict=True))]
    else:
        # json_extract gives JSON text for the nested arguments and plain values for the rest.
        adapt = connection.ops.adapt_datetimefield_value
        for row in rows:
            row[11] = adapt(row[11])  # created_at
            row[14] = adapt(row[14])  # started_at
            row[17] = adapt(row[17])  # run_after
            row[21] = adapt(row[21])  # completed_at
        picks = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(_INSERT_COLUMNS)))
        sql = f"INSERT INTO {TABLE} ({columns}) SELECT {picks}, {defaults}, %s FROM json_each(%s)"
        sql_params = [adapt(now), json.dumps(rows)]
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, sql_params)
    except IntegrityError as exc:
        taken = list(TaskRecord.objects.filter(id__in=ids).values_list("id", flat=True)[:5])
        if not taken:
            raise
        raise DuplicateTaskIdError(
            f"task_id {taken[0]!r} is already used by another task; pass a new id or none.", task_id=taken[0]
        ) from exc
    return ids


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


# --- claiming and finishing -----------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class ClaimedTask:
    """What a worker needs to run one claimed task."""

    id: str
    task_type: str
    args: list[Any]
    kwargs: dict[str, Any]
    timeout: float | None
    priority: int
    created_at: Any
    attempts: int
    max_attempts: int = 3
    # The result cache's key stored when the task was added ("": no caching) and its TTL.
    cache_key: str = ""
    cache_ttl: int | None = None


def claim_batch(worker_id: str, queues: Sequence[str], limit: int) -> list[ClaimedTask]:
    """Mark up to ``limit`` pending tasks as running for ``worker_id`` and return them.

    One statement, so one transaction. On PostgreSQL, SKIP LOCKED lets workers claim side by
    side instead of queueing on each other's row locks. SQLite has a single writer: the
    statement holds the write lock from its read to its write (with WAL a concurrent commit
    makes it fail with SQLITE_BUSY, never claim twice). Returned in (priority, created_at) order.
    Tasks deferred (``run_after``) to later are skipped. A worker whose row is marked stopped (its
    lease expired) claims nothing: its claims would be orphans that others reap at once.
    """
    now = timezone.now()
    queue_match = "queue = %s" if len(queues) == 1 else f"queue IN ({_params(queues)})"
    pick = (
        f"SELECT id FROM {TABLE} WHERE status = 'pending' AND {queue_match} "
        "AND (run_after IS NULL OR run_after <= %s) "
        f"AND EXISTS (SELECT 1 FROM {WORKER_TABLE} WHERE id = %s AND stopped_at IS NULL) "
        "ORDER BY priority, created_at LIMIT %s"
    )
    assign = (
        "SET status = 'running', worker_id = %s, started_at = %s, updated_at = %s, "
        "attempts = attempts + 1, progress = 0"
    )
    columns = (
        "id", "task_type", "args", "kwargs", "timeout", "priority", "created_at", "attempts", "max_attempts",
        "cache_key", "cache_ttl",
    )  # fmt: skip
    params: list[str | int | datetime]
    postgres = _is_postgres()
    if postgres:
        # A CTE, not "id IN (subquery)": PostgreSQL may re-run a LIMIT ... SKIP LOCKED subquery
        # inside a semi-join and return more rows than the limit. A locking CTE runs once.
        # RETURNING has no order: the outer SELECT sorts, and leaves created_at out (parsing a
        # timestamp per row only to sort by it cost more than the sort).
        selected = ", ".join(c if c != "created_at" else "NULL" for c in columns)
        sql = (
            f"WITH picked AS ({pick} FOR UPDATE SKIP LOCKED), "
            f"claimed AS (UPDATE {TABLE} AS t {assign} FROM picked WHERE t.id = picked.id "
            f"RETURNING {', '.join('t.' + c for c in columns)}) "
            f"SELECT {selected} FROM claimed ORDER BY priority, created_at"
        )
        params = [*queues, now, worker_id, limit, worker_id, now, now]
    else:
        sql = (
            f"UPDATE {TABLE} {assign} WHERE status = 'pending' AND id IN ({pick}) "
            f"RETURNING {', '.join(columns)}"
        )
        params = [worker_id, now, now, *queues, now, worker_id, limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    claimed = [
        ClaimedTask(
            row[0],
            row[1],
            _json(row[2]),
            _json(row[3]),
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            row[9],
            row[10],
        )
        for row in rows
    ]
    if not postgres:
        # RETURNING gives no order guarantee; run in queue order.
        claimed.sort(key=lambda c: (c.priority, c.created_at))
    return claimed


@dataclasses.dataclass(slots=True)
class Outcome:
    """How one run of a task ended, ready to be written.

    ``status`` PENDING means a retry: the task goes back to the queue, not before ``run_after``.
    ``attempt`` is the claim's attempt number; the write applies only while the row is still in
    that attempt (0: unchecked), so a run whose lease expired never overwrites a later one.
    """

    task_id: str
    status: TaskStatus
    progress: float
    result_json: str | None = None
    error: str = ""
    error_type: str = ""
    traceback: str = ""
    completed_at: datetime | None = None
    attempt: int = 0
    run_after: datetime | None = None
    from_cache: bool = False
    # The exception raised in this process, chained onto the future's error (never stored).
    exception: BaseException | None = dataclasses.field(default=None, repr=False)


_OUTCOME_COLUMNS = (
    "id", "attempts", "status", "progress", "result", "error", "error_type", "traceback", "completed_at",
    "from_cache",
)  # fmt: skip
_OUTCOME_TYPES = (
    "text", "integer", "text", "double precision", "jsonb", "text", "text", "text", "timestamptz",
    "boolean",
)  # fmt: skip


# The columns every plain completion sets to the same values (see _is_plain_completion).
_PLAIN_COMPLETION = (
    f"status = '{TaskStatus.COMPLETED.value}', progress = 1, error = '', error_type = '', "
    "traceback = '', from_cache = FALSE, "
)


def _is_plain_completion(outcome: Outcome) -> bool:
    """Whether ``outcome`` is a completion whose other columns are ``_PLAIN_COMPLETION``'s."""
    return (
        outcome.status is TaskStatus.COMPLETED
        and outcome.progress == 1.0
        and not outcome.from_cache
        and not outcome.error
        and not outcome.error_type
        and not outcome.traceback
    )


def write_batch(worker_id: str, progress: Sequence[tuple[str, float]], outcomes: Sequence[Outcome]) -> None:
    """Store progress values and final outcomes of this worker's running tasks in one transaction.

    Each row is updated only while it is still running under ``worker_id`` (and, for outcomes,
    in the same attempt), so a worker that lost a task (cancelled elsewhere, or reclaimed after
    its lease, even by itself) never overwrites it. Retries go back to pending in the same
    transaction (on PostgreSQL with a NOTIFY when they are due at once).
    On PostgreSQL each kind is one ``UPDATE ... FROM (VALUES ...)`` statement: a round trip per
    row would cost more than the tasks themselves. SQLite has no network: ``executemany``.
    """
    now = timezone.now()
    progress_rows = [(task_id, value) for task_id, value in progress]
    # Most outcomes are plain completions: they travel as four columns, the rest as constants,
    # which halves what the driver quotes and the server unpacks per row.
    plain = [o for o in outcomes if _is_plain_completion(o)]
    plain_rows = [(o.task_id, o.attempt, o.result_json, o.completed_at or now) for o in plain]
    if plain:
        outcomes = [o for o in outcomes if not _is_plain_completion(o)]
    outcome_rows = [
        (
            o.task_id,
            o.attempt,
            o.status.value,
            o.progress,
            o.result_json,
            o.error,
            o.error_type,
            o.traceback,
            o.completed_at or now,
            o.from_cache,
        )
        for o in outcomes
        if o.status is not TaskStatus.PENDING
    ]
    retry_rows = [
        (o.task_id, o.attempt, o.error, o.error_type, o.traceback, o.run_after or now)
        for o in outcomes
        if o.status is TaskStatus.PENDING
    ]
    statements = sum(1 for rows in (progress_rows, plain_rows, outcome_rows, retry_rows) if rows)
    # One statement is atomic on its own: no BEGIN and COMMIT round trips around it.
    atomic = transaction.atomic() if statements > 1 else contextlib.nullcontext()
    with atomic, connection.cursor() as cursor:
        if progress_rows:
            _update_running(
                cursor, worker_id, now, ("id", "progress"), ("text", "double precision"), progress_rows
            )
        if plain_rows:
            _update_running(
                cursor,
                worker_id,
                now,
                ("id", "attempts", "result", "completed_at"),
                ("text", "integer", "jsonb", "timestamptz"),
                plain_rows,
                fixed=_PLAIN_COMPLETION,
            )
        if outcome_rows:
            _update_running(
                cursor,
                worker_id,
                now,
                _OUTCOME_COLUMNS,
                _OUTCOME_TYPES,
                outcome_rows,
            )
        if retry_rows:
            _update_running(
                cursor,
                worker_id,
                now,
                ("id", "attempts", "error", "error_type", "traceback", "run_after"),
                ("text", "integer", "text", "text", "text", "timestamptz"),
                retry_rows,
                fixed="status = 'pending', worker_id = NULL, started_at = NULL, progress = 0, ",
            )


def _update_running(
    cursor: Any,
    worker_id: str,
    now: datetime,
    columns: Sequence[str],
    pg_types: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    fixed: str = "",
) -> None:
    """Set ``columns[1:]`` of this worker's running rows, by id, from ``rows`` (id first).

    An ``attempts`` column is a fence, not a value: the row must still be in that attempt
    (0 skips the check). ``fixed`` is extra ``column = value, `` assignments for every row.
    On PostgreSQL one statement with one array per column (``pg_types`` name their element
    types): its text is the same for any number of rows, so the driver never re-parses it.
    """
    guard = "t.status = 'running' AND t.worker_id = %s"
    fenced = "attempts" in columns
    assigned = [column for column in columns[1:] if column != "attempts"]
    if _is_postgres():
        if fenced:
            guard += " AND (v.attempts = 0 OR t.attempts = v.attempts)"
        assignments = ", ".join(f"{column} = v.{column}" for column in assigned)
        arrays = ", ".join(f"%s::{kind}[]" for kind in pg_types)
        cursor.execute(
            f"UPDATE {TABLE} AS t SET {fixed}{assignments}, updated_at = %s "
            f"FROM unnest({arrays}) AS v({', '.join(columns)}) WHERE t.id = v.id AND {guard}",
            [now, *(list(column) for column in zip(*rows, strict=True)), worker_id],
        )
    else:
        position = {column: index for index, column in enumerate(columns)}
        if fenced:
            guard += " AND (%s = 0 OR t.attempts = %s)"
        assignments = ", ".join(f"{column} = %s" for column in assigned)
        params = []
        for row in rows:
            values = [row[position[column]] for column in assigned]
            fence = [row[position["attempts"]]] * 2 if fenced else []
            params.append((*values, now, row[0], worker_id, *fence))
        cursor.executemany(
            f"UPDATE {TABLE} AS t SET {fixed}{assignments}, updated_at = %s WHERE t.id = %s AND {guard}",
            params,
        )


def release(worker_id: str, task_ids: Iterable[str]) -> int:
    """Return this worker's unfinished running tasks to pending, as if never claimed.

    Used by a graceful stop; the attempt is not counted, since the task did not fail.
    One transaction; on PostgreSQL it NOTIFYs the queues, so another worker takes them at once.
    """
    ids = list(task_ids)
    if not ids:
        return 0
    with transaction.atomic():
        rows = TaskRecord.objects.filter(id__in=ids, status=TaskStatus.RUNNING.value, worker_id=worker_id)
        queues = set(rows.values_list("queue", flat=True))
        released = rows.update(
            status=TaskStatus.PENDING.value,
            worker=None,
            started_at=None,
            progress=0.0,
            attempts=F("attempts") - 1,
            updated_at=timezone.now(),
        )
        _notify(TASK_ADDED_CHANNEL, queues)
    return released


def _notify(channel: str, payloads: Iterable[str]) -> None:
    """NOTIFY ``channel`` once per payload on PostgreSQL (delivered at commit); else nothing."""
    values = sorted(set(payloads))
    if not values or not _is_postgres():
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", [channel, values])


# --- cancelling -----------------------------------------------------------------------------

CANCELLED_PENDING = "cancelled"
CANCEL_REQUESTED = "requested"
NOT_CANCELLABLE = "not-cancellable"


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
        error_type="TaskCancellationError",
        completed_at=now,
        updated_at=now,
    )
    if done:
        return CANCELLED_PENDING, None
    flagged = TaskRecord.objects.filter(id=task_id, status=TaskStatus.RUNNING.value).update(
        cancel_requested=True, updated_at=now
    )
    if flagged:
        _notify(CANCEL_CHANNEL, [task_id])
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
            id__in=ids, worker_id=worker_id, status=TaskStatus.RUNNING.value, cancel_requested=True
        ).values_list("id", flat=True)
    )


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


def get_tasks(task_ids: Iterable[str]) -> dict[str, TaskInfo]:
    """Return the stored state of the named tasks that exist, by id."""
    rows = TaskRecord.objects.filter(id__in=list(task_ids)).values(*_INFO_FIELDS)
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


def finished_among(task_ids: Iterable[str]) -> dict[str, TaskInfo]:
    """Return the named tasks that have finished (completed, failed or cancelled), by id."""
    rows = TaskRecord.objects.filter(id__in=list(task_ids), status__in=FINISHED).values(*_INFO_FIELDS)
    return {row["id"]: _info(row) for row in rows}


# --- retention ------------------------------------------------------------------------------


def delete_finished_before(
    cutoff: datetime, batch_size: int = DELETE_BATCH, statuses: Sequence[str] = tuple(FINISHED)
) -> int:
    """Delete finished tasks (of ``statuses``) completed before ``cutoff`` in batches; return how many.

    One short transaction per batch, so a large cleanup never holds a lock for long.
    """
    wanted = [TaskStatus(status).value for status in statuses if TaskStatus(status).value in FINISHED]
    total = 0
    while wanted:
        done = TaskRecord.objects.filter(status__in=wanted, completed_at__lt=cutoff)
        ids = list(done.values_list("id", flat=True)[:batch_size])
        if not ids:
            return total
        deleted, _ = TaskRecord.objects.filter(id__in=ids, status__in=wanted).delete()
        total += deleted
        if len(ids) < batch_size:
            return total
    return total


def queue_depths() -> dict[str, dict[str, int]]:
    """Count tasks per queue and status: ``{queue: {status: count}}`` (one grouped scan)."""
    depths: dict[str, dict[str, int]] = {}
    for row in TaskRecord.objects.order_by().values("queue", "status").annotate(count=Count("id")):
        depths.setdefault(row["queue"], {})[row["status"]] = row["count"]
    return depths


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


@dataclasses.dataclass(frozen=True, slots=True)
class Reaped:
    """What lease recovery did: workers found dead, tasks returned to pending, tasks failed."""

    workers: list[str]
    requeued: list[str]
    failed: list[str]


def reap_stale_workers(lease: timedelta) -> Reaped:
    """Mark workers silent for longer than ``lease`` stopped and recover their running tasks.

    A recovered task goes back to pending (its dead attempt stays counted, so the next claim
    makes it attempt 2) or, when it has no attempts left, fails with an error that says its
    worker died. Running tasks of stopped or unknown workers are recovered too. One transaction.
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
            .values_list("id", "attempts", "max_attempts", "queue", "worker_id")
        )
        if not orphans:
            return Reaped(dead, [], [])
        running = TaskRecord.objects.filter(status=TaskStatus.RUNNING.value)
        exhausted = [row for row in orphans if row[1] >= row[2]]
        requeued = [row for row in orphans if row[1] < row[2]]
        by_worker: dict[str | None, list[str]] = {}
        for task_id, _attempts, _max, _queue, worker_id in exhausted:
            by_worker.setdefault(worker_id, []).append(task_id)
        for owner, ids in by_worker.items():
            running.filter(id__in=ids, worker_id=owner).update(
                status=TaskStatus.FAILED.value,
                error=(
                    f"The worker running this task ({owner or 'unknown'}) died: it stopped "
                    f"heart-beating for longer than the {lease.total_seconds():g} s lease, and the "
                    "task has no attempts left."
                ),
                error_type=WORKER_DIED_ERROR_TYPE,
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
                updated_at=now,
            )
        _notify(TASK_ADDED_CHANNEL, {row[3] for row in requeued})
    return Reaped(dead, [row[0] for row in requeued], [row[0] for row in exhausted])


def prune_workers(stopped_before: datetime) -> int:
    """Delete the rows of workers that stopped before ``stopped_before``; return how many."""
    deleted, _ = WorkerProcess.objects.filter(stopped_at__lt=stopped_before).delete()
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


@dataclasses.dataclass(frozen=True, slots=True)
class PageFilters:
    """What a task listing may be narrowed by; None leaves a filter out."""

    status: TaskStatus | None = None
    task_type: str | None = None
    queue: str | None = None
    created_before: datetime | None = None
    owner_id: int | None = None


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


@dataclasses.dataclass(frozen=True, slots=True)
class Health:
    """What the health endpoint reports from the database."""

    workers_alive: int
    # The live workers' max_workers summed: how many tasks they can run at once.
    worker_slots: int
    pending: int
    running: int


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


def changed_since(cutoff: datetime) -> list[dict[str, Any]]:
    """Return the live-event fields of tasks changed after ``cutoff`` (for the relay).

    Only unfinished tasks and tasks completed after ``cutoff`` can have changed, and each part
    reads through an index (the partial pending and running indexes, the completion index),
    so a poll costs little however many finished tasks are kept.
    """
    active = Q(status__in=[TaskStatus.PENDING.value, TaskStatus.RUNNING.value])
    return list(
        TaskRecord.objects.filter(active | Q(completed_at__gt=cutoff), updated_at__gt=cutoff)
        .order_by("updated_at")
        .values(*EVENT_FIELDS)
    )


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
