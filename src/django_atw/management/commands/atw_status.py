"""Print the workers and the depth of each queue."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from ... import store
from ...conf import get_settings
from ...status import TaskStatus


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    return f"{(now - moment).total_seconds():.1f}s ago"


class Command(BaseCommand):
    help = "Show worker processes (live, stale or stopped) and task counts per queue and status."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--all", action="store_true", help="Include workers that stopped.")

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        lease = get_settings().WORKER_LEASE
        workers = store.list_workers()
        shown = [w for w in workers if options["all"] or w["stopped_at"] is None]
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
        depths = store.queue_depths()
        self.stdout.write("Queues:")
        if not depths:
            self.stdout.write("  none")
        statuses = [status.value for status in TaskStatus]
        for queue in sorted(depths):
            counts = "  ".join(f"{status}={depths[queue].get(status, 0)}" for status in statuses)
            self.stdout.write(f"  {queue:<20} {counts}")
