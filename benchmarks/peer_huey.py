"""Huey on Redis, as the scale suite runs it: ``huey_consumer benchmarks.peer_huey.huey``.

Results are off (a no-op returns nothing, so none would be stored anyway); the tasks leave the
marks of ``scale_tasks`` instead.
"""

from __future__ import annotations

import time

from huey import RedisHuey  # type: ignore[import-untyped]

from .scale_tasks import note_done, note_start, redis_url

SYSTEM = "huey"
huey = RedisHuey("atw-bench", url=redis_url(), results=False)


@huey.task()  # type: ignore[untyped-decorator]
def noop(expected: int) -> None:
    note_done(SYSTEM, expected, time.time())


@huey.task()  # type: ignore[untyped-decorator]
def probe(token: str) -> None:
    note_start(SYSTEM, token)
