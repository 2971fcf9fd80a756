"""A real Daphne process serving the example project on the test database (the in-memory layer),
with a signed-in superuser, for tests that need real sockets and HTTP."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from tests.helpers.processes import ROOT, subprocess_env
from tests.live.test_servers import free_port, http, server_command

# Run in a Django process with the server's settings: a signed-in superuser's session key and
# N tasks on a queue no worker serves (they stay pending: no event of theirs is due).
SETUP = """
import json, django
django.setup()
from django.contrib.auth import get_user_model
from django.conf import settings
from django.test import Client
import django_atw
user = get_user_model().objects.create_superuser("load", "load@example.com", None)
client = Client()
client.force_login(user)
ids = django_atw.enqueue_many("demo.count", [{"n": 1}] * %d, queue="parked") if %d else []
print(json.dumps({"session": client.cookies[settings.SESSION_COOKIE_NAME].value, "ids": ids}))
"""


def server_env() -> dict[str, str]:
    return {**subprocess_env(), "DJANGO_SETTINGS_MODULE": "tests.live.server_settings"}


def run_django(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=server_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
async def example_server(
    tmp_path: Path,
) -> AsyncIterator[Callable[[int], Awaitable[tuple[int, dict[str, Any]]]]]:
    """Start Daphne after creating ``n`` parked tasks; return its port and ``{"session", "ids"}``."""
    if connection.vendor != "sqlite":
        pytest.skip("server processes are tested on SQLite only")
    procs: list[asyncio.subprocess.Process] = []

    async def start(parked: int) -> tuple[int, dict[str, Any]]:
        setup = json.loads(await sync_to_async(run_django)(SETUP % (parked, parked)))
        port = free_port()
        log_path = tmp_path / "daphne.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *server_command("daphne", port), cwd=ROOT, env=server_env(), stdout=log, stderr=log
            )
        procs.append(proc)
        async with asyncio.timeout(60):
            while (await sync_to_async(http)("GET", f"http://127.0.0.1:{port}/test-relayed/"))[0] != 200:
                assert proc.returncode is None, log_path.read_text()
                await asyncio.sleep(0.05)
        return port, setup

    yield start
    for proc in procs:
        proc.kill()
        await proc.wait()
