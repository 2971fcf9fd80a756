"""Claiming pending tasks and writing what became of them: the worker's hot path.

Both run once per batch, not per task: one statement claims up to a batch of rows, one
statement per kind of outcome stores a batch of results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from ..status import TaskStatus
from ..values import ClaimedTask, Outcome
from ._vendor import (
    TABLE,
    WORKER_TABLE,
    appended_attempt,
    array_param,
    decode_json,
    hot_cursor,
    is_postgres,
    no_flush_wait,
    placeholders,
)
from .tasks import CANCEL_ERROR_TYPE, CANCELLED_WHILE_RUNNING


def claim_batch(worker_id: str, queues: Sequence[str], limit: int) -> list[ClaimedTask]:
    """Mark up to ``limit`` pending tasks as running for ``worker_id`` and return them.

    One statement, so one transaction. On PostgreSQL, SKIP LOCKED lets workers claim side by
    side instead of queueing on each other's row locks. SQLite has a single writer: the
    statement holds the write lock from its read to its write (with WAL a concurrent commit
    makes it fail with SQLITE_BUSY, never claim twice). Returned in (priority, created_at) order.
    Tasks deferred (``run_after``) to later are skipped, and so is a task whose cancel was
    requested (release, lease recovery and retries store those cancelled; this is a second guard).
    A worker whose row is marked stopped (its lease expired) claims nothing: its claims would be
    orphans that others reap at once.
    """
    now = timezone.now()
    queue_match = "queue = %s" if len(queues) == 1 else f"queue IN ({placeholders(queues)})"
    pick = (
        f"SELECT id FROM {TABLE} WHERE status = 'pending' AND NOT cancel_requested AND {queue_match} "
        "AND (run_after IS NULL OR run_after <= %s) "
        f"AND EXISTS (SELECT 1 FROM {WORKER_TABLE} WHERE id = %s AND stopped_at IS NULL) "
        "ORDER BY priority, created_at LIMIT %s"
    )
    # Never started before created: ``now`` is read before the statement runs, and a row committed
    # after that reading (SQLite: while the claim waits for the write lock) is still claimable.
    postgres = is_postgres()
    started = "GREATEST(created_at, %s)" if postgres else "MAX(created_at, %s)"
    assign = (
        f"SET status = 'running', worker_id = %s, started_at = {started}, updated_at = %s, "
        "attempts = attempts + 1, progress = 0"
    )
    columns = (
        "id", "task_type", "args", "kwargs", "timeout", "priority", "created_at", "attempts", "max_attempts",
        "cache_key", "cache_ttl",
    )  # fmt: skip
    params: list[str | int | datetime]
    prefix = ""
    if postgres:
        # A CTE, not "id IN (subquery)": PostgreSQL may re-run a LIMIT ... SKIP LOCKED subquery
        # inside a semi-join and return more rows than the limit. A locking CTE runs once.
        # RETURNING has no order: the outer SELECT sorts, and leaves created_at out (parsing a
        # timestamp per row only to sort by it cost more than the sort).
        selected = ", ".join(c if c != "created_at" else "NULL" for c in columns)
        # The claim's commit does not wait for its WAL flush (2-3 ms of a 3 ms claim here; the
        # outcome writes still wait). A server crash may forget the claim of the last moment: the
        # row is pending again, and the run's outcome, fenced by worker and attempt, is refused,
        # so the task runs again, as after lease recovery. An outcome's commit flushes the WAL
        # up to it, its claim's included, so no stored outcome ever lacks its claim.
        prefix = no_flush_wait()
        sql = (
            f"{prefix}WITH picked AS ({pick} FOR UPDATE SKIP LOCKED), "
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
        if postgres and prefix:
            cursor.nextset()  # past the SET, to the claim's rows (one round trip for both)
        rows = cursor.fetchall()
    claimed = [
        ClaimedTask(
            row[0],
            row[1],
            decode_json(row[2]),
            decode_json(row[3]),
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


_OUTCOME_COLUMNS = (
    "id", "attempts", "status", "progress", "result", "error", "error_type", "traceback", "completed_at",
    "from_cache",
)  # fmt: skip
_OUTCOME_TYPES = (
    "text", "integer", "text", "double precision", "jsonb", "text", "text", "text", "timestamptz",
    "boolean",
)  # fmt: skip


# A retry returns its task to the queue, unless a cancel was requested meanwhile: then the task
# ends cancelled, as its run would have had the worker seen the request in time (a pending
# task never keeps the request: see store.release). Columns set by these, not from the row.
_RETRY = (
    f"status = CASE WHEN t.cancel_requested THEN '{TaskStatus.CANCELLED.value}' "
    f"ELSE '{TaskStatus.PENDING.value}' END, "
    "worker_id = CASE WHEN t.cancel_requested THEN t.worker_id END, "
    "started_at = CASE WHEN t.cancel_requested THEN t.started_at END, "
    "progress = CASE WHEN t.cancel_requested THEN t.progress ELSE 0 END, "
)
_RETRY_ASSIGNED = {
    "error": f"CASE WHEN t.cancel_requested THEN '{CANCELLED_WHILE_RUNNING}' ELSE v.error END",
    "error_type": f"CASE WHEN t.cancel_requested THEN '{CANCEL_ERROR_TYPE}' ELSE v.error_type END",
    "traceback": "CASE WHEN t.cancel_requested THEN '' ELSE v.traceback END",
    "run_after": "CASE WHEN t.cancel_requested THEN NULL ELSE v.run_after END",
    "completed_at": "CASE WHEN t.cancel_requested THEN v.completed_at END",
}


def _failed_attempt() -> str:
    """The row's attempt log with this outcome appended (retries and failures keep every attempt)."""
    return appended_attempt("t.", "v.completed_at", "v.error_type", "v.error", "v.traceback")


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


class Written(NamedTuple):
    """What ``write_batch`` stored: the outcomes (as stored) and the progress values."""

    outcomes: list[Outcome]
    progress: list[tuple[str, float]]


def write_batch(
    worker_id: str, progress: Sequence[tuple[str, float]], outcomes: Sequence[Outcome]
) -> Written:
    """Store progress values and final outcomes of this worker's running tasks in one transaction.

    Each row is updated only while it is still running under ``worker_id`` (and, for outcomes,
    in the same attempt), so a worker that lost a task (cancelled elsewhere, or reclaimed after
    its lease, even by itself) never overwrites it. Returns the outcomes that were stored, in
    order, and the progress values: the others found their row no longer theirs, and must not
    be reported (as done, or as progress of a task another worker or a cancel owns now).
    Retries go back to pending in the same transaction, or end cancelled if a cancel was
    requested meanwhile (the returned outcome then says so).
    Each kind of row is one ``UPDATE ... FROM`` statement (see ``_update_running``): a round trip
    per row would cost more than the tasks themselves.
    """
    now = timezone.now()
    given = outcomes
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
        (o.task_id, o.attempt, o.error, o.error_type, o.traceback, o.run_after or now, now)
        for o in outcomes
        if o.status is TaskStatus.PENDING
    ]
    statements = sum(1 for rows in (progress_rows, plain_rows, outcome_rows, retry_rows) if rows)
    # One statement is atomic on its own: no BEGIN and COMMIT round trips around it.
    atomic = transaction.atomic() if statements > 1 else contextlib.nullcontext()
    written: list[tuple[str, int, str]] = []  # (id, attempts, status) of the outcome rows updated
    with atomic, hot_cursor() as cursor:
        if progress_rows:
            progressed = _update_running(
                cursor, worker_id, now, ("id", "progress"), ("text", "double precision"), progress_rows
            )
        if plain_rows:
            written += _update_running(
                cursor,
                worker_id,
                now,
                ("id", "attempts", "result", "completed_at"),
                ("text", "integer", "jsonb", "timestamptz"),
                plain_rows,
                fixed=_PLAIN_COMPLETION,
            )
        if outcome_rows:
            written += _update_running(
                cursor,
                worker_id,
                now,
                _OUTCOME_COLUMNS,
                _OUTCOME_TYPES,
                outcome_rows,
                fixed=f"attempt_log = CASE WHEN v.status = '{TaskStatus.FAILED.value}' "
                f"THEN {_failed_attempt()} ELSE t.attempt_log END, ",
            )
        if retry_rows:
            written += _update_running(
                cursor,
                worker_id,
                now,
                ("id", "attempts", "error", "error_type", "traceback", "run_after", "completed_at"),
                ("text", "integer", "text", "text", "text", "timestamptz", "timestamptz"),
                retry_rows,
                fixed=f"{_RETRY}attempt_log = {_failed_attempt()}, ",
                assigned=_RETRY_ASSIGNED,
            )
    if progress_rows:
        moved = {task_id for task_id, _attempts, _status in progressed}
        progress_rows = [row for row in progress_rows if row[0] in moved]
    return Written(_as_stored(given, written, now), progress_rows)


def _as_stored(
    outcomes: Sequence[Outcome], written: Sequence[tuple[str, int, str]], now: datetime
) -> list[Outcome]:
    """The ``outcomes`` that ``written`` rows (id, attempts, status after) show stored, as stored."""
    by_attempt = {(task_id, attempts): status for task_id, attempts, status in written}
    by_id = {task_id: status for task_id, _attempts, status in written}
    stored = []
    for outcome in outcomes:
        if outcome.attempt:
            status = by_attempt.get((outcome.task_id, outcome.attempt))
        else:
            status = by_id.get(outcome.task_id)
        if status is None:
            continue
        if outcome.status is TaskStatus.PENDING and status == TaskStatus.CANCELLED.value:
            outcome = dataclasses.replace(
                outcome,
                status=TaskStatus.CANCELLED,
                error=CANCELLED_WHILE_RUNNING,
                error_type=CANCEL_ERROR_TYPE,
                traceback="",
                completed_at=now,
                run_after=None,
                exception=None,
            )
        stored.append(outcome)
    return stored


def _update_running(
    cursor: Any,
    worker_id: str,
    now: datetime,
    columns: Sequence[str],
    pg_types: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    fixed: str = "",
    assigned: Mapping[str, str] | None = None,
) -> list[tuple[str, int, str]]:
    """Set ``columns[1:]`` of this worker's running rows, by id, from ``rows`` (id first).

    An ``attempts`` column is a fence, not a value: the row must still be in that attempt
    (0 skips the check). The rows updated are returned as (id, attempts, status), read by the
    same statement's RETURNING. ``fixed`` is extra ``column = value, `` assignments for
    every row; ``assigned`` gives some columns an expression instead of their ``v.`` value.
    One statement whose text is the same for any number of rows, so it is parsed once: on
    PostgreSQL the rows travel as one array per column (``pg_types`` name their element types),
    on SQLite as one JSON array of rows that ``json_each`` unpacks.
    """
    guard = "t.status = 'running' AND t.worker_id = %s"
    returning = "t.id, t.attempts, t.status"
    expressions = assigned or {}
    assignments = ", ".join(
        f"{column} = {expressions.get(column, 'v.' + column)}"
        for column in columns[1:]
        if column != "attempts"
    )
    values: list[Any]
    if is_postgres():
        arrays = ", ".join(array_param(kind) for kind in pg_types)
        source = f"unnest({arrays}) AS v({', '.join(columns)})"
        values = [
            [None if value is None else float(value) for value in column]
            if kind == "double precision"
            else list(column)
            for kind, column in zip(pg_types, zip(*rows, strict=True), strict=True)
        ]
    else:
        # The unary + keeps SQLite's planner off atw_task_running_idx: by that index it would
        # scan every running row of the worker and, for each, all of the JSON rows (2,000
        # outcomes took 2 s). Left with the primary key, it looks up each JSON row's task.
        guard = "+t.status = 'running' AND +t.worker_id = %s"
        returning = "id, attempts, status"  # SQLite's RETURNING names the target's columns bare
        picks = ", ".join(f"json_extract(value, '$[{i}]') AS {column}" for i, column in enumerate(columns))
        source = f"(SELECT {picks} FROM json_each(%s)) AS v"
        # ensure_ascii=False: text the driver cannot bind (a lone surrogate) fails here, as it
        # would on PostgreSQL, instead of reaching the file as invalid UTF-8 that no read decodes.
        values = [json.dumps(rows, ensure_ascii=False, default=_sqlite_datetime)]
    params = [now, *values, worker_id]
    sql = (
        f"UPDATE {TABLE} AS t SET {fixed}{assignments}, updated_at = %s "
        f"FROM {source} WHERE t.id = v.id AND {guard}"
    )
    if "attempts" in columns:
        sql += " AND (v.attempts = 0 OR t.attempts = v.attempts)"
    cursor.execute(f"{sql} RETURNING {returning}", params)
    return [(task_id, attempts, status) for task_id, attempts, status in cursor.fetchall()]


def _sqlite_datetime(value: Any) -> str:
    """Encode a datetime in a JSON row as sqlite3 would bind it (Django's adapter: ISO, space)."""
    if isinstance(value, datetime):
        return value.isoformat(" ")
    raise TypeError(f"{type(value).__name__} is not a column value")
