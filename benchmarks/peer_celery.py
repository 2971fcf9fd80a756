"""Celery on a Redis broker, as the scale suite runs it: ``celery -A benchmarks.peer_celery worker``.

No result backend: ``task_ignore_result``; the tasks leave the marks of ``scale_tasks`` instead.
The queue has a name of its own so the clean-up knows its keys.
"""

from __future__ import annotations

import time

from celery import Celery  # type: ignore[import-untyped]

from .scale_tasks import note_done, note_start, redis_url

SYSTEM = "celery"
QUEUE = "atw-bench-celery"

app = Celery("atw_bench", broker=redis_url())
app.conf.update(
    task_ignore_result=True,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="atw_bench.noop")  # type: ignore[untyped-decorator]
def noop(expected: int) -> None:
    note_done(SYSTEM, expected, time.time())


@app.task(name="atw_bench.probe")  # type: ignore[untyped-decorator]
def probe(token: str) -> None:
    note_start(SYSTEM, token)
