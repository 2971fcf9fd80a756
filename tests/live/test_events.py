"""Event payloads, group names and the relay's choice of what to publish."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from django_atw import aenqueue, store
from django_atw.realtime import publisher
from django_atw.realtime.groups import BATCH_TYPE, LIST_GROUP, task_group
from django_atw.realtime.payloads import MAX_RESULT_BYTES, task_payload
from django_atw.realtime.relay import Relay
from tests.sampleapp import tasks


def test_task_groups_are_valid_channel_group_names_for_any_id():
    assert task_group("0b6f-4c2a_x.y") == "atw.task.0b6f-4c2a_x.y"
    odd = task_group("report for Zoë / 2026")
    assert odd.startswith("atw.task.h") and len(odd) < 100 and odd.isascii()
    assert odd != task_group("report for Zoe / 2026")
    assert len(task_group("x" * 255)) < 100


def test_a_result_is_sent_only_when_small():
    now = timezone.now()
    row = {
        "id": "t", "task_type": "echo", "queue": "default", "status": "completed", "progress": 1.0,
        "created_at": now, "started_at": now, "completed_at": now, "error": "", "from_cache": False,
        "attempts": 1, "max_attempts": 3, "run_after": None, "result": {"n": 1},
    }  # fmt: skip
    assert task_payload(row)["result"] == {"n": 1} and task_payload(row)["error"] is None
    big = task_payload({**row, "result": "x" * MAX_RESULT_BYTES})
    assert big["result_truncated"] is True and "result" not in big
    assert "result" not in task_payload({**row, "status": "running"})


async def received_ids(layer, channel: str) -> set[str]:
    ids = set()
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(channel), timeout=0.5)
        except TimeoutError:
            return ids
        events = message["events"] if message["type"] == BATCH_TYPE else [message]
        ids.update(event["task"]["id"] for event in events)


async def claimed_elsewhere() -> tuple[str, str]:
    """A pending task, and a task another process's worker claimed (so it has a worker id)."""
    pending = await aenqueue(tasks.echo)
    running = await aenqueue(tasks.echo, queue="elsewhere")
    await sync_to_async(store.register_worker)("worker-in-another-process", "elsewhere", 1, ["elsewhere"], 1)
    (claim,) = await sync_to_async(store.claim_batch)("worker-in-another-process", ["elsewhere"], 1)
    assert claim.id == running
    return pending, running


@pytest.mark.django_db(transaction=True)
async def test_with_redis_the_relay_publishes_only_what_no_worker_publishes(redis_layer):
    channel = await redis_layer.new_channel()
    await redis_layer.group_add(LIST_GROUP, channel)
    since = timezone.now() - timedelta(seconds=1)
    pending, _running = await claimed_elsewhere()
    relay = Relay(redis_layer, 60)
    try:
        assert await relay.poll(since) == 1
        assert await relay.poll(since) == 0  # nothing changed since
    finally:
        await relay.stop()
    assert await received_ids(redis_layer, channel) == {pending}


@pytest.mark.django_db(transaction=True)
async def test_with_the_in_memory_layer_the_relay_also_publishes_other_processes_tasks(layer):
    channel = await layer.new_channel()
    await layer.group_add(LIST_GROUP, channel)
    since = timezone.now() - timedelta(seconds=1)
    pending, running = await claimed_elsewhere()
    relay = Relay(layer, 60)
    try:
        assert await relay.poll(since) == 2
    finally:
        await relay.stop()
    assert await received_ids(layer, channel) == {pending, running}


async def test_publishing_to_watched_tasks_scans_the_in_memory_layer_once_a_chunk(layer, monkeypatch):
    # The in-memory layer's group_send scans every group it holds before sending: once per
    # watched task, 2,000 watched tasks made each send cost 1.2 ms and a bulk change of them
    # held the web process's loop for seconds (HTTP p99 150-300 ms in benchmarks/relay_http.py).
    channel = await layer.new_channel()
    for i in range(2_000):
        await layer.group_add(task_group(f"t{i}"), channel)
    scans = 0
    scan = layer._clean_expired

    def counted_scan() -> None:
        nonlocal scans
        scans += 1
        scan()

    monkeypatch.setattr(layer, "_clean_expired", counted_scan)
    now = timezone.now()
    row = {
        "task_type": "echo", "queue": "default", "status": "running", "progress": 0.5, "created_at": now,
        "started_at": now, "completed_at": None, "error": "", "from_cache": False, "attempts": 1,
        "max_attempts": 3, "run_after": None, "result": None, "created_by_id": None, "worker_id": "w",
        "updated_at": now,
    }  # fmt: skip
    rows = [{**row, "id": f"t{i}"} for i in range(250)]
    assert await publisher.publish_rows(layer, rows) == 250
    assert scans == 3  # one per chunk of 100 rows (its list-group message), none per task
    # Every watched task's event reached its member.
    delivered = [(await layer.receive(channel))["task"]["id"] for _ in range(250)]
    assert delivered == [f"t{i}" for i in range(250)]
