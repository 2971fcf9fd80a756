"""Settings of the django-atw example project: a small site to enqueue demo tasks and watch them run.

Run it with ``scripts/demo.sh``, or by hand: ``python manage.py migrate``, then ``python manage.py
runserver`` (served by Daphne) or ``daphne example_project.asgi:application``: the worker runs inside
the web server. With ``ATW_REDIS_URL`` set (``redis://127.0.0.1:6379/0``), events travel over Redis
(channels_redis), so workers in other processes reach the same browsers.
Development settings only: never deploy them as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent


def env_flag(name: str, default: bool) -> bool:
    """Read a boolean from the environment: 1/true/yes/on or 0/false/no/off."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-atw-example-project-only-for-local-development"
)
DEBUG = env_flag("DJANGO_DEBUG", True)
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    # First, so that ``runserver`` serves the ASGI application with Daphne.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_atw",
    "example_project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
ASGI_APPLICATION = "example_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The worker process and the web process both write to this database at the same time.
# - transaction_mode IMMEDIATE takes SQLite's write lock when a transaction begins, so a
#   transaction never has to upgrade a read lock to a write lock halfway through, which is what
#   fails at once with "database is locked" instead of waiting for the timeout.
# - timeout: seconds a writer waits for the other process's write to finish.
# - WAL journal mode lets readers (the task list) run while a write is in progress;
#   synchronous=NORMAL is durable enough in WAL mode and much faster.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ATW_EXAMPLE_DB", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []  # the demo user's password is "demo"
LOGIN_URL = "demo:login"
LOGIN_REDIRECT_URL = "demo:index"
LOGOUT_REDIRECT_URL = "demo:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Live progress: Redis when ATW_REDIS_URL is set, so workers in other processes reach the
# browsers; otherwise the in-memory layer (the web process relays other processes' changes).
if os.environ.get("ATW_REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout above channels_redis's 5 s blocking read (redis-py 8 defaults to 5 s).
            "CONFIG": {
                "hosts": [{"address": os.environ["ATW_REDIS_URL"], "socket_timeout": 30}],
                "capacity": 1000,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    }

ATW = {
    "MAX_WORKERS": 10,
    # The web process cannot wake a worker in another process yet: the worker finds new tasks
    # and cancel requests when it polls, so poll often for a lively demo.
    "POLL_INTERVAL": 0.5,
    "PROGRESS_INTERVAL": 0.2,
    "TASK_RETENTION_DAYS": 7,
    # Results are cached (in the database): enqueue an equal task again and it completes at once,
    # marked "from cache" on the demo page.
    "CACHE": {"ENABLED": True},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "console": {"format": "{asctime} {levelname:<7} {name}: {message}", "style": "{"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "console"},
    },
    "loggers": {
        "django_atw": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
