"""Cron ticks without the database: time zones, daylight saving time, missed-tick policies."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from django_atw import schedules
from django_atw.exceptions import ScheduleError
from django_atw.schedules import Missed, due, latest_ticks, next_tick, ticks_between

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_a_cron_is_read_in_the_schedules_time_zone():
    # 03:00 Berlin is 02:00 UTC in winter and 01:00 UTC in summer.
    assert next_tick("0 3 * * *", BERLIN, utc(2026, 1, 10)) == utc(2026, 1, 10, 2)
    assert next_tick("0 3 * * *", BERLIN, utc(2026, 7, 10)) == utc(2026, 7, 10, 1)


def test_an_hourly_schedule_ticks_once_every_real_hour_across_spring_forward():
    # Berlin jumps from 02:00 CET to 03:00 CEST on 2026-03-29 (01:00 UTC).
    ticks = ticks_between("0 * * * *", BERLIN, utc(2026, 3, 28, 22), utc(2026, 3, 29, 4), 100)
    assert ticks == [utc(2026, 3, 28, 23) + timedelta(hours=h) for h in range(6)]


def test_an_hourly_schedule_ticks_once_every_real_hour_across_fall_back():
    # Berlin goes from 03:00 CEST back to 02:00 CET on 2026-10-25 (01:00 UTC): 02:xx happens twice.
    ticks = ticks_between("0 * * * *", BERLIN, utc(2026, 10, 24, 21), utc(2026, 10, 25, 4), 100)
    assert ticks == [utc(2026, 10, 24, 22) + timedelta(hours=h) for h in range(7)]


def test_a_daily_tick_inside_the_spring_gap_runs_once_just_after_the_jump():
    ticks = ticks_between("30 2 * * *", BERLIN, utc(2026, 3, 27), utc(2026, 3, 31), 100)
    # 02:30 CET, then (no 02:30 on the 29th) 03:30 CEST = 01:30 UTC, then 02:30 CEST.
    assert ticks == [
        utc(2026, 3, 27, 1, 30),
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 30, 0, 30),
    ]


def test_a_daily_tick_inside_the_repeated_hour_runs_once():
    ticks = ticks_between("30 2 * * *", BERLIN, utc(2026, 10, 24), utc(2026, 10, 26, 12), 100)
    # 02:30 CEST on the 24th, the first 02:30 (CEST) on the 25th only, then 02:30 CET.
    assert ticks == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_reading_backwards_finds_the_same_ticks_across_a_dst_change():
    after, until = utc(2026, 10, 24, 21), utc(2026, 10, 25, 4)
    assert latest_ticks("0 * * * *", BERLIN, after, until, 100) == ticks_between(
        "0 * * * *", BERLIN, after, until, 100
    )
    assert latest_ticks("0 * * * *", BERLIN, after, until, 2) == [utc(2026, 10, 25, 3), utc(2026, 10, 25, 4)]


def test_a_sixth_field_ticks_every_second():
    ticks = ticks_between("* * * * * *", ZoneInfo("UTC"), utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 5), 100)
    assert ticks == [utc(2026, 1, 1, 0, 0, s) for s in range(1, 6)]


def test_recent_ticks_run_even_when_a_pass_is_late():
    decision = due(
        "* * * * *", ZoneInfo("UTC"), handled=utc(2026, 1, 1, 12), now=utc(2026, 1, 1, 12, 0, 59),
        missed=Missed.SKIP, max_catch_up=10,
    )  # fmt: skip
    assert decision.run == [] and decision.dropped == 0
    decision = due(
        "* * * * * */10", ZoneInfo("UTC"), handled=utc(2026, 1, 1, 12), now=utc(2026, 1, 1, 12, 0, 35),
        missed=Missed.SKIP, max_catch_up=10,
    )  # fmt: skip
    assert decision.run == [
        utc(2026, 1, 1, 12, 0, 10),
        utc(2026, 1, 1, 12, 0, 20),
        utc(2026, 1, 1, 12, 0, 30),
    ]


@pytest.mark.parametrize(
    ("policy", "expected_run", "expected_dropped"),
    [
        (Missed.ONCE, [utc(2026, 1, 1, 11, 0)], 3),
        (Missed.ALL, [utc(2026, 1, 1, 9, 0), utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 11, 0)], 1),
        (Missed.SKIP, [], 4),
    ],
)
def test_missed_ticks_follow_the_schedules_policy(policy, expected_run, expected_dropped):
    # Hourly, no worker from 07:30 to 11:30: 08:00, 09:00, 10:00 and 11:00 were missed.
    decision = due(
        "0 * * * *", ZoneInfo("UTC"), handled=utc(2026, 1, 1, 7, 30), now=utc(2026, 1, 1, 11, 30),
        missed=policy, max_catch_up=3,
    )  # fmt: skip
    assert decision.run == expected_run
    assert decision.dropped == expected_dropped
    assert decision.handled == utc(2026, 1, 1, 11, 30)


def test_run_once_drops_the_missed_ticks_when_a_current_tick_runs_anyway():
    decision = due(
        "* * * * *", ZoneInfo("UTC"), handled=utc(2026, 1, 1, 9), now=utc(2026, 1, 1, 12, 0, 30),
        missed=Missed.ONCE, max_catch_up=10,
    )  # fmt: skip
    assert decision.run == [utc(2026, 1, 1, 12)]
    assert decision.dropped >= 1


def test_a_long_backlog_is_enqueued_over_several_passes():
    decision = due(
        "* * * * * *", ZoneInfo("UTC"), handled=utc(2026, 1, 1), now=utc(2026, 1, 1, 0, 0, 50),
        missed=Missed.ALL, max_catch_up=100, per_pass=20,
    )  # fmt: skip
    assert decision.run == [utc(2026, 1, 1, 0, 0, s) for s in range(1, 21)]
    assert decision.handled == utc(2026, 1, 1, 0, 0, 20)


@pytest.mark.parametrize("cron", ["61 * * * *", "every minute", "", None])
def test_an_invalid_cron_string_is_refused_with_its_value_named(cron):
    with pytest.raises(ScheduleError, match=re.escape(repr(cron))):
        schedules.check_cron(cron, "UTC")


def test_an_unknown_time_zone_is_refused_with_its_name():
    with pytest.raises(ScheduleError, match="Mars/Olympus"):
        schedules.check_cron("* * * * *", "Mars/Olympus")


def test_arguments_that_are_not_json_are_refused_at_declaration():
    with pytest.raises(ScheduleError, match="'not-json': args and kwargs are stored as JSON"):
        schedules.declare("not-json", "noop", "* * * * *", kwargs={"when": datetime(2026, 1, 1)})
