"""Delete finished task records older than a given age, in batches, after a confirmation."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from ... import store
from ...status import TaskStatus
from ..arguments import positive_int

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_FINISHED = [TaskStatus.COMPLETED.value, TaskStatus.FAILED.value, TaskStatus.CANCELLED.value]


def age(value: str) -> timedelta:
    """Parse ``7d``, ``12h``, ``30m``, ``45s`` or ``2w`` into a timedelta."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected an age such as 7d, 12h, 30m, 45s or 2w, got {value!r}")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def finished_status(value: str) -> str:
    if value not in _FINISHED:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(_FINISHED)}, got {value!r}")
    return value


class Command(BaseCommand):
    help = "Delete finished tasks (completed, failed, cancelled) that ended longer ago than --older-than."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--older-than", type=age, required=True, help="Age of the records to delete: 7d, 12h, 30m..."
        )
        parser.add_argument(
            "--status",
            type=finished_status,
            action="append",
            dest="statuses",
            help="Only this status (completed, failed or cancelled); repeat for several. Default: all three.",
        )
        parser.add_argument(
            "--batch-size", type=positive_int, default=store.DELETE_BATCH, help="Rows deleted per statement."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count the tasks that would be deleted; delete nothing."
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            "--yes",
            action="store_false",
            dest="interactive",
            help="Delete without asking for confirmation.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        cutoff = timezone.now() - options["older_than"]
        statuses = options["statuses"] or _FINISHED
        kinds = "/".join(statuses)
        what = f"{kinds} tasks finished before {cutoff.isoformat()}"
        if options["dry_run"] or options["interactive"]:
            count = store.count_finished_before(cutoff, statuses)
            if options["dry_run"]:
                self.stdout.write(f"would delete {count} {what} (dry run: nothing deleted)")
                return
            if count == 0:
                self.stdout.write(f"deleted 0 {what}")
                return
            self._confirm(f"This deletes {count} {what}.")
        deleted = store.delete_finished_before(cutoff, batch_size=options["batch_size"], statuses=statuses)
        self.stdout.write(self.style.SUCCESS(f"deleted {deleted} {what}"))

    def _confirm(self, question: str) -> None:
        """Ask on the terminal; refuse when nobody can answer (a cron job, a pipe)."""
        if not sys.stdin.isatty():
            raise CommandError(
                f"{question} stdin is not a terminal, so nobody can confirm: "
                "pass --noinput (or --yes) to delete, or --dry-run to count only."
            )
        self.stdout.write(question)
        self.stdout.flush()
        answer = input("Type 'yes' to delete them: ")
        if answer.strip().lower() != "yes":
            raise CommandError("purge cancelled: nothing deleted.")
