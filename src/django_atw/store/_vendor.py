"""The one place SQLite and PostgreSQL differ for the store: vendor test, JSON decoding, NOTIFY.

Every store module asks ``is_postgres()`` rather than reading ``connection.vendor`` itself, so a
reader finds every vendor branch by searching for one name.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.db import connection
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL

from ..models import TaskRecord, WorkerProcess
from ..status import TaskStatus

TABLE = TaskRecord._meta.db_table
WORKER_TABLE = WorkerProcess._meta.db_table
FINISHED = [TaskStatus.COMPLETED.value, TaskStatus.FAILED.value, TaskStatus.CANCELLED.value]
# PostgreSQL NOTIFY channels: tasks became claimable in a queue (payload: the queue name); a
# running task was asked to cancel (payload: its id). See wakeup.py for the listener.
TASK_ADDED_CHANNEL = "atw_task_added"
CANCEL_CHANNEL = "atw_cancel"


def is_postgres() -> bool:
    """True when the task database is PostgreSQL (SKIP LOCKED, arrays, NOTIFY); else SQLite."""
    return connection.vendor == "postgresql"


def decode_json(value: Any) -> Any:
    """Decode a JSON column read by raw SQL (SQLite and Django's psycopg set-up give text)."""
    if value == "[]":  # no arguments: the common case, decoded once per claimed task
        return []
    if value == "{}":
        return {}
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def placeholders(values: Sequence[Any]) -> str:
    """``%s, %s, ...``: one placeholder per value."""
    return ", ".join(["%s"] * len(values))


def notify(channel: str, payloads: Iterable[str]) -> None:
    """NOTIFY ``channel`` once per payload on PostgreSQL (delivered at commit); else nothing."""
    values = sorted(set(payloads))
    if not values or not is_postgres():
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", [channel, values])


def param(sql_type: str) -> str:
    """A placeholder PostgreSQL can type inside a JSON builder (``%s::text``); ``%s`` on SQLite."""
    return f"%s::{sql_type}" if is_postgres() else "%s"


def appended_attempt(row: str, finished_at: str, error_type: str, error: str, traceback: str) -> str:
    """SQL for ``attempt_log`` with the row's current attempt appended as failed.

    ``row`` prefixes the task table's columns (``"t."`` in an ``UPDATE ... AS t``, else ``""``);
    the other arguments are SQL expressions. The attempt, worker and start time are the row's
    own, read before the statement's other assignments change them (SQL sees the old row).
    """
    fields = (
        f"'attempt', {row}attempts, 'worker_id', {row}worker_id, 'started_at', {row}started_at, "
        f"'finished_at', {finished_at}, 'error_type', {error_type}, 'error', {error}, "
        f"'traceback', {traceback}"
    )
    if is_postgres():
        return f"{row}attempt_log || jsonb_build_array(jsonb_build_object({fields}))"
    return f"json_insert({row}attempt_log, '$[#]', json_object({fields}))"


def id_in(ids: Sequence[str], column: str = "id") -> RawSQL:
    """A filter for ``column IN ids`` that passes the ids as one parameter, for ``.filter()``.

    ``id__in`` binds one parameter per id: psycopg's client-side binding then parses a
    statement that grows with the list (11 ms for 500 ids, measured: a short-poll wait on a
    backlog spent the worker's database thread on it), and SQLite caps the parameter count.
    One array (PostgreSQL) or one JSON document (SQLite) keeps the statement constant.

    On PostgreSQL the array travels as the ids joined by commas, split by the server: psycopg
    quotes each element of a list with a regular expression, 28 ms of a 20,000-id
    ``wait_for_tasks`` against 7 ms for the whole read so (measured). Stored ids never hold a
    comma (``validation``); a list with one that does, an id no task can have, goes as an array.
    """
    if is_postgres():
        joined = ",".join(ids)
        if joined.count(",") == max(len(ids) - 1, 0) and all(ids[:1]):
            return RawSQL(f"{column} = ANY(string_to_array(%s, ','))", (joined,), BooleanField())
        return RawSQL(f"{column} = ANY(%s::text[])", (list(ids),), output_field=BooleanField())
    return RawSQL(f"{column} IN (SELECT value FROM json_each(%s))", (json.dumps(list(ids)),), BooleanField())


def no_flush_wait() -> str:
    """``SET LOCAL synchronous_commit TO OFF; `` to prefix a statement whose commit need not wait
    for the WAL flush, or ``""`` where one execute cannot carry two statements.

    psycopg 3 with client-side binding (Django's default) sends the string as one simple query,
    one implicit transaction; server-side binding and psycopg2 cannot (or cannot return the
    second statement's rows), so those keep the waiting commit.
    """
    if not is_postgres():
        return ""
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3 or connection.settings_dict.get("OPTIONS", {}).get("server_side_binding"):
        return ""
    return "SET LOCAL synchronous_commit TO OFF; "


@contextlib.contextmanager
def hot_cursor() -> Iterator[Any]:
    """A cursor for statements run over and over with new values (adds, outcome writes).

    On PostgreSQL with psycopg 3 it binds on the server (Django's cursors bind on the client),
    which lets values travel in binary (``array_param``) and lets the server parse and plan each
    statement once per connection rather than on every run: a one-row add 0.36 -> 0.25 ms,
    measured. Not prepared behind a transaction-mode pooler, where a prepared statement may be
    on another server connection: a database whose settings say so
    (``DISABLE_SERVER_SIDE_CURSORS``, which Django asks of those set-ups, or
    ``OPTIONS["prepare_threshold"] = None``) still binds on the server, in unnamed statements
    that poolers pass through. On SQLite it converts each statement's ``%s`` placeholders once,
    not at every run as Django's cursor does (a regular expression over the whole text: 22 µs
    for a one-row add's INSERT, 32 µs for a worker's claiming one, measured). Either way errors
    are Django's, and statements are logged in ``connection.queries`` (under DEBUG), as from
    ``connection.cursor()``.
    """
    if binds_on_server():
        import psycopg

        connection.ensure_connection()
        raw = connection.connection
        prepare = _may_prepare(connection.settings_dict)
        if prepare and raw.prepare_threshold is None:
            # Django turns preparing off (psycopg then refuses even ``prepare=True``): turn it
            # on for the statements asked for only (Django's cursors bind on the client anyway).
            raw.prepare_threshold = _ONLY_WHEN_ASKED
        with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
            yield _ServerCursor(cursor, connection, prepare)
        return
    if connection.vendor == "sqlite":
        with connection.wrap_database_errors, connection.cursor() as cursor:
            yield _QmarkCursor(cursor.cursor, connection)
        return
    with connection.cursor() as cursor:
        yield cursor


def binds_on_server() -> bool:
    """True when ``hot_cursor`` binds values on the server (PostgreSQL through psycopg 3)."""
    if not is_postgres():
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return bool(is_psycopg3)


def array_param(sql_type: str) -> str:
    """A ``hot_cursor`` placeholder for a list of ``sql_type`` values, on PostgreSQL.

    In binary where the cursor binds on the server: psycopg quotes every element of a text
    array with a regular expression, which cost 8.6 µs of the worker's CPU per stored outcome
    (its id, result and timestamp) against 1 µs in binary, measured. A binary list must hold
    one Python type (``float`` columns get floats, never an ``int`` among them).
    """
    return f"%b::{sql_type}[]" if binds_on_server() else f"%s::{sql_type}[]"


_ONLY_WHEN_ASKED = 2**31


@functools.lru_cache(maxsize=256)
def _qmark(sql: str) -> str:
    """``sql`` with Django's ``%s`` placeholders as SQLite's ``?`` (``%%`` as ``%``), as Django's
    SQLite cursor converts it."""
    return _FORMAT_PLACEHOLDER.sub("?", sql).replace("%%", "%")


_FORMAT_PLACEHOLDER = re.compile(r"(?<!%)%s")


def _may_prepare(settings_dict: dict[str, Any]) -> bool:
    options = settings_dict.get("OPTIONS") or {}
    pooled = settings_dict.get("DISABLE_SERVER_SIDE_CURSORS") or (
        "prepare_threshold" in options and options["prepare_threshold"] is None
    )
    return not pooled


class _HotCursor:
    """What ``hot_cursor`` callers use of a cursor: ``execute(sql, params)`` and the fetches."""

    def __init__(self, cursor: Any, db: Any) -> None:
        self._cursor = cursor
        self._db = db

    def fetchall(self) -> list[Any]:
        rows: list[Any] = self._cursor.fetchall()
        return rows

    def fetchone(self) -> Any:
        return self._cursor.fetchone()


class _ServerCursor(_HotCursor):
    """A psycopg cursor binding on the server; ``prepare``: its statements are prepared there
    at their first run."""

    def __init__(self, cursor: Any, db: Any, prepare: bool) -> None:
        super().__init__(cursor, db)
        self._prepare = prepare

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        self._db.validate_no_broken_transaction()
        if not self._db.queries_logged:
            self._cursor.execute(sql, params, prepare=self._prepare)
            return
        started = time.monotonic()
        try:
            self._cursor.execute(sql, params, prepare=self._prepare)
        finally:
            self._db.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})


class _QmarkCursor(_HotCursor):
    """Django's SQLite cursor, given each statement with its placeholders converted once."""

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        self._db.validate_no_broken_transaction()
        started = time.monotonic()
        try:
            # The base class's execute: Django's subclass would convert the text again.
            sqlite3.Cursor.execute(self._cursor, _qmark(sql), params)
        finally:
            if self._db.queries_logged:
                self._db.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})
