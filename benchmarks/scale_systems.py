"""The systems the scale suite compares, behind one interface: store work, start worker processes
as their users do, and read back when the work was done.

django-atw's system needs Django set up first (``databases.setup_django``); each peer imports its
library only when its system is built, so one child process loads one library.
"""

from __future__ import annotations

import abc
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import redis

from . import scale_tasks

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Tasks one django-atw worker process runs at once: the faster of the in-process drain's two
# settings (see the main table, W1b).
ATW_CONCURRENCY = 100
# procrastinate's jobs are fetched one per query; more concurrency keeps more fetches in flight.
PROCRASTINATE_CONCURRENCY = 10
# Huey: worker threads in each consumer process (a task's Redis round trips overlap; in the
# smoke runs 4 drained no slower than 1).
HUEY_THREADS = 4
# Celery: how many messages each pool process reserves ahead (Celery's default is 4).
CELERY_PREFETCH = 4
# Celery's threads pool: threads in each worker process.
CELERY_THREADS = 4
CELERY_OPTIONS = [
    f"--prefetch-multiplier={CELERY_PREFETCH}",
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
    "--loglevel=WARNING",
]


class System(abc.ABC):
    """One task queue under test, in this child process, with its worker processes' command lines."""

    name: ClassVar[str]
    label: ClassVar[str]
    redis_based: ClassVar[bool] = False
    # The name the tasks write their marks under (``scale_tasks.key``).
    marks: ClassVar[str] = ""

    @property
    def marks_name(self) -> str:
        return self.marks or self.name

    def __init__(self, redis_url: str, postgres_url: str) -> None:
        self.redis_url = redis_url
        self.postgres_url = postgres_url
        self.redis = redis.Redis.from_url(redis_url)

    @contextlib.contextmanager
    def prepared(self) -> Iterator[None]:
        """Create what the system stores its queue in; remove it all at the end."""
        self._clear_marks()
        try:
            yield
        finally:
            self._clear_marks()

    def _clear_marks(self) -> None:
        for found in self.redis.scan_iter(match=scale_tasks.key(self.marks_name, "*")):
            self.redis.delete(found)

    def reset(self) -> None:
        """An empty queue and no marks, before each workload."""
        self._clear_marks()

    @abc.abstractmethod
    def store_noops(self, count: int) -> None:
        """Queue ``count`` no-op tasks (no worker runs yet)."""

    @abc.abstractmethod
    def worker_commands(self, processes: int) -> list[list[str]]:
        """The command lines that start ``processes`` worker processes."""

    def worker_environment(self) -> dict[str, str]:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        return {"PYTHONPATH": path, scale_tasks.REDIS_URL_ENV: self.redis_url}

    @classmethod
    @abc.abstractmethod
    def describe(cls) -> str:
        """How the workers run, for the report (Markdown)."""

    @abc.abstractmethod
    def drained(self, expected: int) -> bool:
        """Whether all ``expected`` no-ops have finished and their outcome is stored."""

    @abc.abstractmethod
    def drain_span(self, expected: int) -> float:
        """Seconds from the first no-op's start to the last one's end; checks all ran exactly once."""

    @abc.abstractmethod
    def add_probe(self, token: str) -> None:
        """Add one wake-up probe task carrying ``token``."""

    def wait_probe(self, timeout: float) -> tuple[str, float]:
        """The next probe's token and the ``time.time()`` at its first line."""
        found: Any = self.redis.blpop([scale_tasks.key(self.marks_name, "starts")], timeout=timeout)
        if found is None:
            raise TimeoutError(f"{self.label}: no probe task started within {timeout:g} s")
        token, _, started = found[1].decode().partition(" ")
        return token, float(started)

    def _marked_span(self, expected: int) -> float:
        """The span from the marks ``scale_tasks.note_done`` leaves (Huey, Celery)."""
        done, first, last = self.redis.mget(
            [scale_tasks.key(self.marks_name, name) for name in ("done", "first_start", "last_end")]
        )
        if int(done or 0) != expected or first is None or last is None:
            raise RuntimeError(f"{self.label}: {int(done or 0)} no-ops finished, expected {expected}")
        return float(last) - float(first)

    def _marked_done(self, expected: int) -> bool:
        return int(self.redis.get(scale_tasks.key(self.marks_name, "done")) or 0) >= expected


# --- django-atw ----------------------------------------------------------------------------------


class Atw(System):
    """django-atw on PostgreSQL: ``manage.py atw_worker`` processes on the child's fresh database."""

    name = "atw"
    label = "django-atw"

    def reset(self) -> None:
        from .run_atw import clear_tasks

        super().reset()
        clear_tasks()

    def store_noops(self, count: int) -> None:
        from django_atw import enqueue_many

        enqueue_many(scale_tasks.atw_noop, [() for _ in range(count)])

    def worker_commands(self, processes: int) -> list[list[str]]:
        command = [sys.executable, "-m", "django", "atw_worker", "--concurrency", str(ATW_CONCURRENCY)]
        if self._has_log_level():
            command += ["--log-level", "warning"]
        return [command] * processes

    @staticmethod
    def _has_log_level() -> bool:
        """Whether this version of ``atw_worker`` takes ``--log-level`` (info logs every task)."""
        from django.core.management import load_command_class

        parser = load_command_class("django_atw", "atw_worker").create_parser("manage.py", "atw_worker")
        return "--log-level" in parser.format_help()

    def worker_environment(self) -> dict[str, str]:
        # The child's own settings: benchmarks.settings on the fresh database.
        names = ("DJANGO_SETTINGS_MODULE", "ATW_BENCH_DB", "ATW_BENCH_POSTGRES_URL")
        return {**super().worker_environment(), **{name: os.environ[name] for name in names}}

    @classmethod
    def describe(cls) -> str:
        return (
            f"`python -m django atw_worker --concurrency {ATW_CONCURRENCY} --log-level warning` per "
            "process (`manage.py atw_worker`; `--log-level` where the command has it: no log line per "
            "task, like the peers), other options default"
        )

    def drained(self, expected: int) -> bool:
        from .run_atw import _has_unfinished

        return not _has_unfinished()

    def drain_span(self, expected: int) -> float:
        from .run_atw import _stored_span

        count, span = _stored_span()
        if count != expected:
            raise RuntimeError(f"{self.label}: {count} completed rows, expected {expected}")
        return span

    def add_probe(self, token: str) -> None:
        from django_atw import enqueue

        enqueue(scale_tasks.atw_probe, token)


class AtwSqlite(Atw):
    """django-atw on SQLite (a file in the child's temporary folder), no channel layer: worker
    processes on one machine, woken by the doorbell."""

    name = "atw-sqlite"
    label = "django-atw (SQLite)"
    marks = "atw"  # the tasks of scale_tasks mark under this name

    def worker_environment(self) -> dict[str, str]:
        names = ("DJANGO_SETTINGS_MODULE", "ATW_BENCH_DB", "ATW_BENCH_SQLITE_PATH")
        return {**System.worker_environment(self), **{name: os.environ[name] for name in names}}

    @classmethod
    def describe(cls) -> str:
        return f"as django-atw, on a SQLite file (WAL) and no channel layer: {Atw.describe()}"


# --- Huey ----------------------------------------------------------------------------------------


class Huey(System):
    """Huey on Redis: ``huey_consumer`` processes with a few worker threads each.

    One consumer process per worker process, each taking tasks from Redis itself, like the other
    systems' worker processes (``-k process`` would fork the workers under a scheduler process).
    """

    name = "huey"
    label = "Huey"
    redis_based = True

    def __init__(self, redis_url: str, postgres_url: str) -> None:
        super().__init__(redis_url, postgres_url)
        os.environ[scale_tasks.REDIS_URL_ENV] = redis_url
        from . import peer_huey

        self.app = peer_huey

    @contextlib.contextmanager
    def prepared(self) -> Iterator[None]:
        with super().prepared():
            try:
                yield
            finally:
                self.app.huey.flush()

    def reset(self) -> None:
        super().reset()
        self.app.huey.flush()

    def store_noops(self, count: int) -> None:
        for _ in range(count):
            self.app.noop(count)

    def worker_commands(self, processes: int) -> list[list[str]]:
        command = [str(BIN / "huey_consumer"), "benchmarks.peer_huey.huey", "-k", "thread"]
        command += ["-w", str(HUEY_THREADS), "--quiet"]
        return [command] * processes

    @classmethod
    def describe(cls) -> str:
        return (
            f"`huey_consumer benchmarks.peer_huey.huey -k thread -w {HUEY_THREADS} --quiet` per process "
            "(no log line per task, like the others), results off"
        )

    def drained(self, expected: int) -> bool:
        return self._marked_done(expected)

    def drain_span(self, expected: int) -> float:
        return self._marked_span(expected)

    def add_probe(self, token: str) -> None:
        self.app.probe(token)


# --- Celery --------------------------------------------------------------------------------------


class Celery(System):
    """Celery on a Redis broker: one ``celery worker`` with a prefork pool of N processes
    (Celery's default pool)."""

    name = "celery"
    label = "Celery prefork"
    redis_based = True
    marks = "celery"

    def __init__(self, redis_url: str, postgres_url: str) -> None:
        super().__init__(redis_url, postgres_url)
        os.environ[scale_tasks.REDIS_URL_ENV] = redis_url
        from . import peer_celery

        self.app = peer_celery

    def _broker_keys(self) -> list[bytes]:
        """The broker's keys for the benchmark's queue, unacknowledged messages and control."""
        queue = self.app.QUEUE
        patterns = [f"{queue}*", f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}", "unacked*"]
        patterns += ["_kombu.binding.celery.pidbox", "_kombu.binding.celeryev", "*.reply.celery.pidbox"]
        return [found for pattern in patterns for found in self.redis.scan_iter(match=pattern)]

    def _clear_broker(self) -> None:
        for found in self._broker_keys():
            self.redis.delete(found)
        # kombu keeps one sorted set of binding deadlines for every queue and exchange.
        deadlines = "_kombu.binding_deadlines"
        self.redis.zrem(deadlines, self.app.QUEUE, "celery.pidbox", "celeryev")
        if not self.redis.zcard(deadlines):
            self.redis.delete(deadlines)

    @contextlib.contextmanager
    def prepared(self) -> Iterator[None]:
        with super().prepared():
            self._clear_broker()
            try:
                yield
            finally:
                self._clear_broker()

    def reset(self) -> None:
        super().reset()
        self._clear_broker()

    def store_noops(self, count: int) -> None:
        with self.app.app.producer_or_acquire() as producer:
            for _ in range(count):
                self.app.noop.apply_async((count,), producer=producer)

    def worker_commands(self, processes: int) -> list[list[str]]:
        command = [str(BIN / "celery"), "-A", "benchmarks.peer_celery", "worker"]
        return [[*command, "--pool=prefork", f"--concurrency={processes}", *CELERY_OPTIONS]]

    @classmethod
    def describe(cls) -> str:
        return (
            "one `celery -A benchmarks.peer_celery worker --pool=prefork --concurrency=N "
            f"{' '.join(CELERY_OPTIONS)}` (N pool processes under one parent), `task_ignore_result=True`"
        )

    def drained(self, expected: int) -> bool:
        return self._marked_done(expected)

    def drain_span(self, expected: int) -> float:
        return self._marked_span(expected)

    def add_probe(self, token: str) -> None:
        self.app.probe.delay(token)


class CeleryThreads(Celery):
    """Celery on a Redis broker: N ``celery worker`` processes, each with a pool of threads."""

    name = "celery-threads"
    label = "Celery threads"

    def worker_commands(self, processes: int) -> list[list[str]]:
        command = [str(BIN / "celery"), "-A", "benchmarks.peer_celery", "worker"]
        options = ["--pool=threads", f"--concurrency={CELERY_THREADS}", *CELERY_OPTIONS]
        return [[*command, f"--hostname=bench{i}@%h", *options] for i in range(processes)]

    @classmethod
    def describe(cls) -> str:
        return (
            "`celery -A benchmarks.peer_celery worker --pool=threads "
            f"--concurrency={CELERY_THREADS} {' '.join(CELERY_OPTIONS)}` per process, "
            "`task_ignore_result=True`"
        )


# --- procrastinate -------------------------------------------------------------------------------


class Procrastinate(System):
    """procrastinate on PostgreSQL (a database of its own), LISTEN/NOTIFY on: ``procrastinate worker``."""

    name = "procrastinate"
    label = "procrastinate"

    def __init__(self, redis_url: str, postgres_url: str) -> None:
        super().__init__(redis_url, postgres_url)
        self.database = f"atw_bench_procrastinate_{os.getpid()}"
        self.database_url = urlsplit(postgres_url)._replace(path=f"/{self.database}").geturl()
        os.environ[scale_tasks.REDIS_URL_ENV] = redis_url
        os.environ["ATW_BENCH_PROCRASTINATE_URL"] = self.database_url
        from . import peer_procrastinate

        self.app = peer_procrastinate

    def _admin(self, statement: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL(statement).format(sql.Identifier(self.database)))

    def _query(self, statement: str) -> tuple[Any, ...]:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cursor = conn.execute(statement)
            row = cursor.fetchone() if cursor.description else ()
        assert row is not None
        return tuple(row)

    @contextlib.contextmanager
    def prepared(self) -> Iterator[None]:
        with super().prepared():
            self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            self._admin("CREATE DATABASE {}")
            try:
                with self.app.app.open():
                    self.app.app.schema_manager.apply_schema()
                    yield
            finally:
                self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)")

    def reset(self) -> None:
        super().reset()
        self._query("TRUNCATE procrastinate_jobs, procrastinate_events RESTART IDENTITY CASCADE")

    def store_noops(self, count: int) -> None:
        self.app.noop.batch_defer(*[{} for _ in range(count)])

    def worker_commands(self, processes: int) -> list[list[str]]:
        command = [
            str(BIN / "procrastinate"),
            "--app=benchmarks.peer_procrastinate.app",
            "worker",
            f"--concurrency={PROCRASTINATE_CONCURRENCY}",
        ]
        return [command] * processes

    @classmethod
    def describe(cls) -> str:
        return (
            "`procrastinate --app=benchmarks.peer_procrastinate.app worker "
            f"--concurrency={PROCRASTINATE_CONCURRENCY}` per process (LISTEN/NOTIFY on, the default)"
        )

    def drained(self, expected: int) -> bool:
        (busy,) = self._query(
            "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))"
        )
        return not busy

    def drain_span(self, expected: int) -> float:
        succeeded, span = self._query(
            "SELECT (SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'), "
            "EXTRACT(EPOCH FROM max(at) FILTER (WHERE type = 'succeeded') "
            "- min(at) FILTER (WHERE type = 'started')) FROM procrastinate_events"
        )
        if succeeded != expected:
            raise RuntimeError(f"{self.label}: {succeeded} jobs succeeded, expected {expected}")
        return float(span)

    def add_probe(self, token: str) -> None:
        self.app.probe.defer(token=token)


SYSTEMS: dict[str, type[System]] = {
    system.name: system for system in (Atw, AtwSqlite, Huey, Celery, CeleryThreads, Procrastinate)
}
