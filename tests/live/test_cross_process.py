"""A worker in another process moves a subscribed socket's progress: over Redis, and with the
in-memory layer through the web process's relay."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Callable

import pytest

from django_atw import aenqueue
from django_atw.realtime.relay import Relay
from tests.helpers.processes import ROOT, django_command, subprocess_env
from tests.live.conftest import frame, frames_until
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def start_worker() -> AsyncIterator[Callable[..., object]]:
    """Start ``atw_worker`` processes with given settings; stop them at the end of the test."""
    procs: list[asyncio.subprocess.Process] = []

    async def start(settings_module: str) -> asyncio.subprocess.Process:
        env = {**subprocess_env(), "DJANGO_SETTINGS_MODULE": settings_module}
        proc = await asyncio.create_subprocess_exec(
            *django_command("atw_worker", "--poll-interval", "0.05", "--grace", "0.2"),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await proc.wait()


def finished(received: dict) -> bool:
    return received["type"] == "task" and received["task"]["status"] in {"completed", "failed", "cancelled"}


async def watch_steps(connect, make_user) -> tuple[object, str]:
    alice = await make_user("alice")
    task_id = await aenqueue(tasks.steps, 4, 0.3, created_by=alice)
    comm = await connect(alice)
    await comm.send_json_to({"action": "subscribe", "tasks": [task_id]})
    assert (await frame(comm))["tasks"][0]["status"] == "pending"
    return comm, task_id


def assert_moved_then_completed(received: list[dict], task_id: str) -> None:
    assert {f["task"]["id"] for f in received} == {task_id}
    progress = [f["task"]["progress"] for f in received]
    assert progress == sorted(progress)
    assert any(0 < p < 1 for p in progress), progress  # the bar moved before the end
    assert received[-1]["task"]["status"] == "completed" and received[-1]["task"]["result"] == 4


async def test_a_worker_process_reaches_the_socket_over_redis(redis_layer, connect, make_user, start_worker):
    comm, task_id = await watch_steps(connect, make_user)
    await start_worker("tests.live.settings_redis")
    assert_moved_then_completed(await frames_until(comm, finished, timeout=60), task_id)


async def test_with_the_in_memory_layer_the_relay_brings_another_process_s_progress(
    layer, connect, make_user, start_worker
):
    comm, task_id = await watch_steps(connect, make_user)
    relay = Relay(layer, 0.05)
    relay.start()
    try:
        await start_worker("tests.settings")  # no channel layer at all in the worker
        assert_moved_then_completed(await frames_until(comm, finished, timeout=60), task_id)
    finally:
        await relay.stop()
