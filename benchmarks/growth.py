"""The growth suite: does one worker's drain keep its pace as the task table grows?

Imports nothing from Django at module level (the parent process reads the sizes); the
workloads run after ``databases.setup_django``. Two workloads, each on an emptied task table:

- backlog: for each size, that many no-op tasks stored with ``enqueue_many``, then one worker
  (``max_workers`` and the other defaults) drains them. From the stored timestamps: the rate of
  the whole drain, of its first tenth (the first ``size / 10`` completions, from the first
  claim) and of its last tenth (from the completion that ends the ninth tenth to the last one).
  The task table's size before and after, and on PostgreSQL its dead rows once the worker has
  stopped and the vacuums (manual and automatic) the drain saw.
- history: ``history`` finished rows put in first (one ``INSERT ... SELECT`` from
  ``generate_series`` on PostgreSQL, a recursive CTE on SQLite), then ``history_drain`` tasks
  stored and drained the same way: a table that holds a week of results.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from time import perf_counter
from typing import Any

from .workloads import Sizes

NOOP = "bench.noop"
# Tasks per enqueue_many call while a backlog is stored: one INSERT each.
ENQUEUE_CHUNK = 20_000
# Seconds to wait for the stopped worker's connections to end (each flushes its statistics then).
SETTLE_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class GrowthSizes:
    """How much work each workload of the growth suite uses."""

    backlogs: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)  # tasks per backlog drain
    history: int = 2_000_000  # finished rows in the table before the history drain
    history_drain: int = 100_000  # tasks drained on top of them
    max_workers: int = 100
    limit: float = 1800.0  # seconds any one drain may take before it counts as failed


FULL = GrowthSizes()
QUICK = GrowthSizes(backlogs=(1_000, 5_000), history=20_000, history_drain=2_000, limit=300.0)


def _table() -> str:
    from django_atw.models import TaskRecord

    return TaskRecord._meta.db_table


def _connection() -> Any:
    from django.db import connection

    return connection


def table_bytes() -> tuple[int, int]:
    """The task table's size in bytes: its rows alone, and with its indexes (and TOAST)."""
    connection, table = _connection(), _table()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_relation_size(%s), pg_total_relation_size(%s)", [table, table])
            heap, total = cursor.fetchone()
            return int(heap), int(total)
        cursor.execute(
            "SELECT coalesce(sum(CASE WHEN name = %s THEN pgsize END), 0), coalesce(sum(pgsize), 0) "
            "FROM dbstat WHERE name IN (SELECT name FROM sqlite_master WHERE tbl_name = %s)",
            [table, table],
        )
        heap, total = cursor.fetchone()
        return int(heap), int(total)


def vacuum_counts() -> tuple[int, int, int]:
    """PostgreSQL: the task table's dead rows, its vacuums (manual and auto) and HOT updates so far."""
    connection = _connection()
    if connection.vendor != "postgresql":
        return 0, 0, 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT n_dead_tup, vacuum_count + autovacuum_count, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relid = %s::regclass",
            [_table()],
        )
        row = cursor.fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


def _emptied() -> None:
    """Empty the task table; on PostgreSQL flush this session's statistics at once, so the
    ``TRUNCATE`` resets the table's counts before the worker's backends add theirs."""
    from .run_atw import clear_tasks

    clear_tasks()
    connection = _connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")  # done when this session goes idle


def _settle() -> None:
    """Wait until this database has no other session: the stopped worker's backends flushed their
    statistics as they ended, so ``pg_stat_user_tables`` counts the whole drain."""
    connection = _connection()
    if connection.vendor != "postgresql":
        return
    deadline = perf_counter() + SETTLE_TIMEOUT
    with connection.cursor() as cursor:
        while perf_counter() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
            cursor.execute("SELECT pg_sleep(0.05)")


def store_backlog(count: int) -> None:
    """``count`` pending no-op tasks, added as a user would: ``enqueue_many``, in chunks."""
    from django_atw import enqueue_many

    from .tasks import noop

    for start in range(0, count, ENQUEUE_CHUNK):
        enqueue_many(noop, [() for _ in range(min(ENQUEUE_CHUNK, count - start))])


def store_history(count: int) -> None:
    """``count`` completed rows, older than any task stored after them, in one statement."""
    from django.utils import timezone

    connection, table = _connection(), _table()
    finished = timezone.now() - timedelta(days=1)
    columns = (
        "id, task_type, args, kwargs, metadata, priority, queue, status, progress, result, error, "
        "error_type, traceback, attempt_log, timeout, use_cache, cache_ttl, cache_key, from_cache, "
        "attempts, max_attempts, run_after, cancel_requested, worker_id, created_by_id, created_at, "
        "started_at, completed_at, updated_at"
    )
    values = (
        "'bench.history', '[]', '{}', '{}', 0, 'default', 'completed', 1.0, NULL, '', '', '', "
        "'[]', NULL, NULL, NULL, '', FALSE, 1, 3, NULL, FALSE, NULL, NULL, %s, %s, %s, %s"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT 'history-' || i, {values} "
                "FROM generate_series(1, %s) AS i",
                [finished, finished, finished, finished, count],
            )
            cursor.execute(f"ANALYZE {table}")  # as a table that grew over a week would be
        else:
            stamp = connection.ops.adapt_datetimefield_value(finished)
            cursor.execute(
                "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %s) "
                f"INSERT INTO {table} ({columns}) SELECT 'history-' || i, {values} FROM s",
                [count, stamp, stamp, stamp, stamp],
            )


def _tenths(count: int) -> dict[str, float]:
    """Rates of the whole drain and of its first and last tenth, from the stored timestamps."""
    from django_atw.models import TaskRecord

    done = TaskRecord.objects.filter(task_type=NOOP, status="completed")
    first_start: datetime | None = min(done.values_list("started_at", flat=True), default=None)
    ends = sorted(done.values_list("completed_at", flat=True))
    if len(ends) != count or first_start is None:
        raise RuntimeError(f"drain finished with {len(ends)} completed rows, expected {count}")
    tenth = max(1, count // 10)

    def rate(tasks: int, start: datetime, end: datetime) -> float:
        return tasks / max((end - start).total_seconds(), 1e-6)

    return {
        "rate": rate(count, first_start, ends[-1]),
        "first": rate(tenth, first_start, ends[tenth - 1]),
        "last": rate(tenth, ends[-tenth - 1] if count > tenth else first_start, ends[-1]),
    }


def drain(count: int, sizes: GrowthSizes, *, prefix: str, history: int = 0) -> dict[str, float]:
    """Empty the table, put in ``history`` finished rows and ``count`` tasks, drain with one worker."""
    from .run_atw import _drain

    _emptied()
    if history:
        store_history(history)
    store_backlog(count)
    _, vacuums_before, hot_before = vacuum_counts()
    heap_before, total_before = table_bytes()
    wall = asyncio.run(_drain(Sizes(drain=count, limit=sizes.limit), sizes.max_workers))
    _settle()
    rates = _tenths(count)
    dead, vacuums_after, hot_after = vacuum_counts()
    heap_after, total_after = table_bytes()
    _emptied()
    mb = 1024 * 1024
    return {
        f"{prefix}_rate": rates["rate"],
        f"{prefix}_first": rates["first"],
        f"{prefix}_last": rates["last"],
        f"{prefix}_last_vs_first": rates["last"] / rates["first"],
        f"{prefix}_wall": count / wall,
        f"{prefix}_heap_mb_before": heap_before / mb,
        f"{prefix}_heap_mb_after": heap_after / mb,
        f"{prefix}_total_mb_before": total_before / mb,
        f"{prefix}_total_mb_after": total_after / mb,
        f"{prefix}_dead_after": float(dead),
        f"{prefix}_vacuums": float(vacuums_after - vacuums_before),
        f"{prefix}_hot_updates": float(hot_after - hot_before),
    }


def backlog_key(count: int) -> str:
    """The metric prefix of the backlog drain of ``count`` tasks."""
    return f"backlog_{count}"


HISTORY_KEY = "history"


def steps(sizes: GrowthSizes) -> list[tuple[str, Callable[[], dict[str, float]]]]:
    """Each workload as (name, function returning its metrics), in running order."""
    plan: list[tuple[str, Callable[[], dict[str, float]]]] = [
        (backlog_key(count), functools.partial(drain, count, sizes, prefix=backlog_key(count)))
        for count in sizes.backlogs
    ]
    if sizes.history_drain:
        plan.append(
            (
                HISTORY_KEY,
                functools.partial(
                    drain, sizes.history_drain, sizes, prefix=HISTORY_KEY, history=sizes.history
                ),
            )
        )
    return plan
