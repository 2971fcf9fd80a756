"""The one place SQLite and PostgreSQL differ for the store: vendor test, JSON decoding, NOTIFY.

Every store module asks ``is_postgres()`` rather than reading ``connection.vendor`` itself, so a
reader finds every vendor branch by searching for one name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection

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
