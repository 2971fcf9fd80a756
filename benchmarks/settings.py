"""Django settings for one benchmark child process; the database comes from environment variables.

- ``ATW_BENCH_DB``: ``sqlite`` (default) or ``postgres``.
- ``ATW_BENCH_SQLITE_PATH``: the SQLite file (the child creates it in a fresh temporary directory).
- ``ATW_BENCH_POSTGRES_URL``: ``postgresql://user:password@host:port/database`` of a fresh database.

SQLite runs in WAL mode with ``synchronous=NORMAL`` and ``BEGIN IMMEDIATE`` transactions (the
set-up the project recommends); PostgreSQL runs with the server's stock settings.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

SECRET_KEY = "benchmarks-only-not-secret"
DEBUG = False  # DEBUG=True would keep every query in memory and slow everything down.
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_atw",
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASE_KIND = os.environ.get("ATW_BENCH_DB", "sqlite")
DATABASES: dict[str, dict[str, Any]]
if DATABASE_KIND == "postgres":
    _url = urlsplit(os.environ["ATW_BENCH_POSTGRES_URL"])
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _url.path.lstrip("/"),
            "USER": unquote(_url.username or "postgres"),
            "PASSWORD": unquote(_url.password or ""),
            "HOST": _url.hostname or "127.0.0.1",
            "PORT": str(_url.port or 5432),
        }
    }
elif DATABASE_KIND == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["ATW_BENCH_SQLITE_PATH"],
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
else:
    raise ValueError(f"ATW_BENCH_DB must be 'sqlite' or 'postgres', got {DATABASE_KIND!r}.")

# The result cache's django backend uses the "atw" alias: Redis when ATW_BENCH_REDIS is set.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "atw": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["ATW_BENCH_REDIS"]}
        if os.environ.get("ATW_BENCH_REDIS")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "atw-bench"}
    ),
}

# The engine's defaults, except no retention cleanup during a run.
ATW = {"CLEANUP_INTERVAL": 0}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
