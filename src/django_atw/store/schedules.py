"""Schedule rows and their ticks: the scheduler's reads, the unique tick insert, code-schedule sync.

Each function is synchronous; its docstring names the transaction it takes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from ..models import Schedule, ScheduleTick
from ..values import ScheduleState

TICK_TABLE = ScheduleTick._meta.db_table
_FIELDS = (
    "id", "name", "task_type", "cron", "timezone", "args", "kwargs", "enabled", "missed",
    "max_catch_up", "from_code", "handled_until", "last_run_at", "next_run_at",
)  # fmt: skip
# Fields a code schedule's declaration owns; the admin may only change ``enabled``.
_CODE_FIELDS = ("task_type", "cron", "timezone", "args", "kwargs", "missed", "max_catch_up")


def list_schedules(*, enabled_only: bool = False) -> list[ScheduleState]:
    """Every schedule (or the enabled ones), by name: one SELECT, no transaction.

    The scheduler calls this every pass, so an edit in the admin is seen at the next pass.
    """
    rows = Schedule.objects.order_by("name")
    if enabled_only:
        rows = rows.filter(enabled=True)
    return [ScheduleState(*row) for row in rows.values_list(*_FIELDS)]


def get_schedule(schedule_id: int) -> ScheduleState | None:
    """One schedule by id, or None."""
    row = Schedule.objects.filter(id=schedule_id).values_list(*_FIELDS).first()
    return ScheduleState(*row) if row is not None else None


def claim_ticks(schedule_id: int, ticks: Sequence[tuple[datetime, str]]) -> list[str]:
    """Insert ``(tick, task_id)`` rows, skipping ticks already taken; return the task ids inserted.

    One INSERT ... ON CONFLICT DO NOTHING RETURNING. Call it inside the transaction that adds
    the tasks: on PostgreSQL a worker inserting the same tick concurrently waits on the unique
    index until the first commits (then skips it) or rolls back (then takes it); on SQLite the
    write lock orders them. So whatever the race, a tick is inserted, with its task, once.
    """
    if not ticks:
        return []
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    values = ", ".join(["(%s, %s, %s, %s)"] * len(ticks))
    params: list[Any] = []
    for tick, task_id in ticks:
        params += [schedule_id, adapt(tick), task_id, adapt(now)]
    sql = (
        f"INSERT INTO {TICK_TABLE} (schedule_id, tick, task_id, created_at) VALUES {values} "
        "ON CONFLICT (schedule_id, tick) DO NOTHING RETURNING task_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def advance(
    schedule_id: int,
    *,
    handled_until: datetime,
    next_run_at: datetime | None,
    last_run_at: datetime | None = None,
    last_task_id: str = "",
) -> bool:
    """Move a schedule's mark forward (never back): one UPDATE, in the caller's transaction.

    A slower worker finishing a pass over an older window leaves a newer mark alone.
    """
    changes: dict[str, object] = {"handled_until": handled_until, "next_run_at": next_run_at}
    if last_run_at is not None:
        changes.update(last_run_at=last_run_at, last_task_id=last_task_id)
    return bool(
        Schedule.objects.filter(id=schedule_id, handled_until__lt=handled_until).update(
            **changes, updated_at=timezone.now()
        )
    )


def prune_ticks(before: datetime, *, batch_size: int = 1000) -> int:
    """Delete up to ``batch_size`` tick rows older than ``before``: one DELETE, autocommit."""
    ids = list(ScheduleTick.objects.filter(tick__lt=before).values_list("id", flat=True)[:batch_size])
    if not ids:
        return 0
    deleted, _ = ScheduleTick.objects.filter(id__in=ids).delete()
    return deleted


def sync_code_schedules(declared: Iterable[dict[str, Any]], *, now: datetime) -> list[str]:
    """Create or update the rows of code schedules by name; return the names created or changed.

    One transaction. ``enabled`` is left as the admin set it. A changed cron, zone or policy
    restarts the schedule from ``now`` (no ticks of the old definition are caught up).
    Rows of code schedules no longer declared are left alone: another worker running older
    code may still declare them; delete them in the admin.
    """
    changed = []
    with transaction.atomic():
        for spec in declared:
            name = str(spec["name"])
            row = Schedule.objects.select_for_update().filter(name=name).first()
            if row is None:
                Schedule.objects.create(name=name, from_code=True, handled_until=now, **_code_values(spec))
                changed.append(name)
                continue
            values = _code_values(spec)
            if row.from_code and all(_same(getattr(row, f), values[f]) for f in _CODE_FIELDS):
                continue
            for field, value in values.items():
                setattr(row, field, value)
            row.from_code = True
            row.handled_until = max(row.handled_until, now)
            row.next_run_at = None
            row.save()
            changed.append(name)
    return changed


def _code_values(spec: dict[str, Any]) -> dict[str, Any]:
    return {field: spec[field] for field in _CODE_FIELDS}


def _same(stored: object, declared: object) -> bool:
    # JSON columns read back lists for tuples: compare as JSON.
    return json.dumps(stored, sort_keys=True, default=str) == json.dumps(
        declared, sort_keys=True, default=str
    )
