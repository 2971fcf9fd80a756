"""What the scale suite's worker processes run, and the marks the tasks leave in Redis.

Every system's worker runs in its own process, so a task cannot tell the benchmark anything in
memory. Two marks, written to the benchmark's Redis database by the task itself:

- ``note_start(system, token)``: the wall clock (``time.time()``) on the task's first line,
  pushed onto a list the measuring process waits on (wake-up latency: both processes read the
  same machine's clock).
- ``note_done(system, expected, started)``: counts a finished no-op and keeps the earliest start
  and the moment the ``expected``-th one finished. Only Huey and Celery use it: nothing else
  tells an outsider that their tasks finished once results are off. django-atw and procrastinate
  store every outcome and its time in their tables anyway, so the benchmark reads those.

django-atw's task functions are not decorated: a worker finds them by their dotted path.
"""

from __future__ import annotations

import functools
import os
import time

import redis

REDIS_URL_ENV = "ATW_BENCH_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    return os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


@functools.cache
def client() -> redis.Redis:
    """One connection pool per process, made on first use (after a worker forks)."""
    return redis.Redis.from_url(redis_url())


def key(system: str, name: str) -> str:
    """``atw-bench:<system>:<name>``: every mark key starts with ``atw-bench:``, for the clean-up."""
    return f"atw-bench:{system}:{name}"


def note_start(system: str, token: str) -> None:
    now = time.time()
    client().rpush(key(system, "starts"), f"{token} {now!r}")


def note_done(system: str, expected: int, started: float) -> None:
    """One round trip per task: count it and keep the earliest start; the last one notes the end."""
    pipe = client().pipeline(transaction=False)
    pipe.incr(key(system, "done"))
    pipe.setnx(key(system, "first_start"), repr(started))
    done, _ = pipe.execute()
    if int(done) == expected:
        client().set(key(system, "last_end"), repr(time.time()))


async def atw_noop() -> None:
    """django-atw's no-op: the row the worker writes says when it started and finished."""


async def atw_probe(token: str) -> None:
    """django-atw's wake-up probe."""
    note_start("atw", token)
