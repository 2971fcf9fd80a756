"""Run a task worker in this process until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from ...conf import get_settings
from ...engine.worker import AsyncTaskWorker
from ...store import count_pending
from ..arguments import positive_int, positive_seconds

logger = logging.getLogger("django_atw.worker")
LOG_LEVELS = ("debug", "info", "warning", "error")
# --burst without a terminal prints a progress line at most this often (seconds): enough to see
# a long burst move in a CI log without one line per task.
PLAIN_PROGRESS_EVERY = 2.0
BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Run a django-atw worker: claim pending tasks from the database and run them."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--concurrency", type=positive_int, help="Tasks run at once (ATW MAX_WORKERS).")
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            help="Queue to serve; repeat for several (default queue).",
        )
        parser.add_argument("--poll-interval", type=positive_seconds, help="Seconds between polls.")
        parser.add_argument(
            "--grace", type=positive_seconds, default=30.0, help="Seconds running tasks get on stop."
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Run what is pending, showing progress, and exit when the last task ends.",
        )
        parser.add_argument(
            "--log-level",
            choices=LOG_LEVELS,
            help="Level of the django_atw loggers (info: one line per task start and end). "
            "Default: info, or warning with --burst on a terminal, where the progress bar reports.",
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
        bar = options["burst"] and self.stdout.isatty()
        _configure_logging(options["log_level"] or ("warning" if bar else "info"))
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
            if burst and self.stdout.isatty():
                self.stdout.write("")  # leave the progress bar's line
            self.stdout.write(f"received {signal.Signals(signum).name}: stopping (grace {grace:g} s)")
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        progress = BurstProgress(self.stdout) if burst else None
        if progress is not None:
            # Counted before the first claim, so the bar starts from the whole backlog.
            backlog = await sync_to_async(count_pending)(worker.queues, ready_only=True)
        await worker.start()
        self.stdout.write(
            f"atw worker ready id={worker.worker_id} concurrency={worker.max_workers} "
            f"queues={','.join(worker.queues)}",
        )
        self.stdout.flush()
        if progress is not None:
            progress.show(0, running=0, pending=backlog)
        failed = asyncio.ensure_future(worker.wait_failed())
        until = self._until_drained(worker, stop, progress) if progress is not None else stop.wait()
        done, _ = await asyncio.wait(
            [asyncio.ensure_future(until), failed], return_when=asyncio.FIRST_COMPLETED
        )
        if failed in done:
            # A part of the engine died; the worker stopped itself and logged why.
            await worker.stop(timeout=grace)
            raise CommandError(f"the worker stopped after a failure: {failed.result()!r}")
        failed.cancel()
        await worker.stop(timeout=grace)
        if progress is not None:
            progress.finish(worker.finished_here)
        self.stdout.write("atw worker stopped")

    async def _until_drained(
        self, worker: AsyncTaskWorker, stop: asyncio.Event, progress: BurstProgress
    ) -> None:
        """Return once nothing is pending in the worker's queues and nothing runs here.

        Woken by each commit of outcomes (the moment a task's end is stored), so the last
        task's end ends the wait at once; the poll interval is only the fallback that notices
        tasks added by other processes.
        """
        count = sync_to_async(count_pending)
        while not stop.is_set():
            worker.committed.clear()  # before the checks: a commit during them wakes the wait
            # Read against the flow (done, then running, then pending): a task that moves on
            # between two reads is then missed for a moment, never counted twice (a task that
            # ended during the count, counted running and done, made the total grow for good).
            done = worker.finished_here
            running = len(worker.running_task_ids())
            pending = await count(worker.queues, ready_only=True)
            progress.show(done, running=running, pending=pending)
            # Checked after the count: a claim that emptied the queue is still in flight or
            # its tasks are running by now.
            if pending == 0 and worker.is_idle():
                return
            waits = [asyncio.ensure_future(worker.committed.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(
                    waits, timeout=worker.worker_poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiting in waits:
                    waiting.cancel()


class BurstProgress:
    """``--burst`` progress: a bar redrawn in place on a terminal, else a line every few seconds."""

    def __init__(self, out: OutputWrapper) -> None:
        self._out = out
        self._tty = out.isatty()
        self._last: tuple[int, int, int] | None = None
        self._printed_at = 0.0
        # Only grows: the reads behind each refresh are not one snapshot, and tasks added
        # during the burst join it.
        self.total = 0

    def show(self, done: int, *, running: int, pending: int) -> None:
        state = (done, running, pending)
        if state == self._last:
            return
        now = time.monotonic()
        if not self._tty and self._last is not None and now - self._printed_at < PLAIN_PROGRESS_EVERY:
            return
        self._last, self._printed_at = state, now
        self._write(self._line(done, running=running, pending=pending))

    def finish(self, done: int) -> None:
        """The final count, on its own line (a stop by signal leaves the bar short of full)."""
        pending = self._last[2] if self._last else 0
        self._write(self._line(done, running=0, pending=0 if done >= self.total else pending))
        if self._tty:
            self._out.write("")  # end the bar's line
        self._out.flush()

    def _line(self, done: int, *, running: int, pending: int) -> str:
        self.total = total = max(self.total, done + running + pending)
        text = f"{done}/{total} tasks done, {running} running, {pending} pending"
        if not self._tty:
            return f"burst: {text}"
        filled = BAR_WIDTH if total == 0 else BAR_WIDTH * done // total
        return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {text}"

    def _write(self, line: str) -> None:
        if self._tty:
            # Carriage return and erase-line: the bar is redrawn in place.
            self._out.write(f"\r\x1b[K{line}", ending="")
        else:
            self._out.write(line)
        self._out.flush()


def _configure_logging(level_name: str) -> None:
    """Set the django_atw loggers' level; print to stdout if the project configured no handler."""
    level = getattr(logging, level_name.upper())
    package = logging.getLogger("django_atw")
    package.setLevel(level)
    if not package.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package.addHandler(handler)
