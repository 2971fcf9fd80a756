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

RUNS_TABLE = "atw_test_runs"


def create_runs_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {RUNS_TABLE}")
        cursor.execute(
            f"CREATE TABLE {RUNS_TABLE} (label VARCHAR(100) NOT NULL, pid INTEGER NOT NULL, "
            "started DOUBLE PRECISION NOT NULL, ended DOUBLE PRECISION)"
        )


def drop_runs_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {RUNS_TABLE}")


def runs() -> list[tuple[str, int, float, float | None]]:
    """Every recorded execution: (label, pid, started, ended or None)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT label, pid, started, ended FROM {RUNS_TABLE} ORDER BY started")
        return [(row[0], row[1], row[2], row[3]) for row in cursor.fetchall()]


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
