"""Settings for the test suite: SQLite on disk by default, PostgreSQL with ATW_TEST_DATABASE=postgres."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_atw",
    "tests.sampleapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASE_KIND = os.environ.get("ATW_TEST_DATABASE", "sqlite")
if DATABASE_KIND == "postgres":
    url = urlparse(os.environ.get("ATW_TEST_POSTGRES", ""))
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": (url.path or "/atw").lstrip("/") or "atw",
            "USER": url.username or "postgres",
            "PASSWORD": url.password or "",
            "HOST": url.hostname or "127.0.0.1",
            "PORT": str(url.port or 5432),
            "TEST": {"NAME": f"test_atw_{os.getpid()}"},
        }
    }
else:
    # A file, not :memory:, so the worker's own thread and subprocesses see the same database.
    default_path = Path(tempfile.gettempdir()) / f"atw-test-{os.getpid()}.sqlite3"
    test_db = os.environ.get("ATW_TEST_SQLITE", str(default_path))
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": test_db,
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "TEST": {"NAME": test_db},
        }
    }

# Subprocesses started by tests (workers, enqueuers) point at the parent's test database.
if os.environ.get("ATW_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["ATW_TEST_DB_NAME"]

ATW = {
    "POLL_INTERVAL": 0.2,
    "CLEANUP_INTERVAL": 0,
    # Multi-process tests shorten the lease so crash recovery happens within the test.
    "WORKER_LEASE": float(os.environ.get("ATW_TEST_WORKER_LEASE", "30")),
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_atw": {"handlers": ["console"], "level": "WARNING"}},
}

# Django 6's django.tasks (read only there): tests/backend runs @task functions on django-atw.
TASKS = {
    "default": {"BACKEND": "django_atw.backend.TaskBackend", "QUEUES": ["default", "other"]},
}
