"""Benchmark django-atw (tasks as database rows) against async-task-worker 0.4.4 (tasks in memory).

Usage::

    .venv/bin/python benchmarks/bench.py [--runs 3] [--databases sqlite,postgres]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--output docs/benchmarks.md] [--quick]
    .venv/bin/python benchmarks/bench.py --profile sqlite|postgres [--quick]
    .venv/bin/python benchmarks/bench.py --suite scale [--runs 3] [--systems atw,huey,...]
        [--postgres-url ...] [--redis-url redis://127.0.0.1:6379/0] [--output docs/benchmarks.md] [--quick]
    .venv/bin/python benchmarks/bench.py --suite growth [--runs 1] [--databases postgres]
        [--backlogs 1000,10000,100000,1000000] [--history 2000000] [--history-drain 100000]
        [--postgres-url ...] [--output docs/benchmarks.md] [--quick]

What is measured, with no-op tasks unless said otherwise:

- W1a enqueue rate: django-atw's sync ``enqueue`` one task at a time in a plain loop (no event
  loop, no worker) and one bulk ``enqueue_many``; the original's ``add_task`` loop.
- W1e concurrent enqueue rate: 8,000 tasks, one per call, by 1 thread and 8 threads calling
  ``enqueue`` and by 8 coroutines awaiting ``aenqueue`` (django-atw only).
- W1d: a 20,000-task drain awaited by ``wait_for_tasks`` with a 10 ms poll, beside the same
  drain unwatched; the original's ``add_task`` loop plus ``wait_for_tasks``.
- W1b drain rate: 5,000 tasks waiting before the worker starts, run with ``max_workers=100``
  and with the default 10; first task's start to last task's end (django-atw: from the rows'
  ``started_at`` and ``completed_at``), and wall time until every outcome is stored.
- W1c end-to-end rate: 2,000 tasks added one by one to a running worker, until all are done.
- W2 enqueue-to-start latency p50/p95/p99: 200 tasks, one at a time, on an idle worker.
- W3: 1,000 tasks of ``asyncio.sleep(0.1)`` with ``max_workers=100``, against the ideal 1.0 s.
- Result cache (``benchmarks/cache_bench.py``): add-to-completed p50/p99 of a cache hit on each
  cache backend, beside an uncached no-op on the same backend.

How: this process starts one child per configuration and run (``--worker-mode original``,
``sqlite`` or ``postgres``), in turn, so Django settings, connections and caches never carry over.
A database child creates a fresh database (SQLite: a WAL file in a temporary directory;
PostgreSQL: ``atw_bench_<pid>``, dropped at the end), migrates it, runs every workload and
prints its figures as JSON. Figures are medians over ``--runs``; the Markdown report (machine,
command, medians, ratios to the original library, the issue's targets) goes to ``--output``
(for ``--quick``, only when ``--output`` is given). ``--quick`` uses small sizes, for a smoke run.

``--suite scale`` runs ``benchmarks/scale.py`` instead: ``manage.py atw_worker`` processes on
PostgreSQL (and on SQLite) against Huey, Celery and procrastinate workers (drain with 1 and 2
worker processes, wake-up latency across processes); its section of the report is replaced in
place, or appended.

``--suite growth`` runs ``benchmarks/growth.py`` on each of ``--databases``: backlogs of growing
size drained by one in-process worker (the first tenth's rate against the last tenth's, the
table's size before and after) and a drain on top of ``--history`` finished rows; its section
of the report is replaced in place, or appended.

``--profile`` runs the drain once in this process under cProfile (the event loop thread and each
of the worker's database threads) and prints the top 30 functions by cumulative and by own time.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import shlex
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import databases, report  # noqa: E402
from benchmarks.workloads import FULL, QUICK, Sizes  # noqa: E402

DATABASES = ("sqlite", "postgres")
# The scale suite's systems: the keys of scale_systems.SYSTEMS, named here so that parsing the
# command line imports no peer library.
SYSTEMS = ("atw", "atw-sqlite", "huey", "celery", "celery-threads", "procrastinate")
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
CHILD_TIMEOUT = 3600.0


def default_postgres_url() -> str:
    return os.environ.get("ATW_TEST_POSTGRES") or "postgresql://postgres@127.0.0.1:5432/postgres"


def default_redis_url() -> str:
    return os.environ.get("ATW_BENCH_REDIS") or "redis://127.0.0.1:6379/0"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of every configuration (default 3)")
    parser.add_argument(
        "--databases", default="sqlite,postgres", help="comma-separated: sqlite, postgres (default both)"
    )
    parser.add_argument(
        "--postgres-url",
        default=default_postgres_url(),
        help="a PostgreSQL database to connect to for creating the benchmark's own "
        "(default: $ATW_TEST_POSTGRES or postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument(
        "--suite",
        choices=("main", "scale", "growth"),
        default="main",
        help="main (default), scale (worker processes) or growth (drains as the table grows)",
    )
    parser.add_argument(
        "--backlogs",
        help="growth suite: comma-separated backlog sizes (default 1000,10000,100000,1000000; "
        "--quick: 1000,5000)",
    )
    parser.add_argument(
        "--history", type=int, help="growth suite: finished rows under the last drain (default 2000000)"
    )
    parser.add_argument(
        "--history-drain",
        type=int,
        help="growth suite: tasks drained on top of the finished rows, 0 for none (default 100000)",
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"scale suite: comma-separated, of {', '.join(SYSTEMS)}"
    )
    parser.add_argument(
        "--redis-url",
        default=default_redis_url(),
        help="scale suite: the Redis database for Huey, Celery and the tasks' marks; its keys of the "
        "benchmark are deleted before and after (default: $ATW_BENCH_REDIS or redis://127.0.0.1:6379/0)",
    )
    parser.add_argument("--output", type=Path, help=f"Markdown report (default {DEFAULT_OUTPUT})")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--profile", choices=DATABASES, help="profile the drain on this database and exit")
    worker_modes = (
        "original",
        *DATABASES,
        *(f"scale-{name}" for name in SYSTEMS),
        *(f"growth-{name}" for name in DATABASES),
    )
    parser.add_argument("--worker-mode", choices=worker_modes, help=argparse.SUPPRESS)
    parser.add_argument("--live", action="store_true", help="run benchmarks/live.py (live progress) instead")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    unknown = set(args.databases) - set(DATABASES)
    if unknown or not args.databases:
        parser.error(f"--databases takes sqlite and/or postgres, got {','.join(args.databases)!r}")
    args.systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    if set(args.systems) - set(SYSTEMS) or not args.systems:
        parser.error(f"--systems takes {', '.join(SYSTEMS)}, got {','.join(args.systems)!r}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        args.backlogs = [int(size) for size in args.backlogs.split(",")] if args.backlogs else None
    except ValueError:
        parser.error(f"--backlogs takes comma-separated numbers of tasks, got {args.backlogs!r}")
    if args.backlogs is not None and (not args.backlogs or min(args.backlogs) < 10):
        parser.error("--backlogs takes sizes of at least 10 tasks (a tenth is measured)")
    if args.history is not None and args.history < 0:
        parser.error("--history must not be negative")
    if args.history_drain is not None and 0 < args.history_drain < 10:
        parser.error("--history-drain must be 0 or at least 10")
    return args


def growth_sizes(args: argparse.Namespace) -> Any:
    """The growth suite's sizes: the defaults (or --quick's), with the options given."""
    import dataclasses

    from benchmarks import growth

    sizes = growth.QUICK if args.quick else growth.FULL
    changes: dict[str, Any] = {}
    if args.backlogs:
        changes["backlogs"] = tuple(args.backlogs)
    if args.history is not None:
        changes["history"] = args.history
    if args.history_drain is not None:
        changes["history_drain"] = args.history_drain
    return dataclasses.replace(sizes, **changes)


# --- child: one configuration, one run ---------------------------------------------------------


def run_steps(plan: Sequence[tuple[str, Callable[[], dict[str, float]]]]) -> dict[str, Any]:
    """Run each workload; a failing one is reported and the others still run."""
    metrics: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name, step in plan:
        started = perf_counter()
        try:
            metrics.update(step())
        except Exception as exc:
            traceback.print_exc()
            errors[name] = "".join(traceback.format_exception_only(exc)).strip()
        print(f"  {name}: {perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return {"metrics": metrics, "errors": errors}


def child_main(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    postgres_url = args.postgres_url
    if mode.startswith("scale-"):
        from benchmarks import scale

        scale_sizes = scale.QUICK if args.quick else scale.FULL
        with (
            scale.log_folder() as logs,
            scale.prepared_system(mode.removeprefix("scale-"), postgres_url, args.redis_url) as system,
        ):
            return {"mode": mode, **run_steps(scale.steps(system, scale_sizes, logs))}
    if mode.startswith("growth-"):
        with databases.fresh_database(mode.removeprefix("growth-"), postgres_url) as environment:
            databases.setup_django(environment)
            from benchmarks import growth

            return {"mode": mode, **run_steps(growth.steps(growth_sizes(args)))}
    if mode == "original":
        from benchmarks import run_original

        return {"mode": mode, **run_steps(run_original.steps(sizes))}
    with databases.fresh_database(mode, postgres_url) as environment:
        databases.setup_django(environment)
        from benchmarks import cache_bench, run_atw

        return {"mode": mode, **run_steps([*run_atw.steps(sizes), *cache_bench.steps(sizes)])}


def profile_main(kind: str, sizes: Sizes, postgres_url: str) -> None:
    with databases.fresh_database(kind, postgres_url) as environment:
        databases.setup_django(environment)
        from benchmarks import run_atw

        run_atw.profile_drain(sizes)


# --- parent: every configuration, every run, then the report ----------------------------------


def run_child(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker-mode", mode, "--json"]
    command += ["--postgres-url", args.postgres_url, "--redis-url", args.redis_url]
    command += ["--quick"] if args.quick else []
    if args.backlogs:
        command += ["--backlogs", ",".join(str(size) for size in args.backlogs)]
    if args.history is not None:
        command += ["--history", str(args.history)]
    if args.history_drain is not None:
        command += ["--history-drain", str(args.history_drain)]
    try:
        done = subprocess.run(
            command, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=CHILD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return {"mode": mode, "metrics": {}, "errors": {"child": f"timed out after {CHILD_TIMEOUT:g} s"}}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"mode": mode, "metrics": {}, "errors": {"child": f"exited with code {done.returncode}"}}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _first_line(path: str, prefix: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return done.stdout.strip()


def machine_facts(postgres_url: str | None) -> dict[str, str]:
    import django

    commit = _git("rev-parse", "--short", "HEAD") or "?"
    changes = _git("diff", "HEAD", "--", "src")
    if changes:
        digest = hashlib.sha256(changes.encode()).hexdigest()[:12]
        commit += f" with uncommitted changes in src/ (diff sha256 {digest})"
    if _git("ls-files", "--others", "--exclude-standard", "--", "src"):
        commit += " and untracked files in src/"
    facts = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": _first_line("/proc/cpuinfo", "model name"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "memory": _first_line("/proc/meminfo", "MemTotal"),
        "load average at start (1, 5, 15 min)": _load_average(),
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "Django": django.get_version(),
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": databases.postgres_version(postgres_url) if postgres_url else "not run",
        "psycopg": _version("psycopg"),
        "async-task-worker (original)": _version("async-task-worker"),
        "django-atw": f"{_version('django-atw')} at commit {commit}",
    }
    return facts


def _load_average() -> str:
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def shown_command(argv: Sequence[str]) -> str:
    """The command line as typed, with any password in a URL hidden."""
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else "python"
    script = os.path.relpath(__file__) if __file__.startswith(os.getcwd()) else __file__
    masked = [re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", arg) for arg in argv]
    return shlex.join([python, script, *masked])


def scale_main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The scale suite: each system's child per run, then its section of the report."""
    from benchmarks import scale, scale_report

    try:
        machine = machine_facts(args.postgres_url)
    except Exception as exc:
        print(f"PostgreSQL is not reachable ({exc}).", file=sys.stderr)
        return 2
    machine.update(scale.versions(args.redis_url))
    started = perf_counter()
    modes = [scale_report.mode(name) for name in args.systems]
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for run in range(args.runs):
        for mode in modes:
            print(f"run {run + 1}/{args.runs}: {mode}", file=sys.stderr, flush=True)
            results[mode].append(run_child(mode, args))
    machine["load average at end (1, 5, 15 min)"] = _load_average()
    machine["suite duration"] = f"{perf_counter() - started:.0f} s"
    sizes = scale.QUICK if args.quick else scale.FULL
    section = scale_report.render(
        machine, shown_command(argv), results, sizes, args.runs, scale.describe(args.systems)
    )
    print(section)
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if output is not None:
        previous = output.read_text(encoding="utf-8") if output.exists() else ""
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(scale_report.splice(previous, section), encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    failed = any(result.get("errors") for runs in results.values() for result in runs)
    return 1 if failed else 0


def growth_main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The growth suite: one child per database and run, then its section of the report."""
    from benchmarks import growth_report

    postgres_url = args.postgres_url if "postgres" in args.databases else None
    try:
        machine = machine_facts(postgres_url)
        if postgres_url:
            machine["PostgreSQL autovacuum"] = databases.postgres_setting(postgres_url, "autovacuum")
    except Exception as exc:
        print(f"PostgreSQL is not reachable ({exc}); pass --databases sqlite to skip it.", file=sys.stderr)
        return 2
    started = perf_counter()
    modes = [growth_report.mode(name) for name in args.databases]
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for run in range(args.runs):
        for mode in modes:
            print(f"run {run + 1}/{args.runs}: {mode}", file=sys.stderr, flush=True)
            results[mode].append(run_child(mode, args))
    machine["load average at end (1, 5, 15 min)"] = _load_average()
    machine["suite duration"] = f"{perf_counter() - started:.0f} s"
    section = growth_report.render(machine, shown_command(argv), results, growth_sizes(args), args.runs)
    print(section)
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if output is not None:
        previous = output.read_text(encoding="utf-8") if output.exists() else ""
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(growth_report.splice(previous, section), encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    failed = any(result.get("errors") for runs in results.values() for result in runs)
    return 1 if failed else 0


def parent_main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    sizes = QUICK if args.quick else FULL
    postgres_url = args.postgres_url if "postgres" in args.databases else None
    try:
        machine = machine_facts(postgres_url)
    except Exception as exc:
        print(f"PostgreSQL is not reachable ({exc}); pass --databases sqlite to skip it.", file=sys.stderr)
        return 2
    modes = [report.ORIGINAL, *args.databases]
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for run in range(args.runs):
        for mode in modes:
            print(f"run {run + 1}/{args.runs}: {mode}", file=sys.stderr, flush=True)
            results[mode].append(run_child(mode, args))
    machine["load average at end (1, 5, 15 min)"] = _load_average()
    text = report.render(machine, shown_command(argv), results, sizes, args.runs)
    print(text)
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if output is not None:
        from benchmarks import growth_report, scale_report

        previous = output.read_text(encoding="utf-8") if output.exists() else ""
        output.parent.mkdir(parents=True, exist_ok=True)
        document = growth_report.carry_over(previous, scale_report.carry_over(previous, text))
        output.write_text(document, encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    failed = any(result.get("errors") for runs in results.values() for result in runs)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.live:
        from benchmarks import live

        return live.main(["--quick"] if args.quick else [])
    if args.worker_mode:
        result = child_main(args.worker_mode, args)
        print(json.dumps(result) if args.json else result, flush=True)
        return 0
    if args.profile:
        profile_main(args.profile, sizes, args.postgres_url)
        return 0
    if args.suite == "scale":
        return scale_main(args, argv)
    if args.suite == "growth":
        return growth_main(args, argv)
    return parent_main(args, argv)


if __name__ == "__main__":
    sys.exit(main())
