"""Run a task worker in this process until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...conf import get_settings
from ...engine.worker import AsyncTaskWorker
from ...store import count_pending

logger = logging.getLogger("django_atw.worker")
LOG_LEVELS = ("debug", "info", "warning", "error")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return number


class Command(BaseCommand):
    help = "Run a django-atw worker: claim pending tasks from the database and run them."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--concurrency", type=_positive_int, help="Tasks run at once (ATW MAX_WORKERS).")
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            help="Queue to serve; repeat for several (default queue).",
        )
        parser.add_argument("--poll-interval", type=_positive_float, help="Seconds between polls.")
        parser.add_argument(
            "--grace", type=_positive_float, default=30.0, help="Seconds running tasks get on stop."
        )
        parser.add_argument("--burst", action="store_true", help="Run what is pending, then exit.")
        parser.add_argument(
            "--log-level",
            choices=LOG_LEVELS,
            default="info",
            help="Level of the django_atw loggers (info: one line per task start and end).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        overrides: dict[str, Any] = {}
        if options["concurrency"]:
            overrides["max_workers"] = options["concurrency"]
        if options["queues"]:
            overrides["queues"] = options["queues"]
        if options["poll_interval"]:
            overrides["worker_poll_interval"] = options["poll_interval"]
        try:
            worker = AsyncTaskWorker.from_settings(**overrides)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        get_settings()
        _configure_logging(options["log_level"])
        asyncio.run(self._run(worker, grace=options["grace"], burst=options["burst"]))

    async def _run(self, worker: AsyncTaskWorker, *, grace: float, burst: bool) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        signals = 0

        def on_signal(signum: int) -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                self.stderr.write(
                    "second signal: exiting now; the running tasks are recovered by another worker "
                    "once this one's lease expires"
                )
                self.stderr.flush()
                # At once: no cleanup that could wait on a database call or a task.
                os._exit(1)
            self.stdout.write(f"received {signal.Signals(signum).name}: stopping (grace {grace:g} s)")
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        await worker.start()
        self.stdout.write(
            f"atw worker ready id={worker.worker_id} concurrency={worker.max_workers} "
            f"queues={','.join(worker.queues)}",
        )
        self.stdout.flush()
        failed = asyncio.ensure_future(worker.wait_failed())
        until = self._until_drained(worker, stop) if burst else stop.wait()
        done, _ = await asyncio.wait(
            [asyncio.ensure_future(until), failed], return_when=asyncio.FIRST_COMPLETED
        )
        if failed in done:
            # A part of the engine died; the worker stopped itself and logged why.
            await worker.stop(timeout=grace)
            raise CommandError(f"the worker stopped after a failure: {failed.result()!r}")
        failed.cancel()
        await worker.stop(timeout=grace)
        self.stdout.write("atw worker stopped")

    async def _until_drained(self, worker: AsyncTaskWorker, stop: asyncio.Event) -> None:
        from asgiref.sync import sync_to_async

        while not stop.is_set():
            pending = await sync_to_async(count_pending)(worker.queues, ready_only=True)
            # Checked after the count: a claim that emptied the queue is still in flight or
            # its tasks are running by now.
            if pending == 0 and worker.is_idle():
                return
            try:
                async with asyncio.timeout(worker.worker_poll_interval):
                    await stop.wait()
            except TimeoutError:
                pass


def _configure_logging(level_name: str) -> None:
    """Set the django_atw loggers' level; print to stdout if the project configured no handler."""
    level = getattr(logging, level_name.upper())
    package = logging.getLogger("django_atw")
    package.setLevel(level)
    if not package.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package.addHandler(handler)
