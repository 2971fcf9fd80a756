"""Cron schedules without the database: validation, the ticks due in a window, missed-tick policies.

Ticks are instants (aware UTC datetimes). A cron expression is read in the schedule's time
zone, so ``0 3 * * *`` in ``Europe/Berlin`` is 03:00 Berlin time in winter and in summer.
Daylight saving time follows Vixie cron's rule:

- a wall time that does not exist (Berlin, last Sunday of March, 02:00-03:00) runs once, at
  the same distance after the jump: ``30 2 * * *`` ticks at 03:30 CEST that day;
- a wall time that happens twice (last Sunday of October, 02:00-03:00) runs once, the first
  time, unless the hour field is a wildcard (``*``, ``*/2``, ``@hourly``): such schedules
  follow real time and tick in both hours, so ``0 * * * *`` ticks every real hour, and no
  real hour is skipped or doubled in either change.

Code schedules (``@task(schedule=...)``, ``periodic(...)``) are declared here, at import; the
scheduler copies them into ``Schedule`` rows when a worker starts.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .exceptions import ScheduleError

# Ticks this recent are never "missed": a pass that runs late (a busy worker, a slow query)
# still enqueues each of them. Older ones are missed while no worker ran, and the schedule's
# policy decides. A minute covers any sane poll interval and a short database hiccup.
MISSED_AFTER = timedelta(seconds=60)
# Most ticks of one schedule enqueued by one pass: one pass is one short transaction, and a
# long backlog goes over several passes.
MAX_TICKS_PER_PASS = 500
DEFAULT_MAX_CATCH_UP = 100
# Missed ticks counted for the log beyond those run: "1000 or more" is all an operator needs,
# and counting a month of per-second ticks would take seconds.
COUNT_MISSED = 1000


class Missed(enum.StrEnum):
    """What a schedule does with ticks missed while no worker ran (older than ``MISSED_AFTER``)."""

    ONCE = "once"  # run one task for all of them (the latest), unless a current tick runs anyway
    ALL = "all"  # run each of them, up to the schedule's max_catch_up (the latest ones)
    SKIP = "skip"  # run none of them


def check_cron(cron: Any, tz: Any = "UTC", *, where: str = "schedule") -> ZoneInfo:
    """Raise ``ScheduleError`` naming the value unless ``cron`` and ``tz`` are valid; return the zone."""
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise ScheduleError(
            f"{where}: {cron!r} is not a valid cron expression. Write five fields "
            "'minute hour day month weekday' (e.g. '*/5 * * * *'), a sixth for seconds, or @daily."
        )
    try:
        return ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            f"{where}: time zone {tz!r} is unknown. Use an IANA name such as 'UTC' or 'Europe/Berlin'."
        ) from exc


def _wildcard_hour(cron: str) -> bool:
    cron = cron.strip()
    if cron.startswith("@"):
        return cron in ("@hourly",)
    fields = cron.split()
    return len(fields) > 1 and fields[1].startswith("*")


def _instants(naive: datetime, tz: ZoneInfo, both_folds: bool) -> list[datetime]:
    """The instants a wall time in ``tz`` stands for (see the module docstring)."""
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        # In the gap: fold=0 reads it with the offset before the jump, i.e. shifted past it.
        return [first.astimezone(UTC)]
    return [first.astimezone(UTC), second.astimezone(UTC)] if both_folds else [first.astimezone(UTC)]


def _slack(tz: ZoneInfo, *moments: datetime) -> timedelta:
    """How far wall time may jump near ``moments``: zero, except around a DST change."""
    offsets = {
        (m + delta).astimezone(tz).utcoffset() or timedelta(0)
        for m in moments
        for delta in (timedelta(hours=-3), timedelta(hours=3))
    }
    return max(offsets) - min(offsets)


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def ticks_between(cron: str, tz: ZoneInfo, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """The first ``limit`` ticks in ``(after, until]``, oldest first."""
    if until <= after or limit <= 0:
        return []
    slack = _slack(tz, after, until)
    both = _wildcard_hour(cron)
    end = _local(until, tz) + slack
    found: set[datetime] = set()
    it = croniter(cron, _local(after, tz) - slack - timedelta(seconds=1))
    while True:
        naive: datetime = it.get_next(datetime)
        if naive > end:
            break
        found.update(i for i in _instants(naive, tz, both) if after < i <= until)
        if len(found) >= limit and naive > _local(sorted(found)[limit - 1], tz) + slack:
            break
    return sorted(found)[:limit]


def latest_ticks(cron: str, tz: ZoneInfo, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """The last ``limit`` ticks in ``(after, until]``, oldest first (a backlog is read backwards)."""
    if until <= after or limit <= 0:
        return []
    slack = _slack(tz, after, until)
    both = _wildcard_hour(cron)
    start = _local(after, tz) - slack
    found: set[datetime] = set()
    it = croniter(cron, _local(until, tz) + slack + timedelta(seconds=1))
    while True:
        naive: datetime = it.get_prev(datetime)
        if naive <= start:
            break
        found.update(i for i in _instants(naive, tz, both) if after < i <= until)
        if len(found) >= limit and naive < _local(sorted(found)[-limit], tz) - slack:
            break
    return sorted(found)[-limit:]


def next_tick(cron: str, tz: ZoneInfo, after: datetime) -> datetime:
    """The first tick strictly after ``after``."""
    (tick,) = ticks_between(cron, tz, after, after + timedelta(days=400 * 8), 1)
    return tick


@dataclasses.dataclass(frozen=True, slots=True)
class Due:
    """What one pass does for one schedule: ``run`` these ticks, then consider ``handled`` done."""

    run: list[datetime]
    handled: datetime
    dropped: int  # missed ticks the policy dropped, counted up to COUNT_MISSED
    dropped_more: bool  # True when more than ``dropped`` were dropped (the count stopped)
    missed_from: datetime | None  # the window of missed ticks, for the log
    missed_until: datetime | None


def due(
    cron: str,
    tz: ZoneInfo,
    *,
    handled: datetime,
    now: datetime,
    missed: Missed,
    max_catch_up: int,
    per_pass: int = MAX_TICKS_PER_PASS,
) -> Due:
    """Decide which ticks after ``handled`` (all earlier ones are done) to enqueue at ``now``.

    Ticks within ``MISSED_AFTER`` of now always run. Older ones were missed while no worker
    ran: the policy picks among them. At most ``per_pass`` ticks run per call, oldest first;
    ``handled`` then stops at the last one, and the next pass goes on from there.
    Example, a per-minute schedule handled until 09:00, now 12:00:30, policy ONCE: the ticks
    12:00 (within a minute) runs; 09:01-11:59 are missed and dropped, since 12:00 runs anyway.
    """
    recent_from = max(handled, now - MISSED_AFTER)
    missed_run: list[datetime] = []
    dropped = 0
    more = False
    window: tuple[datetime | None, datetime | None] = (None, None)
    if handled < recent_from:
        wanted = {Missed.ONCE: 1, Missed.ALL: max_catch_up, Missed.SKIP: 0}[missed]
        limit = wanted + COUNT_MISSED
        latest = latest_ticks(cron, tz, handled, recent_from, limit)
        if latest:
            window = (latest[0], latest[-1])
            missed_run = latest[-wanted:] if wanted else []
            dropped = len(latest) - len(missed_run)
            more = len(latest) == limit
    recent = ticks_between(cron, tz, recent_from, now, per_pass + 1)
    if missed == Missed.ONCE and recent and missed_run:
        missed_run, dropped = [], dropped + len(missed_run)
    run = missed_run + recent
    if len(run) > per_pass:
        run = run[:per_pass]
        return Due(run, run[-1], dropped, more, *window)
    return Due(run, now, dropped, more, *window)


# --- schedules declared in code ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CodeSchedule:
    """A schedule declared with ``@task(schedule=...)`` or ``periodic(...)``."""

    name: str
    task_type: str
    cron: str
    timezone: str = "UTC"
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    missed: Missed = Missed.ONCE
    max_catch_up: int = DEFAULT_MAX_CATCH_UP


_declared: dict[str, CodeSchedule] = {}


def declare(
    name: str,
    task_type: str,
    cron: str,
    *,
    timezone: str = "UTC",
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    missed: Missed | str = Missed.ONCE,
    max_catch_up: int = DEFAULT_MAX_CATCH_UP,
) -> CodeSchedule:
    """Check and record a code schedule; declaring a name again with other values is an error."""
    where = f"Schedule {name!r}"
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ScheduleError(
            f"A schedule name must be a non-empty string of at most 200 characters, got {name!r}."
        )
    check_cron(cron, timezone, where=where)
    try:
        policy = Missed(missed)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in Missed)
        raise ScheduleError(f"{where}: missed must be one of {choices}, got {missed!r}.") from None
    if isinstance(max_catch_up, bool) or not isinstance(max_catch_up, int) or max_catch_up < 1:
        raise ScheduleError(
            f"{where}: max_catch_up must be a whole number of at least 1, got {max_catch_up!r}."
        )
    try:
        json.dumps([list(args), dict(kwargs or {})])
    except (TypeError, ValueError) as exc:
        raise ScheduleError(
            f"{where}: args and kwargs are stored as JSON, and {exc}. Pass JSON values "
            "(strings, numbers, lists, dicts) and convert inside the task."
        ) from exc
    schedule = CodeSchedule(
        name=name,
        task_type=task_type,
        cron=cron,
        timezone=str(timezone),
        args=tuple(args),
        kwargs=dict(kwargs or {}),
        missed=policy,
        max_catch_up=max_catch_up,
    )
    previous = _declared.get(name)
    if previous is not None and previous != schedule:
        raise ScheduleError(
            f"{where} is declared twice with different values ({previous.cron!r} for "
            f"{previous.task_type!r}, then {cron!r} for {task_type!r}). Give each schedule its own name."
        )
    _declared[name] = schedule
    return schedule


def declared() -> dict[str, CodeSchedule]:
    """The code schedules this process declared, by name."""
    return dict(_declared)


def forget(name: str) -> None:
    """Drop a code schedule declaration (for tests)."""
    _declared.pop(name, None)


def iter_declared() -> Iterator[CodeSchedule]:
    return iter(list(_declared.values()))
