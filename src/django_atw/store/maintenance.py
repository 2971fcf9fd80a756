"""Vacuuming the task table from the workers (PostgreSQL): its dead rows, one VACUUM at a time.

Every claim and every completion updates a task row, and neither update can be HOT (the status
is in the predicate of the partial indexes; started_at and completed_at are indexed): each task
leaves two dead row versions behind, and a dead entry in the claim index (pending rows by queue,
priority, created_at) exactly where the next claim starts its scan. Until a vacuum removes
them, every claim walks past the entries of all the tasks claimed before it: over a
1,000,000-task drain with no vacuum the claim's round trip tripled and the drain's last tenth
ran at half the speed of its first. Autovacuum looks at a table at most once a minute
(``autovacuum_naptime``), and may be off; so a worker reads the table's statistics every
``ATW["VACUUM_INTERVAL"]`` seconds (``table_stats``) and vacuums it when ``vacuum_due``.

SQLite needs none of this: it updates a row in place and removes its old index entries at once,
and the pages of deleted rows go to the file's free list for the next inserts.
"""

from __future__ import annotations

import zlib
from time import perf_counter

from django.db import connection

from ..values import TableStats, Vacuumed
from ._vendor import TABLE, is_postgres

# A vacuum is due when the dead rows reach VACUUM_MIN_DEAD plus VACUUM_SCALE of the rows the
# table holds. Measured on PostgreSQL 15 (2 shared cores): each claimed task leaves a dead
# claim-index entry that costs every later claim 10-14 ns (200 entries a page, 2-3 us a page);
# a VACUUM (INDEX_CLEANUP ON) of a 1,000,000-row table took 0.3-0.6 s, of 2,100,000 rows
# 0.35 s: it reads every index whole, so its cost V grows with the table, the entries' cost
# does not. Vacuuming every d claimed tasks costs claims about 0.07 ns x d^2 in all (claims of
# 100), so the best d is about sqrt(V / 0.07 ns): 65,000-90,000 tasks for a million rows
# (130,000-180,000 dead rows), and it grows with the square root of the table, not its size.
# 5% lands near it for a few million rows and stays within a factor of two from 1,000,000 to
# 10,000,000 (where 20%, autovacuum's default, lets 2,000,000 dead rows pile up: 13 ms more
# per claim). Below 20,000 dead rows (at most 0.15 ms per claim) a vacuum is never worth it.
VACUUM_MIN_DEAD = 20_000
VACUUM_SCALE = 0.05
# The planner's statistics are gathered again (ANALYZE) once ANALYZE_MIN plus ANALYZE_SCALE of
# the table's rows changed since the last time (autovacuum's own default fraction), and always
# with the first vacuum of a table never analyzed. A claim's plan depends on them: measured on
# a never-analyzed table of 1,000,000 tasks, after 30,000 claims and a VACUUM without ANALYZE
# (which sets the table's row count, and so turns the planner's default guesses for status and
# queue into "4 rows"), the claim read and sorted every pending row: 1,670 ms a claim instead of
# 5-8 ms. After ANALYZE it walked the claim index again. ANALYZE reads a sample of 30,000 rows:
# 0.5-0.8 s on 1,000,000 rows here, more than the vacuum, so it runs only when due.
ANALYZE_MIN = 20_000
ANALYZE_SCALE = 0.1
# The session-level advisory lock a worker holds around its VACUUM, so that one worker vacuums
# at a time; the key is the same in every process (crc32 of a fixed text and the table name).
VACUUM_LOCK = zlib.crc32(f"django_atw.vacuum:{TABLE}".encode())


def table_stats() -> TableStats | None:
    """The task table's rows, vacuums and analyzes, from ``pg_stat_user_tables``.

    None on SQLite. The counts are the server's statistics: each session adds its own at most
    about once a second, so they lag the table by that much.
    """
    if not is_postgres():
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.n_live_tup, s.n_dead_tup, "
            "EXTRACT(EPOCH FROM now() - GREATEST(s.last_vacuum, s.last_autovacuum)), s.vacuum_count, "
            "s.n_mod_since_analyze, COALESCE(s.last_analyze, s.last_autoanalyze) IS NOT NULL, "
            "s.analyze_count, "
            # Who may VACUUM it (PostgreSQL 15): its owner (or a member of that role), the
            # database's owner, a superuser.
            "pg_has_role(c.relowner, 'USAGE') OR pg_has_role(d.datdba, 'USAGE') "
            "OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
            "FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid "
            "JOIN pg_database AS d ON d.datname = current_database() WHERE s.relid = %s::regclass",
            [connection.ops.quote_name(TABLE)],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    live, dead, since_vacuum, vacuums, modified, analyzed, analyzes, maintainable = row
    return TableStats(
        int(live),
        int(dead),
        None if since_vacuum is None else float(since_vacuum),
        int(vacuums),
        int(modified),
        bool(analyzed),
        int(analyzes),
        bool(maintainable),
    )


def vacuum_due(stats: TableStats, min_gap: float) -> bool:
    """Whether ``stats`` call for a vacuum: enough dead rows, and none in the last ``min_gap`` s.

    The gap keeps workers from vacuuming over and over when a vacuum cannot remove the dead
    rows (a long transaction elsewhere still sees them).
    """
    if stats.dead < VACUUM_MIN_DEAD + VACUUM_SCALE * (stats.live + stats.dead):
        return False
    return stats.since_vacuum is None or stats.since_vacuum >= min_gap


def analyze_due(stats: TableStats) -> bool:
    """Whether enough rows changed since the planner's statistics were gathered to gather them again."""
    return stats.modified >= ANALYZE_MIN + ANALYZE_SCALE * (stats.live + stats.dead)


def due_work(stats: TableStats, min_gap: float) -> tuple[bool, bool]:
    """Whether to VACUUM and whether to ANALYZE the task table now.

    ANALYZE when ``analyze_due``, and with the first vacuum of a table never analyzed: the
    vacuum sets the row count the planner scales its guesses by (see ANALYZE_MIN).
    """
    vacuum = vacuum_due(stats, min_gap)
    return vacuum, analyze_due(stats) or (vacuum and not stats.analyzed)


def maintenance_due(stats: TableStats, min_gap: float) -> bool:
    """Whether ``stats`` call for a VACUUM or an ANALYZE of the task table."""
    return any(due_work(stats, min_gap))


def vacuum_if_due(min_gap: float) -> Vacuumed | None:
    """VACUUM and/or ANALYZE the task table, as due, unless another worker is at it.

    VACUUM cannot run in a transaction, so the caller's connection must be in autocommit (a
    worker uses a connection of its own, so the vacuum never holds back claims or heartbeats).
    ``pg_try_advisory_lock`` lets one worker vacuum at a time; once it has the lock the
    statistics are read again, so a worker that waited for another's vacuum does not repeat it.
    The VACUUM takes no lock that a claim or a write waits for: ``TRUNCATE FALSE`` leaves the
    file's length alone (shortening it takes an exclusive lock; freed pages are reused by new
    rows instead), and ``SKIP_LOCKED`` gives up at once if autovacuum is on the table (then the
    manual counts stay the same, and None is returned).
    ``INDEX_CLEANUP ON``: with fewer than 2% of the heap's pages holding dead rows (a drain on top
    of a large table of finished tasks), PostgreSQL would otherwise leave the indexes alone, and
    the claim index's dead entries are what slow claims (measured: 20,000 tasks claimed over
    2,100,000 rows, the next claim read 136 index pages after a VACUUM left to decide, 19 after
    one with INDEX_CLEANUP ON). ANALYZE goes with it, or runs alone, as ``due_work`` says.
    Returns None when nothing was done.
    """
    if not is_postgres():
        return None
    if connection.in_atomic_block:
        raise RuntimeError("VACUUM cannot run inside a transaction (atomic block)")
    table = connection.ops.quote_name(TABLE)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [VACUUM_LOCK])
        if not cursor.fetchone()[0]:
            return None
        try:
            before = table_stats()
            if before is None:
                return None
            vacuum, analyze = due_work(before, min_gap)
            started = perf_counter()
            if vacuum:
                options = "ANALYZE, " if analyze else ""
                cursor.execute(f"VACUUM ({options}INDEX_CLEANUP ON, TRUNCATE FALSE, SKIP_LOCKED) {table}")
            elif analyze:
                cursor.execute(f"ANALYZE (SKIP_LOCKED) {table}")
            else:
                return None
            seconds = perf_counter() - started
            after = table_stats()
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [VACUUM_LOCK])
    if after is None:
        return None
    # Counted only if it ran: SKIP_LOCKED skips, with a warning, a table autovacuum holds.
    vacuumed = vacuum and after.vacuums > before.vacuums
    analyzed = analyze and after.analyzes > before.analyzes
    if not (vacuumed or analyzed):
        return None
    return Vacuumed(vacuumed, analyzed, before.dead, after.dead, seconds)


def backend_pid() -> int:
    """The server process of this thread's connection (to cancel its VACUUM from elsewhere)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def cancel_backend(pid: int) -> bool:
    """Cancel the statement server process ``pid`` is running (PostgreSQL ``pg_cancel_backend``)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_cancel_backend(%s)", [pid])
        return bool(cursor.fetchone()[0])
