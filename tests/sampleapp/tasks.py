"""Named sample tasks every test reuses (autodiscovered, like a user's tasks.py)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from django_atw import task
from django_atw.engine.executor import current_run
from tests.multiprocess import fast_clock as _fast_clock

# Events keyed by name let a test hold a task at a known point and release it.
gates: dict[str, asyncio.Event] = {}
started: dict[str, asyncio.Event] = {}
runs: list[str] = []


def gate(name: str) -> asyncio.Event:
    return gates.setdefault(name, asyncio.Event())


def started_event(name: str) -> asyncio.Event:
    return started.setdefault(name, asyncio.Event())


@task("noop")
async def noop() -> None:
    return None


@task("echo")
async def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    kwargs.pop("progress_callback")  # **kwargs takes it, as in the original library
    return {"args": list(args), "kwargs": kwargs}


@task("record")
async def record(label: str) -> str:
    runs.append(label)
    return label


@task("fail")
async def fail(message: str = "boom") -> None:
    raise ValueError(message)


@task("wait_for_gate")
async def wait_for_gate(name: str, progress_callback: Any = None) -> str:
    """Signal ``started[name]``, report 0.5, then wait until ``gate(name)`` is set."""
    if progress_callback is not None:
        progress_callback(0.5)
    started_event(name).set()
    await gate(name).wait()
    return name


@task("sleep")
async def sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@task("process_data")
async def process_data(data: list[int], progress_callback: Any = None) -> list[int]:
    """The original README's quick-start task, without its sleep."""
    result = []
    for i, item in enumerate(data):
        result.append(item * 2)
        if progress_callback:
            progress_callback((i + 1) / len(data))
    return result


@task("no_progress_param")
async def no_progress_param(x: int) -> int:
    return x


@task("kwargs_progress")
async def kwargs_progress(**kwargs: Any) -> bool:
    kwargs["progress_callback"](2.0)  # clamps to 1.0
    return "progress_callback" in kwargs


@task("returns_set")
async def returns_set() -> Any:
    return {1, 2}


@task("returns_nested")
async def returns_nested(depth: int) -> Any:
    """Return lists nested ``depth`` levels deep."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@task("returns_text")
async def returns_text(length: int) -> str:
    return "x" * length


@task("swallow_cancel")
async def swallow_cancel(name: str) -> str:
    started_event(name).set()
    try:
        await gate(name).wait()
    except asyncio.CancelledError:
        return "swallowed"
    return "released"


async def unregistered_but_importable(x: int) -> int:
    return x + 1


@task("two_steps")
async def two_steps(name: str, progress_callback: Any = None) -> str:
    """Report 0.25, wait for gate ``name-1``, report 0.75, wait for gate ``name-2``."""
    progress_callback(0.25)
    started_event(f"{name}-1").set()
    await gate(f"{name}-1").wait()
    progress_callback(0.75)
    started_event(f"{name}-2").set()
    await gate(f"{name}-2").wait()
    return name


# --- retries: each counts its runs per name in ``attempts_seen`` --------------------------

attempts_seen: dict[str, int] = {}


class Flaky(Exception):
    """A failure worth retrying."""


def _count(name: str) -> int:
    attempts_seen[name] = attempts_seen.get(name, 0) + 1
    return attempts_seen[name]


@task("flaky", max_attempts=3, retry_backoff=0.01, retry_on=(Flaky,))
async def flaky(name: str, failures: int) -> int:
    """Raise ``Flaky`` on the first ``failures`` runs, then return the run number."""
    run = _count(name)
    if run <= failures:
        raise Flaky(f"failure {run}")
    return run


@task("slow_then_quick", max_attempts=2, retry_backoff=0.01, retry_on=(TimeoutError,))
async def slow_then_quick(name: str) -> int:
    """Hang on the first run (to hit its timeout), return at once on the next."""
    run = _count(name)
    if run == 1:
        await asyncio.sleep(600)
    return run


@task("report", queue="reports")
async def report(name: str) -> str:
    return name


def _note_run(path: str) -> None:
    with open(f"{path}.runs", "a", encoding="utf-8") as runs:
        runs.write("run\n")


@task("wait_for_file")
async def wait_for_file(path: str) -> str:
    """Note each run in ``<path>.runs``, then wait until ``path`` exists (a gate across processes)."""
    _note_run(path)
    exists = os.path.exists
    while True:
        if exists(path):
            return os.path.basename(path)
        await asyncio.sleep(0.01)


@task("steps")
async def steps(count: int, delay: float, progress_callback: Any = None) -> int:
    """Report ``count`` evenly spaced progress values, ``delay`` seconds apart (for other processes)."""
    for step in range(1, count + 1):
        await asyncio.sleep(delay)
        progress_callback(step / count)
    return count


# --- outcomes the database cannot store as they are -----------------------------------------

# PostgreSQL refuses NUL in text and JSON; no driver encodes a lone surrogate. Tasks build
# these themselves: JSON arguments could not carry them into PostgreSQL either.
UNSTORABLE = {"nul": "a\x00b", "surrogate": "a\ud800b"}


@task("return_at_gate")
async def return_at_gate(name: str, gate_name: str, unstorable: str = "") -> str:
    """Signal ``started[name]``, wait for ``gate(gate_name)``, return ``name`` or ``UNSTORABLE`` text.

    Tasks sharing a gate end in the same turn of the loop, so their outcomes share a write.
    """
    started_event(name).set()
    await gate(gate_name).wait()
    return UNSTORABLE[unstorable] if unstorable else name


@task("fail_unstorably")
async def fail_unstorably() -> None:
    """Raise an error whose message holds NUL and a lone surrogate, and whose type name is 300+ long."""
    unwieldy = type("E" * 300, (Exception,), {})
    raise unwieldy(f"bad {UNSTORABLE['nul']} {UNSTORABLE['surrogate']}")


@task("whoami")
async def whoami() -> dict[str, Any]:
    """Return the run the executor says this is (``current_run``)."""
    run = current_run.get()
    assert run is not None
    return {"task_id": run.task_id, "attempt": run.attempt, "worker_id": run.worker_id}


# Multi-process scheduling tests run the scheduler on a fast clock (tests/multiprocess/fast_clock.py).
_fast_clock.install_from_env()
