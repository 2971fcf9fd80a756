"""Keeping the task table vacuumed: the migration's autovacuum settings, check W006, and the
workers' own VACUUM when claims and completions leave dead rows (PostgreSQL)."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps as installed_apps
from django.core import checks as django_checks
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_atw import AsyncTaskWorker, aenqueue_many, checks, enqueue_many, store
from django_atw.models import TaskRecord
from django_atw.status import TaskStatus
from django_atw.store import maintenance
from django_atw.values import Outcome
from tests.conftest import wait_until

POSTGRES = connection.vendor == "postgresql"
PG_ONLY = pytest.mark.skipif(
    not POSTGRES, reason="autovacuum and VACUUM are PostgreSQL's; SQLite has no dead rows"
)
TABLE = TaskRecord._meta.db_table
QUEUE = "vacuum-test"
migration = importlib.import_module("django_atw.migrations.0009_task_table_vacuum_settings")


def reloptions() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE oid = %s::regclass", [TABLE])
        (options,) = cursor.fetchone()
    return dict(option.split("=", 1) for option in options or [])


# --- the migration ------------------------------------------------------------------------------


@PG_ONLY
@pytest.mark.django_db
def test_the_migration_sets_the_task_tables_autovacuum_options_and_reverses() -> None:
    assert reloptions() == migration.TASK_TABLE_OPTIONS
    with connection.schema_editor() as editor:
        migration.reset_options(installed_apps, editor)
    assert reloptions() == {}
    with connection.schema_editor() as editor:
        migration.set_options(installed_apps, editor)
    assert reloptions() == migration.TASK_TABLE_OPTIONS


@pytest.mark.skipif(POSTGRES, reason="the SQLite branch")
def test_the_migration_runs_no_sql_on_sqlite() -> None:
    class Editor:
        connection = connection

        def execute(self, sql: str, params: Any = None) -> None:
            raise AssertionError(f"no SQL on SQLite, got {sql!r}")

    migration.set_options(installed_apps, Editor())
    migration.reset_options(installed_apps, Editor())


# --- the workers' vacuum ------------------------------------------------------------------------


def stats(live: int, dead: int, **fields: Any) -> store.TableStats:
    values = {"since_vacuum": None, "vacuums": 0, "modified": 0, "analyzed": True, "analyzes": 0, **fields}
    return store.TableStats(live=live, dead=dead, **values)


def test_a_vacuum_is_due_past_the_threshold_and_the_gap() -> None:
    threshold = maintenance.VACUUM_MIN_DEAD + maintenance.VACUUM_SCALE * 1_000_000
    below = stats(1_000_000 - 60_000, 60_000)
    above = stats(1_000_000 - 80_000, 80_000)
    assert below.dead < threshold <= above.dead
    assert store.due_work(below, min_gap=10) == (False, False)
    assert store.due_work(above, min_gap=10) == (True, False)
    recent = stats(above.live, above.dead, since_vacuum=3.0)
    assert store.due_work(recent, min_gap=10) == (False, False)
    assert store.due_work(recent, min_gap=2) == (True, False)


def test_an_analyze_is_due_once_enough_rows_changed_and_with_the_first_vacuum() -> None:
    threshold = maintenance.ANALYZE_MIN + maintenance.ANALYZE_SCALE * 1_000_000
    assert store.due_work(stats(1_000_000, 0, modified=int(threshold) - 1), min_gap=10) == (False, False)
    assert store.due_work(stats(1_000_000, 0, modified=int(threshold)), min_gap=10) == (False, True)
    # Never analyzed: a vacuum would give the planner a row count to scale its default guesses
    # by (a claim then sorted every pending row), so the first one analyzes too.
    never = stats(1_000_000 - 80_000, 80_000, analyzed=False)
    assert store.due_work(never, min_gap=10) == (True, True)
    assert store.due_work(stats(1000, 0, analyzed=False), min_gap=10) == (False, False)


@pytest.fixture
def low_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thresholds a test reaches with a few hundred tasks instead of tens of thousands."""
    monkeypatch.setattr(maintenance, "VACUUM_MIN_DEAD", 100)
    monkeypatch.setattr(maintenance, "ANALYZE_MIN", 100)


async def _vacuum_worker(make_worker: Callable[..., Any]) -> AsyncTaskWorker:
    """A worker whose vacuum loop never fires by itself: the test calls ``vacuum`` when it wants."""
    with override_settings(ATW={"VACUUM_INTERVAL": 0}):
        worker: AsyncTaskWorker = await make_worker(max_workers=50)
    return worker


def _claim_and_complete(worker_id: str, count: int) -> None:
    """Claim ``count`` tasks of the test's queue for ``worker_id`` and store them completed, as
    a worker does; then have this session report its statistics as soon as it is idle (a
    session otherwise reports at most once a second, and may wait 10 s when idle)."""
    claimed = store.claim_batch(worker_id, [QUEUE], count)
    assert len(claimed) == count
    done = [Outcome(c.id, TaskStatus.COMPLETED, 1.0, "null", attempt=c.attempts) for c in claimed]
    assert len(store.write_batch(worker_id, [], done).outcomes) == count
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")


async def _leave_dead_rows(worker: AsyncTaskWorker, count: int) -> store.TableStats:
    """``count`` tasks claimed and completed (two dead rows each), counted in the statistics."""
    await aenqueue_many("noop", [()] * count, queue=QUEUE)  # a queue the worker does not claim from
    await sync_to_async(_claim_and_complete)(worker.worker_id, count)
    stats: store.TableStats = await wait_until(
        sync_to_async(store.table_stats),
        lambda stats: stats is not None and stats.dead >= 2 * count,
    )
    return stats


async def _manual_vacuums() -> int:
    found = await sync_to_async(store.table_stats)()
    assert found is not None
    return found.vacuums


@PG_ONLY
@pytest.mark.django_db(transaction=True)
async def test_the_housekeeper_analyzes_alone_after_many_inserts(
    make_worker: Callable[..., Any], low_threshold: None
) -> None:
    """A bulk enqueue changes what the planner should expect of the table, and leaves no dead rows."""
    worker = await _vacuum_worker(make_worker)

    def insert_and_report(count: int) -> None:
        enqueue_many("noop", [()] * count, queue=QUEUE)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")

    await sync_to_async(insert_and_report)(300)
    before: store.TableStats = await wait_until(
        sync_to_async(store.table_stats), lambda found: found is not None and found.modified >= 300
    )
    assert not store.vacuum_due(before, min_gap=0)

    done = await worker._runtime.housekeeper.vacuum(min_gap=0)

    assert done is not None and done.analyzed and not done.vacuumed
    after = await sync_to_async(store.table_stats)()
    assert after is not None and after.analyzes == before.analyzes + 1 and after.analyzed
    assert after.vacuums == before.vacuums and after.modified < before.modified


@PG_ONLY
@pytest.mark.django_db(transaction=True)
async def test_the_housekeeper_vacuums_once_dead_rows_pass_the_threshold(
    make_worker: Callable[..., Any], low_threshold: None
) -> None:
    worker = await _vacuum_worker(make_worker)
    housekeeper = worker._runtime.housekeeper
    assert not any(task.get_name().startswith("atw-vacuum-") for task in housekeeper.side_tasks())
    before = await _leave_dead_rows(worker, 300)

    vacuumed = await housekeeper.vacuum(min_gap=0)

    assert vacuumed is not None and vacuumed.vacuumed
    assert vacuumed.dead_before >= 600 and vacuumed.dead_after < vacuumed.dead_before
    after = await sync_to_async(store.table_stats)()
    assert after is not None
    assert after.vacuums == before.vacuums + 1 and after.dead < before.dead
    assert after.since_vacuum is not None and after.since_vacuum < 60
    # Just vacuumed: within the gap, nothing is due whatever the counts.
    assert await housekeeper.vacuum(min_gap=60) is None


@PG_ONLY
@pytest.mark.django_db(transaction=True)
async def test_the_housekeeper_leaves_the_table_alone_below_the_threshold(
    make_worker: Callable[..., Any],
) -> None:
    worker = await _vacuum_worker(make_worker)
    stats = await _leave_dead_rows(worker, 50)
    assert stats.dead < maintenance.VACUUM_MIN_DEAD
    assert await worker._runtime.housekeeper.vacuum(min_gap=0) is None
    assert await _manual_vacuums() == stats.vacuums


@PG_ONLY
@pytest.mark.django_db(transaction=True)
async def test_no_vacuum_while_another_worker_holds_the_vacuum_lock(
    make_worker: Callable[..., Any], low_threshold: None
) -> None:
    worker = await _vacuum_worker(make_worker)
    housekeeper = worker._runtime.housekeeper
    stats = await _leave_dead_rows(worker, 300)

    def advisory(function: str) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {function}(%s)", [store.VACUUM_LOCK])
            return bool(cursor.fetchone()[0])

    # The lock as another worker's vacuum holds it: on another session (sync_to_async's thread).
    assert await sync_to_async(advisory)("pg_try_advisory_lock")
    try:
        assert await housekeeper.vacuum(min_gap=0) is None
        assert await _manual_vacuums() == stats.vacuums
    finally:
        assert await sync_to_async(advisory)("pg_advisory_unlock")
    assert await housekeeper.vacuum(min_gap=0) is not None
    assert await _manual_vacuums() == stats.vacuums + 1


@PG_ONLY
@pytest.mark.django_db(transaction=True)
async def test_a_stop_cancels_the_vacuum_under_way(
    make_worker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vacuum's statement is cancelled on the server, so a stop never waits for it."""
    worker = await _vacuum_worker(make_worker)
    monkeypatch.setattr(store, "maintenance_due", lambda stats, min_gap: True)
    marker = "atw-test-long-vacuum"

    def long_vacuum(min_gap: float) -> None:
        with connection.cursor() as cursor:  # stands in for a VACUUM of a very large table
            cursor.execute(f"SELECT pg_sleep(600) /* {marker} */")

    monkeypatch.setattr(store, "vacuum_if_due", long_vacuum)

    def running() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
                "AND pid <> pg_backend_pid()",
                [f"%{marker}%"],
            )
            return int(cursor.fetchone()[0])

    vacuum = asyncio.create_task(worker._runtime.housekeeper.vacuum(min_gap=0))
    await wait_until(sync_to_async(running), lambda count: count == 1)
    vacuum.cancel()
    async with asyncio.timeout(30):  # a hang (the statement not cancelled) fails instead
        with pytest.raises(asyncio.CancelledError):
            await vacuum
    assert await sync_to_async(running)() == 0


@pytest.mark.skipif(POSTGRES, reason="the SQLite branch")
@pytest.mark.django_db(transaction=True)
async def test_no_vacuum_loop_and_nothing_to_vacuum_on_sqlite(make_worker: Callable[..., Any]) -> None:
    with override_settings(ATW={"VACUUM_INTERVAL": 5}):
        worker: AsyncTaskWorker = await make_worker()
    housekeeper = worker._runtime.housekeeper
    assert not any(task.get_name().startswith("atw-vacuum-") for task in housekeeper.side_tasks())
    assert await sync_to_async(store.table_stats)() is None
    assert await housekeeper.vacuum(min_gap=0) is None


# --- check W006 -----------------------------------------------------------------------------------


def server_setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        return str(cursor.fetchone()[0])


@pytest.mark.django_db
def test_w006_queries_only_when_databases_are_checked() -> None:
    with CaptureQueriesContext(connection) as captured:
        assert checks.check_autovacuum(databases=None) == []
        assert checks.check_autovacuum(databases=["other"]) == []
    assert len(captured) == 0
    # Registered as a database check: Django's own run leaves it out unless asked for databases.
    assert "django_atw.W006" not in [m.id for m in django_checks.run_checks()]


@pytest.mark.skipif(POSTGRES, reason="the SQLite branch")
@pytest.mark.django_db
def test_w006_says_nothing_on_sqlite() -> None:
    with CaptureQueriesContext(connection) as captured:
        assert checks.check_autovacuum(databases=[DEFAULT_DB_ALIAS]) == []
    assert len(captured) == 0


@PG_ONLY
@pytest.mark.django_db
def test_w006_follows_the_servers_autovacuum_setting() -> None:
    """This server's real setting: the test machine runs PostgreSQL with autovacuum off."""
    found = django_checks.run_checks(databases=[DEFAULT_DB_ALIAS], tags=[django_checks.Tags.database])
    ids = [message.id for message in found]
    if server_setting("autovacuum") == "on" and server_setting("track_counts") == "on":
        assert "django_atw.W006" not in ids
        return
    (warning,) = [message for message in found if message.id == "django_atw.W006"]
    assert isinstance(warning, django_checks.Warning)
    assert "is off" in warning.msg and 'ATW["VACUUM_INTERVAL"]' in warning.msg
    assert "autovacuum = on" in (warning.hint or "")


@PG_ONLY
@pytest.mark.django_db
def test_w006_skips_an_unreachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    settings_dict = {**connections[DEFAULT_DB_ALIAS].settings_dict, "HOST": "127.0.0.1", "PORT": "1"}
    unreachable = connections[DEFAULT_DB_ALIAS].__class__(settings_dict, alias="atw-unreachable")
    monkeypatch.setattr(checks, "_task_database", lambda: unreachable)
    try:
        assert checks.check_autovacuum(databases=[DEFAULT_DB_ALIAS]) == []
    finally:
        unreachable.close()


@pytest.mark.parametrize(
    ("autovacuum", "track_counts", "interval", "says"),
    [
        ("off", "on", 10.0, "workers vacuum and analyze the task table themselves"),
        ("off", "on", 0.0, 'ATW["VACUUM_INTERVAL"] = 0'),
        ("on", "off", 10.0, "cannot vacuum the task table either"),
        ("off", "off", 10.0, "autovacuum and track_counts are off"),
    ],
)
def test_w006_explains_what_is_off_and_what_the_workers_do(
    autovacuum: str, track_counts: str, interval: float, says: str
) -> None:
    (warning,) = checks.autovacuum_warnings(autovacuum, track_counts, interval)
    assert warning.id == "django_atw.W006"
    assert says in warning.msg


def test_w006_is_quiet_when_autovacuum_runs() -> None:
    assert checks.autovacuum_warnings("on", "on", 10.0) == []
    assert checks.autovacuum_warnings("on", "on", 0.0) == []


ROLE = "atw_test_not_owner"


@PG_ONLY
@pytest.mark.django_db(transaction=True)
def test_the_statistics_say_whether_this_role_may_vacuum_the_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP ROLE IF EXISTS {ROLE}")
        cursor.execute(f"CREATE ROLE {ROLE} NOLOGIN")
        try:
            cursor.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ROLE}")
            owner = store.table_stats()
            cursor.execute(f"SET ROLE {ROLE}")
            try:
                other = store.table_stats()
            finally:
                cursor.execute("RESET ROLE")
        finally:
            cursor.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ROLE}")
            cursor.execute(f"DROP ROLE {ROLE}")
    assert owner is not None and owner.maintainable
    assert other is not None and not other.maintainable


@PG_ONLY
@pytest.mark.django_db(transaction=True)
async def test_a_role_that_may_not_vacuum_logs_it_once_and_tries_no_vacuum(
    make_worker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # PostgreSQL skips the table with only a warning to the client: before, the workers opened a
    # connection and "vacuumed" every interval, silently doing nothing.
    worker = await _vacuum_worker(make_worker)
    due = stats(1_000, 500_000, maintainable=False)
    monkeypatch.setattr(store, "table_stats", lambda: due)
    tried: list[float] = []
    monkeypatch.setattr(store, "vacuum_if_due", lambda min_gap: tried.append(min_gap))
    with caplog.at_level(logging.WARNING, logger="django_atw.engine.housekeeping"):
        assert await worker._runtime.housekeeper.vacuum(min_gap=0) is None
        assert await worker._runtime.housekeeper.vacuum(min_gap=0) is None
    assert tried == []
    told = [r for r in caplog.records if "may not run them" in r.getMessage()]
    assert len(told) == 1
