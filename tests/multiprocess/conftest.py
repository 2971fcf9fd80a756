"""Real ``atw_worker`` processes sharing the test database, and the table their tasks write."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from tests.helpers.processes import ROOT, django_command, subprocess_env
from tests.multiprocess import tasks as mp_tasks


def needs_postgres() -> Any:
    return pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="multi-process worker tests run on PostgreSQL (set ATW_TEST_DATABASE=postgres and "
        "ATW_TEST_POSTGRES); SQLite has its own two-worker test",
    )


class WorkerProcess:
    """One ``atw_worker`` subprocess whose output is read continuously (so it never blocks)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode(errors="replace"))
            self._changed.set()
        self._changed.set()

    async def wait_for(self, marker: str, timeout: float = 30.0) -> str:
        """Wait until the process printed a line containing ``marker``; return that line."""
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines[seen:]:
                    if marker in line:
                        return line
                seen = len(self.lines)
                if self._reader.done():
                    raise AssertionError(f"worker exited before printing {marker!r}:\n{self.output}")
                self._changed.clear()
                await self._changed.wait()

    async def wait(self, timeout: float = 60.0) -> int:
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            await self._reader
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)


@pytest.fixture
async def start_worker() -> AsyncIterator[Callable[..., Any]]:
    """Start ``atw_worker`` processes; yields once each printed its ready line; kills leftovers."""
    started: list[WorkerProcess] = []

    async def factory(
        *args: str, lease: float | None = None, ready: bool = True, env: dict[str, str] | None = None
    ) -> WorkerProcess:
        env = {**subprocess_env(), **(env or {})}
        if lease is not None:
            env["ATW_TEST_WORKER_LEASE"] = str(lease)
        proc = await asyncio.create_subprocess_exec(
            *django_command("atw_worker", *args),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        worker = WorkerProcess(proc)
        started.append(worker)
        if ready:
            await worker.wait_for("atw worker ready")
        return worker

    yield factory
    for worker in started:
        if worker.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGKILL)
            await worker.proc.wait()
        with contextlib.suppress(Exception):
            await worker._reader


@pytest.fixture
def runs_table(transactional_db: None) -> Iterator[None]:
    mp_tasks.create_runs_table()
    yield
    mp_tasks.drop_runs_table()


async def read_runs() -> list[tuple[str, int, float, float | None]]:
    return await sync_to_async(mp_tasks.runs)()
