"""A fresh, empty database for one child process, and Django set up on it.

Imports nothing from Django at module level: ``setup_django`` must run first.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit


def _drop_postgres(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        # FORCE ends connections still open in worker threads (PostgreSQL 13+).
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _close_django_connections() -> None:
    from django.apps import apps
    from django.conf import settings

    if settings.configured:
        from django.db import connections

        connections.close_all()
    if apps.ready:
        # django_atw's own threads (group commit, NOTIFY) hold connections too; closing them
        # here also sends what the notifier holds before the database is gone.
        from django_atw import adding, notifier

        adding.close_group_connection()
        notifier.NOTIFIER.close()


@contextlib.contextmanager
def fresh_database(kind: str, admin_url: str) -> Iterator[dict[str, str]]:
    """Create an empty database, yield the environment for ``benchmarks.settings``, then remove it.

    SQLite: a file in a new temporary directory. PostgreSQL: ``atw_bench_<pid>`` created through
    ``admin_url`` (any database the user may connect to) and dropped at the end.
    """
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="atw-bench-") as tmp:
            try:
                yield {"ATW_BENCH_DB": "sqlite", "ATW_BENCH_SQLITE_PATH": str(Path(tmp) / "bench.sqlite3")}
            finally:
                _close_django_connections()
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}")
    import psycopg
    from psycopg import sql

    name = f"atw_bench_{os.getpid()}"
    _drop_postgres(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = urlsplit(admin_url)._replace(path=f"/{name}").geturl()
        yield {"ATW_BENCH_DB": "postgres", "ATW_BENCH_POSTGRES_URL": url}
    finally:
        _close_django_connections()
        _drop_postgres(admin_url, name)


def setup_django(environment: dict[str, str]) -> None:
    """Point ``benchmarks.settings`` at the database, set Django up and create the tables."""
    os.environ.update(environment)
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def postgres_version(admin_url: str) -> str:
    """The server's version string, e.g. ``15.20 (Debian 15.20-0+deb12u1)``."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def postgres_setting(admin_url: str, name: str) -> str:
    """A server setting as ``SHOW`` gives it, e.g. ``autovacuum`` -> ``off``."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
    return str(row[0]) if row else "?"
