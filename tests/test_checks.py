"""System checks of the live-progress wiring (W002-W005) and the SQLite options (W001)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.test import override_settings

from django_atw import checks
from tests.helpers.readme import snippets

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
WIRED = "tests.checkasgi.asgi.application"  # as the README wires it
APPS = ["daphne", "django.contrib.staticfiles", "channels", "django_atw"]


def ids(apps: list[str] | None = None, **overrides: Any) -> list[str]:
    """The ids of the live-progress checks' messages under these settings."""
    settings = {"ASGI_APPLICATION": WIRED, "CHANNEL_LAYERS": IN_MEMORY, "DEBUG": True, **overrides}
    with (
        override_settings(**settings),
        mock.patch.object(checks, "_installed_apps", return_value=apps if apps is not None else APPS),
    ):
        return [message.id or "" for message in checks.check_live_progress()]


def test_the_readme_wiring_passes() -> None:
    assert ids() == []


def test_w002_no_channel_layer() -> None:
    assert ids(CHANNEL_LAYERS={}) == ["django_atw.W002"]
    assert ids(ASGI_APPLICATION="tests.checkasgi.asgi.socket_only", CHANNEL_LAYERS={}) == ["django_atw.W002"]
    # No live progress wired: no layer needed.
    assert ids(ASGI_APPLICATION="tests.checkasgi.asgi.opaque", CHANNEL_LAYERS={}) == []


def test_w002_without_the_setting_at_all() -> None:
    with override_settings(ASGI_APPLICATION=WIRED, CHANNEL_LAYERS={}):
        from django.conf import settings

        del settings.CHANNEL_LAYERS
        assert not hasattr(settings, "CHANNEL_LAYERS")
        with mock.patch.object(checks, "_installed_apps", return_value=APPS):
            assert [m.id for m in checks.check_live_progress()] == ["django_atw.W002"]


def test_w002_hint_names_the_setting() -> None:
    with override_settings(ASGI_APPLICATION=WIRED, CHANNEL_LAYERS={}):
        (message,) = [m for m in checks.check_live_progress() if m.id == "django_atw.W002"]
    assert "CHANNEL_LAYERS" in (message.hint or "")


def test_w003_socket_not_routed() -> None:
    assert ids(ASGI_APPLICATION="tests.checkasgi.asgi.no_socket") == ["django_atw.W003"]
    # startproject's asgi.py, named by ASGI_APPLICATION but not edited yet.
    assert ids(ASGI_APPLICATION="tests.checkasgi.asgi.plain") == ["django_atw.W003"]


def test_w003_unknown_or_broken_applications_are_not_judged() -> None:
    assert ids(ASGI_APPLICATION="tests.checkasgi.asgi.opaque") == []
    assert ids(ASGI_APPLICATION="tests.checkasgi.nonexistent.application") == []


def test_w003_not_without_asgi_application_and_worker() -> None:
    # A WSGI project: startproject's asgi.py found beside the settings, django_atw not wired in.
    with mock.patch.object(checks, "_guessed_path", return_value="tests.checkasgi.asgi.plain"):
        assert ids(ASGI_APPLICATION=None) == []


def test_w004_runserver_would_serve_wsgi() -> None:
    assert ids(apps=["django.contrib.staticfiles", "channels", "django_atw"]) == ["django_atw.W004"]
    assert ids(apps=["django.contrib.staticfiles", "daphne", "channels", "django_atw"]) == ["django_atw.W004"]
    assert ids(ATW={"EMBEDDED_WORKER": False}, apps=["channels", "django_atw"]) == []


def test_w004_asgi_application_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # The application is found as startproject places it: asgi.py beside the settings module.
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "tests.checkasgi.settings")
    assert ids(ASGI_APPLICATION=None) == ["django_atw.W004"]


def test_w005_static_files_not_served() -> None:
    assert ids(ASGI_APPLICATION="tests.checkasgi.asgi.no_static") == ["django_atw.W005"]
    assert ids(ASGI_APPLICATION="tests.checkasgi.asgi.no_static", DEBUG=False) == []
    assert ids(ASGI_APPLICATION="tests.checkasgi.asgi.no_static", apps=["daphne", "django_atw"]) == []


def test_w005_not_under_runserver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["manage.py", "runserver"])
    assert ids(ASGI_APPLICATION="tests.checkasgi.asgi.no_static") == []


def test_w001_hint_is_the_readme_settings() -> None:
    """The README's SQLite options are the ones W001 asks for, and they silence it."""
    namespace: dict[str, Any] = {"BASE_DIR": Path("/tmp"), "INSTALLED_APPS": []}
    exec(snippets()["settings"], namespace)
    db = namespace["DATABASES"]["default"]
    assert db["OPTIONS"] == checks.SQLITE_OPTIONS
    assert checks.sqlite_mode_warnings(db) == []
    (warning,) = checks.sqlite_mode_warnings({"ENGINE": "django.db.backends.sqlite3"})
    assert warning.id == "django_atw.W001"
    assert repr(checks.SQLITE_OPTIONS) in (warning.hint or "")
