"""A channel layer that never answers (Redis accepting connections but hung) must not hang the engine.

The database is the truth and every subscribe gets a snapshot, so events a hung layer cannot
take are dropped: workers keep running tasks, stop within a bound, and hold a bounded backlog.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.test import override_settings

from django_atw import TaskStatus, aenqueue
from django_atw.realtime import layer as layer_module
from django_atw.realtime.groups import task_group
from django_atw.realtime.publisher import MAX_PENDING, EventPublisher, publish_tasks
from django_atw.realtime.relay import Relay
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

HUNG = {"default": {"BACKEND": "tests.live.test_hung_layer.HungLayer", "CONFIG": {"capacity": 1000}}}
# Guards that turn a hang into a failure; a fixed stop takes a few seconds at most.
STOP_GUARD = 15.0


class HungLayer(InMemoryChannelLayer):
    """The in-memory layer, except that ``group_send`` hangs until ``release()``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entered = asyncio.Event()  # a send is hanging
        self._released = asyncio.Event()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.entered.set()
        await self._released.wait()
        await super().group_send(group, message)

    def release(self) -> None:
        self._released.set()


@pytest.fixture
def hung_layer() -> Iterator[HungLayer]:
    with override_settings(CHANNEL_LAYERS=HUNG):
        current = get_channel_layer()
        assert isinstance(current, HungLayer)
        yield current
        current.release()


async def hanging(current: HungLayer) -> None:
    async with asyncio.timeout(10):
        await current.entered.wait()


async def test_a_worker_whose_channel_layer_hangs_runs_its_task_and_stops(hung_layer, make_worker):
    worker = await make_worker(max_workers=2)
    task_id = await worker.add_task(tasks.echo, 1)
    await hanging(hung_layer)  # the worker's publisher is stuck in a send
    future = await worker.get_task_future(task_id)
    async with asyncio.timeout(STOP_GUARD):
        assert await future == {"args": [1], "kwargs": {}}
        await worker.stop()
    assert (await worker.get_task_info(task_id)).status == TaskStatus.COMPLETED


async def test_the_publisher_backlog_stays_bounded_under_a_flood_of_progress(hung_layer):
    watched = await aenqueue(tasks.echo)
    first = await aenqueue(tasks.echo)
    channel = await hung_layer.new_channel()
    await hung_layer.group_add(task_group(watched), channel)
    publisher = EventPublisher(hung_layer, "flooded-worker")
    publisher.start()
    try:
        publisher.progress_committed([(first, 0.1)])
        await hanging(hung_layer)
        publisher.task_started(SimpleNamespace(id=watched))  # queued before the flood
        for start in range(0, 3 * MAX_PENDING, 1000):
            publisher.progress_committed([(f"flood-{n}", 0.5) for n in range(start, start + 1000)])
            assert publisher.pending <= MAX_PENDING
        assert publisher.dropped >= 2 * MAX_PENDING
        # The oldest progress went first: the start of the watched task is still published.
        hung_layer.release()
        message = await asyncio.wait_for(hung_layer.receive(channel), timeout=10)
        assert message["task"]["id"] == watched
    finally:
        async with asyncio.timeout(STOP_GUARD):
            await publisher.stop()


async def test_a_publisher_stopped_while_its_layer_hangs_stops(hung_layer):
    task_id = await aenqueue(tasks.echo)
    publisher = EventPublisher(hung_layer, "stopping-worker")
    publisher.start()
    for n in range(20):
        publisher.progress_committed([(task_id, n / 20)])
    await hanging(hung_layer)
    async with asyncio.timeout(STOP_GUARD):
        await publisher.stop()


async def test_a_relay_stopped_while_its_layer_hangs_stops(hung_layer):
    for _ in range(5):
        await aenqueue(tasks.echo)
    relay = Relay(hung_layer, 0.01)
    relay.start()
    await hanging(hung_layer)  # the relay's first poll is stuck in a send
    async with asyncio.timeout(STOP_GUARD):
        await relay.stop()


async def test_a_hung_layer_is_warned_about_once_per_outage(hung_layer, caplog, monkeypatch):
    monkeypatch.setattr(layer_module, "SEND_TIMEOUT", 0.05)  # only so the test runs fast
    task_id = await aenqueue(tasks.echo)
    caplog.set_level(logging.INFO, logger="django_atw.realtime")
    async with asyncio.timeout(STOP_GUARD):
        for _ in range(3):
            assert await publish_tasks([task_id], hung_layer) == 0
        hung_layer.release()
        assert await publish_tasks([task_id], hung_layer) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "answers again" in caplog.records[-1].getMessage()


# --- the same with a real Redis server that stops answering (SIGSTOP) ---


@pytest.fixture
def stopped_redis() -> Iterator[str]:
    """A throw-away redis-server that accepts connections but never answers; yields its URL."""
    if shutil.which("redis-server") is None:
        pytest.skip("the hung-Redis test needs redis-server on PATH")
    from tests.multiprocess.servers import ThrowawayRedis

    server = ThrowawayRedis()
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield server.url
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


@pytest.fixture
async def hung_redis_layer(stopped_redis: str) -> AsyncIterator[Any]:
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": stopped_redis, "socket_timeout": 30}]},
        }
    }
    with override_settings(CHANNEL_LAYERS=layers):
        yield get_channel_layer()


async def test_a_worker_whose_redis_stopped_answering_runs_its_task_and_stops(hung_redis_layer, make_worker):
    worker = await make_worker(max_workers=2)
    task_id = await worker.add_task(tasks.echo, 2)
    future = await worker.get_task_future(task_id)
    async with asyncio.timeout(STOP_GUARD):
        assert await future == {"args": [2], "kwargs": {}}
        await worker.stop()
    assert (await worker.get_task_info(task_id)).status == TaskStatus.COMPLETED
