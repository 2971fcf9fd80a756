"""Joining a duplicate that runs in another process: a real ``atw_worker`` runs the first one."""

import asyncio
import logging
import signal
import subprocess

import pytest
from django.conf import settings
from django.test import override_settings

from django_atw import TaskStatus, aenqueue, aget_task_info
from django_atw.models import TaskRecord
from tests.conftest import wait_until
from tests.helpers.processes import ROOT, django_command, subprocess_env
from tests.sampleapp import tasks

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        settings.DATABASE_KIND != "postgres",
        reason="starts a worker process: run on PostgreSQL only (ATW_TEST_DATABASE=postgres), "
        "to keep the SQLite run fast",
    ),
]


async def test_a_duplicate_waits_for_the_run_in_another_process(make_worker, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="django_atw.engine.caching")
    gate = str(tmp_path / "gate")
    with override_settings(ATW={"POLL_INTERVAL": 0.05, "CLEANUP_INTERVAL": 0, "CACHE": {"ENABLED": True}}):
        first = await aenqueue(tasks.wait_for_file, gate)
    proc = await asyncio.create_subprocess_exec(
        *django_command("atw_worker", "--poll-interval", "0.05"),
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        await wait_until(lambda: aget_task_info(first), lambda info: info.status == TaskStatus.RUNNING, 60)
        # This worker serves its own queue, so the other process never takes the duplicate.
        here = await make_worker(cache_enabled=True, queues=["joiners"], worker_poll_interval=0.05)
        second = await here.add_task(tasks.wait_for_file, gate, queue="joiners")
        # Open the gate once the second has joined: it is stored running before its worker
        # looks for an equal task, and this worker's cache is not the other process's.
        joined = f"task {second} joins running task {first}"

        async def joins() -> bool:
            return any(record.getMessage().startswith(joined) for record in caplog.records)

        await wait_until(joins, bool)
        (tmp_path / "gate").touch()
        assert await (await here.get_task_future(second)) == "gate"
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await proc.communicate()
    rows = [row async for row in TaskRecord.objects.filter(id__in=[first, second]).values()]
    assert (await aget_task_info(second)).from_cache is True, rows
    assert (await aget_task_info(first)).worker_id != here.worker_id
    assert (tmp_path / "gate.runs").read_text().count("run") == 1
