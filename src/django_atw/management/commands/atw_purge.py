"""Delete finished task records older than a given age, in batches."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from ... import store
from ...status import TaskStatus

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


def batch_size(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return number


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
            "--batch-size", type=batch_size, default=store.DELETE_BATCH, help="Rows deleted per statement."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        cutoff = timezone.now() - options["older_than"]
        statuses = options["statuses"] or _FINISHED
        deleted = store.delete_finished_before(cutoff, batch_size=options["batch_size"], statuses=statuses)
        kinds = "/".join(statuses)
        self.stdout.write(f"deleted {deleted} {kinds} tasks finished before {cutoff.isoformat()}")
