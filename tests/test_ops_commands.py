"""atw_status and atw_purge, run through call_command."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_atw import enqueue, enqueue_many, store
from django_atw.models import Schedule, TaskRecord, WorkerProcess
from django_atw.status import TaskStatus
from tests.helpers.processes import ROOT, django_command, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_status_shows_live_and_stale_workers_and_counts_per_queue_and_status():
    store.register_worker("w-live", "host-a", 11, ["default", "reports"], 8)
    store.register_worker("w-stale", "host-b", 12, ["default"], 2)
    WorkerProcess.objects.filter(id="w-stale").update(last_heartbeat=timezone.now() - timedelta(hours=1))
    enqueue_many("noop", [(), ()])
    enqueue("noop", queue="reports")
    store.claim_batch("w-live", ["reports"], 1)

    output = run("atw_status")

    assert "w-live  live" in output and "queues=default,reports concurrency=8" in output
    assert "w-stale  stale" in output
    assert "default              pending=2  running=0" in output
    assert "reports              pending=0  running=1" in output


def test_status_says_how_many_stopped_workers_are_kept_and_when_they_are_pruned():
    store.register_worker("w-live", "host-a", 11, ["default"], 8)
    for name, hours_ago in (("w-gone", 20), ("w-done", 1)):
        store.register_worker(name, "host-b", 12, ["default"], 2)
        store.mark_worker_stopped(name)
        WorkerProcess.objects.filter(id=name).update(stopped_at=timezone.now() - timedelta(hours=hours_ago))

    output = run("atw_status")

    assert "w-gone" not in output  # stopped rows are listed with --all only
    assert "2 stopped workers kept; rows older than 1 day are pruned by live workers" in output
    assert "the oldest in 3 hours" in output


def test_status_lists_schedules_with_their_next_run():
    next_run = timezone.now().replace(microsecond=0) + timedelta(hours=1)
    Schedule.objects.create(
        name="nightly", task_type="noop", cron="0 3 * * *", timezone="Europe/Berlin", next_run_at=next_run
    )
    Schedule.objects.create(name="paused", task_type="noop", cron="* * * * *", enabled=False, from_code=True)

    output = run("atw_status")

    assert "Schedules (2):" in output
    assert (
        f"nightly  next={next_run:%Y-%m-%d %H:%M:%S} UTC  last=never  cron='0 3 * * *' tz=Europe/Berlin"
        in output
    )
    assert "paused  disabled" in output and "from=code" in output


def test_purge_deletes_old_finished_tasks_of_the_named_status_only():
    old_done, old_failed, new_done, waiting = enqueue_many("noop", [(), (), (), ()])
    long_ago = timezone.now() - timedelta(days=8)
    TaskRecord.objects.filter(id__in=[old_done, old_failed, new_done]).update(
        status=TaskStatus.COMPLETED.value, completed_at=long_ago
    )
    TaskRecord.objects.filter(id=old_failed).update(status=TaskStatus.FAILED.value)
    TaskRecord.objects.filter(id=new_done).update(completed_at=timezone.now())

    output = run("atw_purge", "--older-than", "7d", "--status", "completed", "--batch-size", "1", "--noinput")

    assert output.startswith("deleted 1 completed tasks")
    assert set(TaskRecord.objects.values_list("id", flat=True)) == {old_failed, new_done, waiting}
    run("atw_purge", "--older-than", "1w", "--yes")
    assert set(TaskRecord.objects.values_list("id", flat=True)) == {new_done, waiting}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "7 days"], "expected an age such as 7d, 12h, 30m, 45s or 2w, got '7 days'"),
        (["--older-than", "7d", "--status", "pending"], "expected one of completed, failed, cancelled"),
    ],
)
def test_purge_refuses_bad_options_with_the_expected_form(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("atw_purge", *args)


def _old_finished(count: int) -> list[str]:
    ids = enqueue_many("noop", [() for _ in range(count)])
    TaskRecord.objects.filter(id__in=ids).update(
        status=TaskStatus.COMPLETED.value, completed_at=timezone.now() - timedelta(days=8)
    )
    return ids


def test_purge_dry_run_counts_and_deletes_nothing():
    ids = _old_finished(3)

    output = run("atw_purge", "--older-than", "7d", "--dry-run")

    assert output.startswith("would delete 3 completed/failed/cancelled tasks finished before")
    assert "nothing deleted" in output
    assert TaskRecord.objects.filter(id__in=ids).count() == 3


def test_purge_without_noinput_refuses_when_stdin_is_not_a_terminal(monkeypatch):
    ids = _old_finished(2)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)

    with pytest.raises(CommandError, match="This deletes 2 .* pass --noinput \\(or --yes\\)"):
        call_command("atw_purge", "--older-than", "7d")

    assert TaskRecord.objects.filter(id__in=ids).count() == 2


@pytest.mark.parametrize(("answer", "left"), [("yes", 0), ("n", 2)])
def test_purge_asks_for_confirmation_on_a_terminal(monkeypatch, answer, left):
    ids = _old_finished(2)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    questions: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt: questions.append(prompt) or answer)

    if left:
        with pytest.raises(CommandError, match="purge cancelled: nothing deleted"):
            run("atw_purge", "--older-than", "7d")
    else:
        assert "deleted 2 " in run("atw_purge", "--older-than", "7d")

    assert questions == ["Type 'yes' to delete them: "]
    assert TaskRecord.objects.filter(id__in=ids).count() == left


def test_status_watch_refreshes_until_the_count_with_a_timestamp_line_when_not_a_terminal():
    store.register_worker("w-live", "host-a", 11, ["default"], 8)

    output = run("atw_status", "--watch", "0.01", "--count", "3")

    assert output.count("Workers (1 shown of 1") == 3
    assert output.count("(every 0.01 s)") == 3
    assert "\x1b[2J" not in output


class _Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_status_watch_clears_the_screen_on_a_terminal():
    out = _Terminal()
    call_command("atw_status", "--watch", "0.01", "--count", "2", stdout=out)
    assert out.getvalue().count("\x1b[H\x1b[2J") == 2


def test_status_watch_ends_quietly_on_ctrl_c():
    proc = subprocess.Popen(
        django_command("atw_status", "--watch", "0.2"),
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 2 and time.monotonic() < deadline:  # two refreshes: it keeps going by itself
        if proc.stdout.readline().startswith("Workers ("):
            seen += 1
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert seen == 2
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--watch", "0"], "expected a positive number of seconds, got '0'"),
        (["--watch", "1", "--count", "x"], "expected a positive whole number, got 'x'"),
        (["--count", "2"], "--count only applies with --watch"),
    ],
)
def test_status_refuses_bad_watch_options(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("atw_status", *args)


def test_count_finished_before_is_one_query(django_assert_num_queries):
    _old_finished(2)
    cutoff = timezone.now() - timedelta(days=7)
    with django_assert_num_queries(1):
        assert store.count_finished_before(cutoff, ["completed"]) == 2
    assert store.count_finished_before(cutoff, ["failed"]) == 0
