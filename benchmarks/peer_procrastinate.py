"""procrastinate on PostgreSQL, as the scale suite runs it:
``procrastinate --app=benchmarks.peer_procrastinate.app worker``.

The database comes from ``ATW_BENCH_PROCRASTINATE_URL`` (the suite creates one for each run).
Jobs, their status and their events (with times) stay in its tables, so the no-op does nothing.
"""

from __future__ import annotations

import os

from procrastinate import App, PsycopgConnector

from .scale_tasks import note_start

SYSTEM = "procrastinate"
DATABASE_URL_ENV = "ATW_BENCH_PROCRASTINATE_URL"

app = App(connector=PsycopgConnector(conninfo=os.environ.get(DATABASE_URL_ENV, "")))


@app.task(name="noop")
async def noop() -> None:
    """Nothing: the worker records the start and the success in ``procrastinate_events``."""


@app.task(name="probe")
async def probe(token: str) -> None:
    note_start(SYSTEM, token)
