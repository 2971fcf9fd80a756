"""Periodic tasks: one scheduling pass, the admin's "Run now", and the sync of code schedules.

Every worker runs passes (``engine/scheduler.py``); there is no leader. A pass reads the
enabled schedules (one query, so edits apply at the next pass), works out each one's due
ticks (``schedules.due``), and for each schedule in one transaction inserts the tick rows
with ON CONFLICT DO NOTHING and adds, through ``adding.add_with_settings``, a task for each
tick it won. A tick is never recorded without its task, and no task is added twice: a worker
that lost the race inserts nothing and adds nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from . import adding, schedules, store, validation
from .conf import get_settings
from .exceptions import AtwError
from .values import NewTask, ScheduleState

logger = logging.getLogger(__name__)

# Tick rows are only needed while a worker may still compute that tick; kept a week for the
# record (which task each tick added), then pruned by the passes.
TICK_RETENTION = timedelta(days=7)

# The last failure logged per schedule id: a schedule that fails every pass (a task type this
# process does not know) is logged as a warning once per distinct error, then at DEBUG.
_failing: dict[int, str] = {}


@dataclasses.dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass did: tasks added, and the earliest next tick of any enabled schedule."""

    added: list[str]
    next_due: datetime | None


def run_pass(now: datetime | None = None, *, declared: set[str] | None = None) -> PassResult:
    """Enqueue the due ticks of every enabled schedule; one short transaction per schedule.

    ``now`` is the scheduler's clock (tests pass their own). Code schedules that this process
    does not declare (``declared``: default, the names it declared) are skipped: their task
    may be unknown here. A schedule that fails (an unknown task type, a full queue) is logged
    and retried at the next pass; the others go on.
    """
    now = now or timezone.now()
    names = set(schedules.declared()) if declared is None else declared
    added: list[str] = []
    next_due: datetime | None = None
    for state in store.list_schedules(enabled_only=True):
        if state.from_code and state.name not in names:
            continue
        try:
            ids, upcoming = _schedule_pass(state, now)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            level = logging.DEBUG if _failing.get(state.id) == error else logging.WARNING
            _failing[state.id] = error
            logger.log(level, "schedule %r: pass failed (%s); retrying at the next pass", state.name, error)
            continue
        _failing.pop(state.id, None)
        added += ids
        if upcoming is not None and (next_due is None or upcoming < next_due):
            next_due = upcoming
    return PassResult(added, next_due)


def _schedule_pass(state: ScheduleState, now: datetime) -> tuple[list[str], datetime | None]:
    tz = schedules.check_cron(state.cron, state.timezone, where=f"Schedule {state.name!r}")
    if state.handled_until >= now:
        return [], state.next_run_at or schedules.next_tick(state.cron, tz, now)
    decision = schedules.due(
        state.cron,
        tz,
        handled=state.handled_until,
        now=now,
        missed=schedules.Missed(state.missed),
        max_catch_up=state.max_catch_up,
    )
    if decision.dropped:
        logger.warning(
            "schedule %r: %s%d missed ticks between %s and %s were not run (missed=%s)",
            state.name,
            "at least " if decision.dropped_more else "",
            decision.dropped,
            decision.missed_from,
            decision.missed_until,
            state.missed,
        )
    upcoming = schedules.next_tick(state.cron, tz, decision.handled)
    if not decision.run and not decision.dropped and upcoming == state.next_run_at:
        return [], upcoming
    planned = [(tick, str(uuid.uuid4())) for tick in decision.run]
    with transaction.atomic():
        won = set(store.claim_ticks(state.id, planned))
        new = [_new_task(state, tick, task_id) for tick, task_id in planned if task_id in won]
        ids = adding.add_with_settings(new) if new else []
        last = max((tick for tick, task_id in planned if task_id in won), default=None)
        store.advance(
            state.id,
            handled_until=decision.handled,
            next_run_at=upcoming,
            last_run_at=last,
            last_task_id=ids[-1] if ids else "",
        )
    if ids:
        logger.info("schedule %r: added %d task(s) for ticks up to %s", state.name, len(ids), last)
    return ids, upcoming


def _new_task(
    state: ScheduleState, tick: datetime | None, task_id: str, created_by_id: int | None = None
) -> NewTask:
    metadata: dict[str, Any] = {"schedule": state.name}
    if tick is not None:
        metadata["tick"] = tick.isoformat()
    return validation.build(
        state.task_type,
        state.args,
        state.kwargs,
        task_id=task_id,
        metadata=metadata,
        default_queue=get_settings().DEFAULT_QUEUE,
        created_by_id=created_by_id,
    )


def run_now(schedule_id: int, *, created_by: Any = None) -> str:
    """Add one task of a schedule now, outside its ticks (the admin's "Run now"); return its id.

    Through the add path like any task; the schedule's ticks and mark are left alone.
    """
    state = store.get_schedule(schedule_id)
    if state is None:
        raise AtwError(f"Schedule {schedule_id} does not exist.")
    new = _new_task(state, None, str(uuid.uuid4()), getattr(created_by, "pk", created_by))
    (task_id,) = adding.add_with_settings([new])
    return task_id


def sync_code_schedules(now: datetime | None = None) -> list[str]:
    """Copy this process's code schedules into ``Schedule`` rows; return the names created or changed."""
    specs = [
        {
            "name": s.name,
            "task_type": s.task_type,
            "cron": s.cron,
            "timezone": s.timezone,
            "args": list(s.args),
            "kwargs": dict(s.kwargs),
            "missed": s.missed.value,
            "max_catch_up": s.max_catch_up,
        }
        for s in schedules.iter_declared()
    ]
    if not specs:
        return []
    changed = store.sync_code_schedules(specs, now=now or timezone.now())
    if changed:
        logger.info("code schedules created or changed: %s", ", ".join(changed))
    return changed


def prune_ticks(now: datetime | None = None) -> int:
    """Delete one batch of tick rows older than ``TICK_RETENTION``."""
    return store.prune_ticks((now or timezone.now()) - TICK_RETENTION)
