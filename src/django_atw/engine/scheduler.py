"""The scheduling loop every worker runs: passes at each due tick, and at least each poll interval.

A pass is a few short queries on the worker's claim connection (``db``), never on the
heartbeat's, so scheduling can not delay a heartbeat. Tasks a pass adds wake this worker's
pool at commit (``adding`` does that for every add), and other workers over NOTIFY or the
channel layer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

from .. import scheduling
from ..store.thread import DatabaseThread

logger = logging.getLogger(__name__)

# Seconds a pass waits past a tick before running: asyncio may wake a hair early, and a pass
# just before the tick would find nothing due and loop once more for nothing.
TICK_MARGIN = 0.01
# Passes between prunes of old tick rows (each prune deletes at most one small batch).
PRUNE_EVERY = 600

# The scheduler's clock. Tests of many processes replace it (see tests/multiprocess) to run
# simulated minutes in seconds; nothing else should.
clock: Callable[[], datetime] = timezone.now


class Scheduler:
    """Run scheduling passes until stopped; sync code schedules first."""

    def __init__(self, *, worker_id: str, db: DatabaseThread, refresh: float) -> None:
        self._worker_id = worker_id
        self._db = db
        # Longest wait between passes: how soon an edit in the admin (a new or changed schedule)
        # is seen when no tick is due before then.
        self._refresh = refresh
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"atw-scheduler-{self._worker_id}")

    def side_tasks(self) -> list[asyncio.Task[None]]:
        return [self._task] if self._task is not None else []

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _loop(self) -> None:
        try:
            await self._db.run(scheduling.sync_code_schedules, clock())
        except Exception as exc:
            logger.warning("could not sync code schedules (%s: %s); retrying at the next start",
                           type(exc).__name__, exc)  # fmt: skip
        passes = 0
        while True:
            wait = self._refresh
            try:
                now = clock()
                result = await self._db.run(scheduling.run_pass, now)
                if result.next_due is not None:
                    until_due = (result.next_due - clock()).total_seconds() + TICK_MARGIN
                    wait = max(0.0, min(wait, until_due))
                passes += 1
                if passes % PRUNE_EVERY == 0:
                    await self._db.run(scheduling.prune_ticks, now)
            except Exception as exc:
                logger.warning("scheduling pass failed (%s: %s); retrying", type(exc).__name__, exc)
            await asyncio.sleep(wait)
