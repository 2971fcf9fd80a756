"""Tasks for the multi-process tests: each run records itself in a table, from the worker.

Workers find these by dotted path (``tests.multiprocess.tasks.logged``). The table is the
evidence: one row per execution, with the worker's pid and when the run started and ended.
"""

from __future__ import annotations

import asyncio
import os
import time

from asgiref.sync import sync_to_async
from django.db import connection

from django_atw.models import TaskRecord

RUNS_TABLE = "atw_test_runs"
ATTEMPTED = f"{__name__}.attempted"


def create_runs_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {RUNS_TABLE}")
        cursor.execute(
            f"CREATE TABLE {RUNS_TABLE} (label VARCHAR(100) NOT NULL, pid INTEGER NOT NULL, "
            "started DOUBLE PRECISION NOT NULL, ended DOUBLE PRECISION, attempt INTEGER)"
        )


def drop_runs_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {RUNS_TABLE}")


def runs() -> list[tuple[str, int, float, float | None]]:
    """Every recorded execution: (label, pid, started, ended or None)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT label, pid, started, ended FROM {RUNS_TABLE} ORDER BY started")
        return [(row[0], row[1], row[2], row[3]) for row in cursor.fetchall()]


def attempt_runs() -> list[tuple[str, int, int, float, float | None]]:
    """Every recorded run of ``attempted``: (label, pid, attempt, started, ended or None)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT label, pid, attempt, started, ended FROM {RUNS_TABLE} "
            "WHERE attempt IS NOT NULL ORDER BY started"
        )
        return [(row[0], row[1], row[2], row[3], row[4]) for row in cursor.fetchall()]


def _begin(label: str) -> tuple[float, bool]:
    started = time.time()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {RUNS_TABLE} WHERE label = %s", [label])
        first = cursor.fetchone()[0] == 0
        cursor.execute(
            f"INSERT INTO {RUNS_TABLE} (label, pid, started) VALUES (%s, %s, %s)",
            [label, os.getpid(), started],
        )
    return started, first


def _end(label: str, started: float) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {RUNS_TABLE} SET ended = %s WHERE label = %s AND pid = %s AND started = %s",
            [time.time(), label, os.getpid(), started],
        )


def _record(label: str) -> None:
    now = time.time()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The evidence need not survive a crash of the server; skip the wait for the disk.
            cursor.execute("SET synchronous_commit TO off")
        cursor.execute(
            f"INSERT INTO {RUNS_TABLE} (label, pid, started, ended) VALUES (%s, %s, %s, %s)",
            [label, os.getpid(), now, now],
        )


async def logged(label: str, first_run_seconds: float = 0.0, later_run_seconds: float = 0.0) -> str:
    """Record a run of ``label``; the first run of a label sleeps ``first_run_seconds``."""
    if not first_run_seconds and not later_run_seconds:
        await sync_to_async(_record)(label)  # one statement: the drain tests run thousands
        return label
    started, first = await sync_to_async(_begin)(label)
    await asyncio.sleep(first_run_seconds if first else later_run_seconds)
    await sync_to_async(_end)(label, started)
    return label


def _begin_attempt(label: str) -> tuple[float, int]:
    started = time.time()
    # The attempt this run belongs to, read from the row while this process holds it; 0 when
    # another process holds it already (a run this process had claimed and starts too late).
    # Labels are unique within a test.
    mine = TaskRecord.objects.filter(task_type=ATTEMPTED, args__0=label, worker__pid=os.getpid())
    attempt = next(iter(mine.values_list("attempts", flat=True)), 0)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {RUNS_TABLE} (label, pid, started, attempt) VALUES (%s, %s, %s, %s)",
            [label, os.getpid(), started, attempt],
        )
    return started, attempt


async def attempted(label: str, seconds: float, retry_seconds: float | None = None) -> int:
    """Record a run of ``label`` with its attempt number, take ``seconds``, return the attempt.

    Attempts after the first take ``retry_seconds`` when given. The result names the attempt
    that wrote it: a stored result other than the row's attempts would be a stale run's outcome
    overwriting a later attempt's.
    """
    started, attempt = await sync_to_async(_begin_attempt)(label)
    await asyncio.sleep(retry_seconds if attempt > 1 and retry_seconds is not None else seconds)
    await sync_to_async(_end)(label, started)
    return attempt
