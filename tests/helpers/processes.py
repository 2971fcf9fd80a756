"""Start real Python subprocesses that share the running test's database."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def subprocess_env() -> dict[str, str]:
    """Environment for a child process that uses this test's database and settings."""
    return {
        **os.environ,
        # The checkout's src first: an editable install elsewhere must not shadow the code under test.
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "ATW_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
        "PYTHONUNBUFFERED": "1",
    }


def django_command(*args: str) -> list[str]:
    """The argv of ``django-admin <args>`` for the current interpreter."""
    return [sys.executable, "-m", "django", *args]
