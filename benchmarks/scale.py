"""The scale suite: worker processes started as their users start them, against peer task queues.

For each system (django-atw on PostgreSQL, Huey and Celery on Redis, procrastinate on
PostgreSQL), one child process per run stores the work, starts the workers as separate
processes, and reads back from the system's own records (or the marks of ``scale_tasks``) when
the work was done:

- drain: ``sizes.drain`` no-op tasks stored before any worker starts, then 1 and 2 worker
  processes; the rate from the first task's start to the last task's end, and the wall rate from
  starting the processes until every outcome is stored (checked every ``POLL`` seconds).
- wake-up: one idle worker process; this process adds probe tasks one at a time and waits for
  each to start; the latency is from just before the add to the probe's first line
  (``time.time()`` in both processes, one machine).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.metadata
import os
import random
import signal
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from time import perf_counter, sleep, time
from types import TracebackType

from . import databases
from .scale_systems import ROOT, SYSTEMS, System

# Seconds between two checks whether a drain is complete: the wall rate's resolution.
POLL = 0.01
# Seconds to wait after a probe started before adding the next one (uniform in this range), so
# the worker is idle again and adds do not fall at a fixed distance from a worker's own timers.
PROBE_GAP = (0.01, 0.1)
# Seconds a worker process gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class ScaleSizes:
    """How much work each workload of the scale suite uses."""

    drain: int = 20_000  # no-op tasks stored before the workers start
    processes: tuple[int, ...] = (1, 2)  # worker processes for the drain
    latency: int = 200  # probes added one at a time to an idle worker process
    warmup: int = 10  # probes not counted (the first waits for the worker process to start)
    startup: float = 60.0  # seconds a worker process may take to run its first task
    limit: float = 600.0  # seconds any one workload may take before it counts as failed


FULL = ScaleSizes()
QUICK = ScaleSizes(drain=2_000, latency=30, warmup=3, limit=120.0)


class Workers:
    """Worker processes, each in a session of its own with its output in a log file."""

    def __init__(self, system: System, processes: int, logs: Path) -> None:
        self.system = system
        self.commands = system.worker_commands(processes)
        self.logs = logs
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def __enter__(self) -> Workers:
        environment = {**os.environ, **self.system.worker_environment()}
        for command in self.commands:
            log = self.logs / f"{self.system.name}-{len(list(self.logs.iterdir()))}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=environment,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.processes.append((process, log))
        return self

    def check(self) -> None:
        """Raise if a worker process has exited, with the end of its output."""
        for process, log in self.processes:
            code = process.poll()
            if code is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"{self.system.label} worker exited with code {code}: {' | '.join(tail)}")

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """SIGTERM (each system's graceful stop), then SIGKILL to the process group of any left."""
        for process, _ in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = perf_counter() + STOP_TIMEOUT
        for process, _ in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - perf_counter()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def drain(system: System, processes: int, sizes: ScaleSizes, logs: Path) -> dict[str, float]:
    """``sizes.drain`` no-ops stored, then ``processes`` worker processes started to run them."""
    system.reset()
    system.store_noops(sizes.drain)
    started = perf_counter()
    with Workers(system, processes, logs) as workers:
        while not system.drained(sizes.drain):
            workers.check()
            if perf_counter() - started > sizes.limit:
                raise TimeoutError(f"{system.label}: drain not done after {sizes.limit:g} s")
            sleep(POLL)
        wall = perf_counter() - started
    span = system.drain_span(sizes.drain)
    system.reset()
    return {f"drain_{processes}p": sizes.drain / span, f"drain_{processes}p_wall": sizes.drain / wall}


def wakeup(system: System, sizes: ScaleSizes, logs: Path) -> dict[str, float]:
    """Probes added one at a time by this process to one idle worker process."""
    system.reset()
    gaps = random.Random(0)
    samples: list[float] = []
    with Workers(system, 1, logs) as workers:
        for i in range(sizes.warmup + sizes.latency):
            token = f"probe-{i}"
            before = time()
            system.add_probe(token)
            limit = perf_counter() + (sizes.startup if i == 0 else sizes.limit)
            while True:
                try:
                    found, started = system.wait_probe(timeout=1.0)
                    break
                except TimeoutError:
                    workers.check()
                    if perf_counter() > limit:
                        raise
            if found != token:
                raise RuntimeError(f"{system.label}: probe {found!r} started, expected {token!r}")
            if i >= sizes.warmup:
                samples.append(started - before)
            sleep(gaps.uniform(*PROBE_GAP))
    system.reset()
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"wakeup_p50_ms": cuts[49] * 1000, "wakeup_p99_ms": cuts[98] * 1000}


@contextlib.contextmanager
def prepared_system(name: str, postgres_url: str, redis_url: str) -> Iterator[System]:
    """The system ready to run workloads: django-atw on a fresh PostgreSQL database, peers on theirs."""
    system_class = SYSTEMS[name]
    if not name.startswith("atw"):
        system = system_class(redis_url, postgres_url)
        with system.prepared():
            yield system
        return
    kind = "sqlite" if name == "atw-sqlite" else "postgres"
    with databases.fresh_database(kind, postgres_url) as environment:
        databases.setup_django(environment)
        system = system_class(redis_url, postgres_url)
        with system.prepared():
            yield system


def steps(system: System, sizes: ScaleSizes, logs: Path) -> list[tuple[str, Callable[[], dict[str, float]]]]:
    """Each workload as (name, function returning its metrics), in running order."""
    return [
        *[(f"drain_{n}p", functools.partial(drain, system, n, sizes, logs)) for n in sizes.processes],
        ("wakeup", functools.partial(wakeup, system, sizes, logs)),
    ]


@contextlib.contextmanager
def log_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="atw-bench-workers-") as folder:
        yield Path(folder)


def describe(names: Sequence[str]) -> dict[str, str]:
    """How each system's workers run, for the report (no system is started)."""
    return {name: SYSTEMS[name].describe() for name in names}


def versions(redis_url: str) -> dict[str, str]:
    """The peers' versions and the Redis server's, for the report's machine facts."""
    import redis

    found: dict[str, str] = {}
    for package in ("huey", "celery", "kombu", "procrastinate", "redis"):
        try:
            found[f"{package} (Python)" if package == "redis" else package] = importlib.metadata.version(
                package
            )
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    try:
        info = redis.Redis.from_url(redis_url).info("server")
        found["Redis server"] = str(info.get("redis_version", "?"))
    except redis.RedisError as exc:
        found["Redis server"] = f"not reachable ({exc})"
    return found
