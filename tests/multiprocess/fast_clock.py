"""A scheduler clock that runs faster than real time, shared by every worker process of a test.

``ATW_TEST_SCHEDULER_CLOCK="<simulated start>,<real start>,<speed>"`` (epoch seconds): at real
time ``r`` the scheduler reads ``sim + (r - real) * speed``. Every process computes the same
simulated time from the same wall clock, so five simulated minutes take fifteen real seconds at
speed 20, with the real scheduling code, database and races.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

ENV = "ATW_TEST_SCHEDULER_CLOCK"


def install_from_env() -> None:
    """Replace the scheduler's clock when ``ATW_TEST_SCHEDULER_CLOCK`` is set (test workers only)."""
    value = os.environ.get(ENV)
    if not value:
        return
    from django_atw.engine import scheduler

    simulated, real, speed = (float(part) for part in value.split(","))

    def clock() -> datetime:
        return datetime.fromtimestamp(simulated + (time.time() - real) * speed, tz=UTC)

    scheduler.clock = clock
