"""Three real workers schedule one per-second schedule: each tick once, even when one is killed.

The workers' scheduler runs on a shared fast clock (``fast_clock``): 300 simulated seconds in
15 real ones, every worker racing for every tick.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from django_atw import TaskStatus
from django_atw.models import Schedule, ScheduleTick, TaskRecord
from tests.conftest import wait_until
from tests.multiprocess.conftest import needs_postgres
from tests.multiprocess.fast_clock import ENV

pytestmark = pytest.mark.django_db(transaction=True)

SPEED = 20
SIMULATED = 300  # seconds of a per-second schedule
START = datetime(2030, 1, 1, tzinfo=UTC)


async def ticks_until(end: datetime) -> list[tuple[datetime, str]]:
    """The (tick, task id) rows of ticks up to ``end``."""
    return [row async for row in ScheduleTick.objects.filter(tick__lte=end).values_list("tick", "task_id")]


@needs_postgres()
async def test_three_workers_add_every_tick_of_five_simulated_minutes_once_though_one_is_killed(start_worker):
    end = START + timedelta(seconds=SIMULATED)
    # "all": ticks the workers reach late (a slow start, a busy machine) still run, each once.
    await Schedule.objects.acreate(
        name="every-second", task_type="noop", cron="* * * * * *", missed="all", max_catch_up=1000,
        handled_until=START,
    )  # fmt: skip
    env = {ENV: f"{START.timestamp()},{time.time()},{SPEED}"}
    workers = await asyncio.gather(
        *(start_worker("--concurrency", "20", lease=2.0, env=env) for _ in range(3))
    )

    await wait_until(lambda: ticks_until(end), lambda ticks: len(ticks) >= SIMULATED // 2, timeout=30)
    workers[0].proc.send_signal(signal.SIGKILL)
    assert await workers[0].wait() == -signal.SIGKILL
    ticks = await wait_until(lambda: ticks_until(end), lambda ticks: len(ticks) >= SIMULATED, timeout=30)

    assert sorted(tick for tick, _ in ticks) == [
        START + timedelta(seconds=s) for s in range(1, SIMULATED + 1)
    ]
    task_ids = [task_id for _, task_id in ticks]
    tasks = [
        row
        async for row in TaskRecord.objects.filter(id__in=task_ids).values_list("metadata__tick", flat=True)
    ]
    assert sorted(tasks) == sorted(tick.isoformat() for tick, _ in ticks)
    every = TaskRecord.objects.filter(metadata__schedule="every-second").values_list(
        "metadata__tick", flat=True
    )
    per_tick = Counter([tick async for tick in every])
    assert max(per_tick.values()) == 1  # no tick, up to the end or beyond, has a second task
    # Tasks the killed worker had claimed return to pending after its lease and run elsewhere.
    await wait_until(
        lambda: (
            TaskRecord.objects.filter(id__in=task_ids).exclude(status=TaskStatus.COMPLETED.value).aexists()
        ),
        lambda unfinished: not unfinished,
        timeout=30,
    )
    # All three took part, the killed one too (its runs before the kill are stored).
    runners = TaskRecord.objects.filter(id__in=task_ids).values_list("worker__pid", flat=True)
    assert {pid async for pid in runners} == {worker.pid for worker in workers}
