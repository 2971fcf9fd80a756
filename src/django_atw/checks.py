"""System checks: configuration problems reported by ``manage.py check`` and at start-up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from .conf import get_settings, load
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


# The SQLite options the README's settings show (tests/test_checks.py holds them equal):
# IMMEDIATE transactions make a worker and web requests wait for each other instead of failing
# with "database is locked"; WAL lets readers run during writes.
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}


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
            hint=f"Set DATABASES['default']['OPTIONS'] = {SQLITE_OPTIONS!r} (README, 'Install').",
            id="django_atw.W001",
        )
    ]


def _task_database() -> BaseDatabaseWrapper:
    """The connection the store runs task SQL on (``django.db.connection``: the default alias)."""
    return connections[DEFAULT_DB_ALIAS]


@register(Tags.database)
def check_autovacuum(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W006: PostgreSQL's autovacuum is off where the tasks are stored.

    A database check: it queries the server, so Django runs it only when asked to check
    databases (``migrate``, ``check --database default``). An unreachable server says nothing
    here; connecting is every other command's business.
    """
    if not databases or DEFAULT_DB_ALIAS not in databases:
        return []
    conn = _task_database()
    if conn.vendor != "postgresql":
        return []
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT current_setting('autovacuum'), current_setting('track_counts')")
            autovacuum, track_counts = cursor.fetchone()
    except DatabaseError:
        return []
    return autovacuum_warnings(autovacuum, track_counts, get_settings().VACUUM_INTERVAL)


def autovacuum_warnings(autovacuum: str, track_counts: str, vacuum_interval: float) -> list[CheckMessage]:
    """Return W006 if the server's ``autovacuum`` or ``track_counts`` (as ``SHOW`` gives them) is off.

    Autovacuum needs both. Without it the dead row versions every claim and completion leaves
    stay: the table grows, and each claim walks past the dead entries of the tasks claimed
    before it in the claim index. The workers vacuum and analyze the task table themselves
    (``ATW["VACUUM_INTERVAL"]``), but they learn of dead rows from the statistics that
    ``track_counts`` collects, and nothing vacuums or analyzes the other tables.
    """
    off = [
        name for name, value in (("autovacuum", autovacuum), ("track_counts", track_counts)) if value != "on"
    ]
    if not off:
        return []
    consequence = (
        f"PostgreSQL's {' and '.join(off)} {'is' if len(off) == 1 else 'are'} off on the task database: "
        "nothing removes the dead row versions each claim and completion leaves, so the task table "
        "grows and every claim walks past the index entries of the tasks claimed before it (a "
        "1,000,000-task drain slowed to half its first speed)."
    )
    if "track_counts" in off:
        done = (
            "The workers cannot vacuum the task table either: they find dead rows in the "
            "statistics track_counts collects."
        )
    elif vacuum_interval > 0:
        done = (
            "django-atw's workers vacuum and analyze the task table themselves when dead rows "
            'and changes pile up (ATW["VACUUM_INTERVAL"]); nothing vacuums or analyzes the other '
            "tables."
        )
    else:
        done = 'ATW["VACUUM_INTERVAL"] = 0 turned off the workers\' own vacuum of the task table too.'
    return [
        Warning(
            f"{consequence} {done}",
            hint="Set autovacuum = on and track_counts = on (their defaults) in postgresql.conf "
            "(docs/scaling.md, 'PostgreSQL maintenance').",
            id="django_atw.W006",
        )
    ]


# --- Live progress: the pieces a project wires by hand (README "Live progress") ---
#
# The project's ASGI application is imported (settings.ASGI_APPLICATION, or the asgi.py that
# startproject puts beside the settings module) and its wrappers are walked: with_worker,
# ProtocolTypeRouter, URLRouter, Channels' middleware, ASGIStaticFilesHandler. An application
# that cannot be imported, or a wrapper of unknown shape, makes these checks say nothing
# rather than guess.

_UNKNOWN = object()  # a node of the ASGI application whose inside cannot be seen


def _guessed_path() -> str | None:
    """``<package>.asgi.application`` for the asgi.py that startproject puts beside the settings
    module, if that module exists."""
    import importlib.util
    import os

    package = os.environ.get("DJANGO_SETTINGS_MODULE", "").rpartition(".")[0]
    if not package:
        return None
    try:
        if importlib.util.find_spec(f"{package}.asgi") is None:
            return None
    except (ImportError, ValueError):
        return None
    return f"{package}.asgi.application"


def _asgi_application() -> tuple[Any, bool]:
    """The project's ASGI application and whether ASGI_APPLICATION names it; (None, False) if
    it cannot be found or imported."""
    from django.utils.module_loading import import_string

    path = getattr(settings, "ASGI_APPLICATION", None)
    explicit = bool(path)
    if not path:
        path = _guessed_path()
        if path is None:
            return None, False
    try:
        return import_string(path), explicit
    except Exception:  # its own errors are the server's to report, not a check's
        return None, False


def _installed_apps() -> list[str]:
    return list(getattr(settings, "INSTALLED_APPS", []))


def _children(node: Any) -> list[Any] | object:
    """The applications ``node`` hands connections to, or _UNKNOWN if its shape is unknown."""
    from django.core.handlers.asgi import ASGIHandler
    from django.urls import URLPattern, URLResolver

    from .asgi import WithWorker

    if isinstance(node, ASGIHandler):
        return []
    if isinstance(node, WithWorker):
        return [node.app]
    if isinstance(node, URLPattern):
        return [node.callback]
    if isinstance(node, URLResolver):
        return list(node.url_patterns)
    for attribute in ("application_mapping",):  # channels.routing.ProtocolTypeRouter
        mapping = getattr(node, attribute, None)
        if isinstance(mapping, dict):
            return list(mapping.values())
    routes = getattr(node, "routes", None)  # channels.routing.URLRouter
    if isinstance(routes, (list, tuple)):
        return list(routes)
    if getattr(node, "consumer_class", None) is not None:  # Consumer.as_asgi()
        return []
    for attribute in ("inner", "application", "app"):  # middleware, origin validator, static files
        inner = getattr(node, attribute, None)
        if inner is not None and callable(inner):
            return [inner]
    return _UNKNOWN


def _walk(node: Any, seen: set[int] | None = None) -> tuple[list[Any], bool]:
    """Every node reachable from ``node``, and whether all of them could be seen into."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return [], True
    seen.add(id(node))
    children = _children(node)
    if not isinstance(children, list):
        return [node], False
    nodes, complete = [node], True
    for child in children:
        found, child_complete = _walk(child, seen)
        nodes += found
        complete = complete and child_complete
    return nodes, complete


def _mounts_socket(nodes: list[Any]) -> bool:
    from .realtime.consumers import TaskConsumer

    for node in nodes:
        consumer = getattr(node, "consumer_class", None)
        if isinstance(consumer, type) and issubclass(consumer, TaskConsumer):
            return True
    return False


def _http_branch(app: Any) -> Any:
    """The application serving HTTP inside ``app`` (under with_worker and ProtocolTypeRouter)."""
    from .asgi import WithWorker

    while True:
        if isinstance(app, WithWorker):
            app = app.app
            continue
        mapping = getattr(app, "application_mapping", None)
        if isinstance(mapping, dict):
            app = mapping.get("http")
            continue
        return app


def _has_channel_layer() -> bool:
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    return isinstance(layers, dict) and bool(layers.get("default"))


def _comes_after(items: list[str], item: str, other: str) -> bool:
    return item in items and other in items and items.index(item) > items.index(other)


def _runs_runserver() -> bool:
    import sys

    return len(sys.argv) > 1 and sys.argv[1] == "runserver"


@register()
def check_live_progress(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W002-W005: the channel layer, the socket route, runserver and static files."""
    from .asgi import WithWorker

    app, explicit = _asgi_application()
    if app is None:
        return []
    nodes, complete = _walk(app)
    mounted = _mounts_socket(nodes)
    wrapped = any(isinstance(node, WithWorker) for node in nodes)
    installed = _installed_apps()
    messages: list[CheckMessage] = []

    if (mounted or wrapped) and not _has_channel_layer():
        messages.append(
            Warning(
                "django_atw's live progress is wired into the ASGI application, but no channel layer "
                "is configured: its WebSocket answers 500 and no progress reaches the browser.",
                hint="Set CHANNEL_LAYERS = {'default': {'BACKEND': 'channels.layers.InMemoryChannelLayer'}} "
                "for one server process, or channels_redis's RedisChannelLayer for several "
                "(README, 'Live progress').",
                id="django_atw.W002",
            )
        )
    if not mounted and complete and (explicit or wrapped):
        messages.append(
            Warning(
                "The ASGI application does not route django_atw's WebSocket (/ws/atw/tasks/): live.js, "
                "in your pages and in the admin, cannot connect, and bars stay where the page left them.",
                hint="In asgi.py: application = with_worker(ProtocolTypeRouter({'http': application, "
                "'websocket': websocket_application()})), from django_atw.asgi (README, 'Live progress').",
                id="django_atw.W003",
            )
        )
    if wrapped and get_settings().EMBEDDED_WORKER:
        problem = None
        if "daphne" not in installed:
            problem = "'daphne' is not in INSTALLED_APPS"
        elif _comes_after(installed, "daphne", "django.contrib.staticfiles"):
            problem = "'daphne' comes after 'django.contrib.staticfiles' in INSTALLED_APPS"
        elif not explicit:
            problem = "ASGI_APPLICATION is not set"
        if problem is not None:
            messages.append(
                Warning(
                    f"asgi.py runs the task worker inside the ASGI server, but {problem}: "
                    "'manage.py runserver' then serves WSGI, runs no worker, and tasks stay pending.",
                    hint="Put 'daphne' first in INSTALLED_APPS and set ASGI_APPLICATION = "
                    "'<project>.asgi.application' (not needed if you never use runserver).",
                    id="django_atw.W004",
                )
            )
    if (
        (mounted or wrapped)
        and settings.DEBUG
        and "django.contrib.staticfiles" in installed
        and not _runs_runserver()  # runserver serves static files itself
    ):
        http_nodes, http_complete = _walk(_http_branch(app))
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        if http_complete and not any(isinstance(node, ASGIStaticFilesHandler) for node in http_nodes):
            messages.append(
                Warning(
                    "Run by daphne or uvicorn directly, the ASGI application serves no static files: "
                    "live.js and the admin's CSS answer 404 (manage.py runserver serves them itself).",
                    hint="In asgi.py, while DEBUG: application = ASGIStaticFilesHandler(application) "
                    "before routing it (django.contrib.staticfiles.handlers; README, 'Live progress'). "
                    "In production, collectstatic and a web server or WhiteNoise.",
                    id="django_atw.W005",
                )
            )
    return messages
