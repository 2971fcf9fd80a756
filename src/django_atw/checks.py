"""System checks: configuration problems reported by ``manage.py check`` and at start-up."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from .conf import load
from .exceptions import ConfigurationError


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001: ``settings.ATW`` must validate."""
    try:
        load(getattr(settings, "ATW", None))
    except ConfigurationError as exc:
        return [
            Error(
                str(exc),
                hint="Fix or remove the named key; see the settings table in django-atw's README.",
                id="django_atw.E001",
            )
        ]
    return []


@register()
def check_sqlite_mode(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W001: SQLite needs IMMEDIATE transactions, or workers hit 'database is locked'."""
    return sqlite_mode_warnings(settings.DATABASES.get("default", {}))


def sqlite_mode_warnings(db: dict[str, Any]) -> list[CheckMessage]:
    """Return W001 if ``db`` (a DATABASES entry) is SQLite without IMMEDIATE transactions."""
    if "sqlite3" not in db.get("ENGINE", ""):
        return []
    options = db.get("OPTIONS", {})
    if str(options.get("transaction_mode", "")).upper() == "IMMEDIATE":
        return []
    return [
        Warning(
            "The default database is SQLite without transaction_mode='IMMEDIATE': a worker and a web "
            "request writing at once can fail with 'database is locked'.",
            hint="Set DATABASES['default']['OPTIONS'] = {'transaction_mode': 'IMMEDIATE', "
            "'init_command': 'PRAGMA journal_mode=WAL;'}.",
            id="django_atw.W001",
        )
    ]
