"""The atw_worker command as a real process: burst mode, readiness, graceful SIGTERM."""

import asyncio
import io
import os
import pty
import signal
import subprocess
import time

import pytest

from django_atw import TaskStatus, aenqueue, aenqueue_many, aget_task_info
from tests.conftest import wait_until
from tests.helpers.processes import ROOT, django_command, subprocess_env
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


async def start_worker(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *django_command("atw_worker", *args),
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def read_until(proc: asyncio.subprocess.Process, marker: str) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"worker exited before printing {marker!r}")
            if marker in line:
                return line


async def test_burst_runs_what_is_pending_and_exits_zero():
    ids = await aenqueue_many(tasks.echo, [(i,) for i in range(25)])
    proc = await start_worker("--burst", "--concurrency", "4")
    async with asyncio.timeout(60):
        output, _ = await proc.communicate()
    assert proc.returncode == 0, output.decode()
    for task_id in ids:
        assert (await aget_task_info(task_id)).status == TaskStatus.COMPLETED


async def test_burst_prints_plain_progress_lines_when_stdout_is_not_a_terminal():
    await aenqueue_many(tasks.echo, [(i,) for i in range(5)])
    proc = await start_worker("--burst")
    async with asyncio.timeout(60):
        output, _ = await proc.communicate()
    text = output.decode()
    assert proc.returncode == 0, text
    assert "burst: 0/5 tasks done" in text  # the first line counts the whole backlog
    assert "burst: 5/5 tasks done, 0 running, 0 pending" in text
    assert "\r" not in text


async def test_burst_exits_as_soon_as_the_last_task_ends():
    # A long poll interval: only the commit of the last outcome can end the burst quickly.
    task_id = await aenqueue(tasks.sleep, 0.5)
    proc = await start_worker("--burst", "--poll-interval", "5")
    async with asyncio.timeout(60):
        output, _ = await proc.communicate()
    exited = time.time()
    assert proc.returncode == 0, output.decode()
    info = await aget_task_info(task_id)
    assert info.status == TaskStatus.COMPLETED
    delay = exited - info.completed_at.timestamp()
    assert delay < 1.5, f"the worker exited {delay:.2f} s after the last task ended"


def test_burst_draws_a_progress_bar_on_a_terminal():
    asyncio.run(aenqueue_many(tasks.echo, [(i,) for i in range(6)]))
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        django_command("atw_worker", "--burst"),
        cwd=ROOT,
        env=subprocess_env(),
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the worker exited and closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=30) == 0
    text = b"".join(chunks).decode()
    assert "\r\x1b[K[" in text  # redrawn in place
    assert "[" + "#" * 30 + "] 6/6 tasks done, 0 running, 0 pending" in text
    assert "task started" not in text  # log lines would break the bar: warning level by default


async def test_sigterm_returns_a_running_task_to_pending_and_exits_zero():
    task_id = await aenqueue(tasks.sleep, 60)
    proc = await start_worker("--grace", "0.2", "--poll-interval", "0.05")
    await read_until(proc, "ready")
    await wait_until(lambda: aget_task_info(task_id), lambda info: info.status == TaskStatus.RUNNING)
    proc.send_signal(signal.SIGTERM)
    await read_until(proc, "stopped")
    async with asyncio.timeout(30):
        await proc.wait()
    assert proc.returncode == 0
    info = await aget_task_info(task_id)
    assert (info.status, info.worker_id) == (TaskStatus.PENDING, None)


def test_bad_options_are_refused_with_the_expected_form():
    result = subprocess.run(
        django_command("atw_worker", "--concurrency", "0"),
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "expected a positive whole number, got '0'" in result.stderr


async def test_the_burst_total_never_counts_a_task_that_ends_during_the_count_twice(make_worker, monkeypatch):
    """A refresh read running tasks, then the pending count, then the done count: tasks that
    ended during the count were counted running and done, and the bar's total grew for good."""
    from django_atw.management.commands import atw_worker as command

    worker = await make_worker(max_workers=3)
    names = [f"burst-race-{i}" for i in range(3)]
    ids = [await worker.add_task(tasks.wait_for_gate, name) for name in names]
    for name in names:
        await tasks.started_event(name).wait()
    loop = asyncio.get_running_loop()

    async def finish_all() -> None:
        for name in names:
            tasks.gate(name).set()
        await worker.wait_for_tasks(ids)  # resolved after the outcomes' commit counted them

    real_count = command.count_pending
    ended_during_count = []

    def count_while_the_tasks_end(queues, ready_only=False):
        if not ended_during_count:
            asyncio.run_coroutine_threadsafe(finish_all(), loop).result(timeout=30)
            ended_during_count.append(True)
        return real_count(queues, ready_only=ready_only)

    monkeypatch.setattr(command, "count_pending", count_while_the_tasks_end)
    progress = command.BurstProgress(io.StringIO())
    async with asyncio.timeout(30):
        await command.Command()._until_drained(worker, asyncio.Event(), progress)
    assert ended_during_count
    assert progress.total == 3
