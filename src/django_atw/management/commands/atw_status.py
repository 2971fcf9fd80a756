"""Print the workers and the depth of each queue, once or every few seconds (``--watch``)."""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.timesince import timeuntil

from ... import store
from ...conf import get_settings
from ...status import TaskStatus
from ..arguments import positive_int, positive_seconds


def _span(seconds: float) -> str:
    """``86400`` -> ``1 day``; a whole number of days, hours or minutes, else seconds."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds:g} s"


# Home the cursor and clear the screen (ANSI), as watch(1) does between refreshes.
_CLEAR = "\x1b[H\x1b[2J"
WATCH_DEFAULT = 2.0


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    return f"{(now - moment).total_seconds():.1f}s ago"


class Command(BaseCommand):
    help = "Show worker processes (live, stale or stopped), task counts per queue and status, and schedules."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--all", action="store_true", help="Include workers that stopped.")
        parser.add_argument(
            "--watch",
            nargs="?",
            type=positive_seconds,
            const=WATCH_DEFAULT,
            metavar="SECONDS",
            help=f"Refresh every SECONDS (default {WATCH_DEFAULT:g}) until Ctrl-C.",
        )
        parser.add_argument(
            "--count",
            type=positive_int,
            help="With --watch: stop after this many refreshes (default: never).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval: float | None = options["watch"]
        if interval is None:
            if options["count"] is not None:
                raise CommandError("--count only applies with --watch.")
            self._report(show_all=options["all"])
            return
        clear = self.stdout.isatty()
        shown = 0
        try:
            while True:
                if clear:
                    self.stdout.write(_CLEAR, ending="")
                else:
                    self.stdout.write(f"--- {timezone.now():%Y-%m-%d %H:%M:%S %Z} (every {interval:g} s)")
                self._report(show_all=options["all"])
                self.stdout.flush()
                shown += 1
                if options["count"] is not None and shown >= options["count"]:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            # Ctrl-C is how a watch ends: leave quietly, with the prompt on a fresh line.
            self.stdout.write("")

    def _report(self, *, show_all: bool) -> None:
        now = timezone.now()
        lease = get_settings().WORKER_LEASE
        workers = store.list_workers()
        shown = [w for w in workers if show_all or w["stopped_at"] is None]
        self.stdout.write(f"Workers ({len(shown)} shown of {len(workers)}; lease {lease:g} s):")
        if not shown:
            self.stdout.write("  none")
        for w in shown:
            if w["stopped_at"] is not None:
                state = "stopped"
            elif (now - w["last_heartbeat"]).total_seconds() > lease:
                state = "stale"
            else:
                state = "live"
            self.stdout.write(
                f"  {w['id']}  {state:<7}  host={w['hostname']} pid={w['pid']} "
                f"queues={','.join(w['queues'])} concurrency={w['concurrency']} "
                f"running={w['tasks_running']} started={w['started_at']:%Y-%m-%d %H:%M:%S} "
                f"heartbeat={_ago(w['last_heartbeat'], now)}"
            )
        self.stdout.write(self._retention(now, workers))
        depths = store.queue_depths()
        self.stdout.write("Queues:")
        if not depths:
            self.stdout.write("  none")
        statuses = [status.value for status in TaskStatus]
        for queue in sorted(depths):
            counts = "  ".join(f"{status}={depths[queue].get(status, 0)}" for status in statuses)
            self.stdout.write(f"  {queue:<20} {counts}")
        self._schedules()

    def _schedules(self) -> None:
        """One line per schedule: when it runs next, when it last ran, and where it comes from."""
        rows = store.list_schedules()
        self.stdout.write(f"Schedules ({len(rows)}):")
        if not rows:
            self.stdout.write("  none")
        for row in rows:
            if not row.enabled:
                next_run = "disabled"
            elif row.next_run_at is None:
                next_run = "next=(at the next pass)"
            else:
                next_run = f"next={row.next_run_at:%Y-%m-%d %H:%M:%S %Z}"
            last = f"{row.last_run_at:%Y-%m-%d %H:%M:%S %Z}" if row.last_run_at else "never"
            self.stdout.write(
                f"  {row.name}  {next_run}  last={last}  cron={row.cron!r} tz={row.timezone} "
                f"task={row.task_type} missed={row.missed} from={'code' if row.from_code else 'admin'}"
            )

    def _retention(self, now: datetime, workers: list[dict[str, Any]]) -> str:
        """One line: how many stopped worker rows are kept, and when live workers prune them."""
        retention = get_settings().WORKER_RETENTION
        stopped = [w["stopped_at"] for w in workers if w["stopped_at"] is not None]
        line = (
            f"{len(stopped)} stopped worker{'' if len(stopped) == 1 else 's'} kept; "
            f"rows older than {_span(retention)} are pruned by live workers"
        )
        if stopped:
            due = min(stopped) + timedelta(seconds=retention)
            # timeuntil joins number and unit with a no-break space; a terminal wants a plain one.
            until = timeuntil(due, now, depth=1).replace("\xa0", " ")
            line += f" (the oldest in {until})" if due > now else " (the oldest is due now)"
        if not any(w["stopped_at"] is None for w in workers):
            line += "; no worker is live to prune them"
        return line + "."
