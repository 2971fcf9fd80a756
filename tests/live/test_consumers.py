"""The live-progress WebSocket consumer, driven by channels' WebsocketCommunicator."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings
from django.utils import timezone

import django_atw
from django_atw import TaskStatus, aenqueue, aget_task_info
from django_atw.asgi import websocket_application
from django_atw.models import TaskRecord
from django_atw.realtime import protocol, publisher
from django_atw.realtime import relay as relay_module
from django_atw.realtime.publisher import publish_tasks
from django_atw.realtime.relay import Relay
from django_atw.realtime.routing import websocket_urlpatterns
from tests.conftest import wait_until
from tests.live.conftest import SOCKET_PATH, frame, frames_until, tasks_of
from tests.multiprocess.servers import ThrowawayRedis
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def finished(received: dict) -> bool:
    return received["type"] == "task" and received["task"]["status"] in {"completed", "failed", "cancelled"}


async def test_an_anonymous_socket_is_accepted_then_closed_with_4401(layer):
    comm = WebsocketCommunicator(
        websocket_application(), SOCKET_PATH, headers=[(b"origin", b"http://testserver")]
    )
    assert (await comm.connect(timeout=5))[0]  # accepted, so that a browser sees the code
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}


async def test_a_signed_in_session_opens_the_socket_through_the_full_stack(layer, make_user):
    alice = await make_user("alice")
    client = Client()
    await sync_to_async(client.force_login)(alice)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    headers = [(b"origin", b"http://testserver"), (b"cookie", cookie.encode())]
    comm = WebsocketCommunicator(websocket_application(), SOCKET_PATH, headers=headers)
    assert (await comm.connect(timeout=5))[0]
    task_id = await aenqueue(tasks.echo, created_by=alice)
    await comm.send_json_to({"action": "subscribe", "tasks": [task_id]})
    assert [t["id"] for t in (await frame(comm))["tasks"]] == [task_id]
    await comm.disconnect()


async def test_an_inactive_user_is_accepted_then_closed_with_4403(layer, make_user):
    comm = WebsocketCommunicator(
        websocket_application(), SOCKET_PATH, headers=[(b"origin", b"http://testserver")]
    )
    comm.scope["user"] = await make_user("ghost", active=False)
    assert (await comm.connect(timeout=5))[0]
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}


async def test_a_foreign_origin_is_refused(layer, make_user):
    with override_settings(ALLOWED_HOSTS=["good.example"]):
        comm = WebsocketCommunicator(
            websocket_application(), SOCKET_PATH, headers=[(b"origin", b"http://evil.example")]
        )
        comm.scope["user"] = await make_user("alice")
        connected, _ = await comm.connect(timeout=5)
    assert not connected


async def test_subscribe_answers_with_a_snapshot_of_the_stored_state(layer, connect, make_user):
    alice = await make_user("alice")
    task_id = await aenqueue(tasks.echo, 1, created_by=alice)
    comm = await connect(alice)
    await comm.send_json_to({"action": "subscribe", "tasks": [task_id], "ref": 7})
    snapshot = await frame(comm)
    assert (snapshot["type"], snapshot["list"], snapshot["ref"]) == ("snapshot", False, 7)
    (task,) = snapshot["tasks"]
    assert task["id"] == task_id
    assert (task["task_type"], task["queue"], task["status"], task["progress"]) == (
        "echo",
        "default",
        "pending",
        0,
    )
    assert (task["started_at"], task["completed_at"], task["error"], task["attempts"]) == (
        None,
        None,
        None,
        0,
    )
    assert task["created_at"].startswith("20") and "result" not in task


async def test_progress_arrives_in_order_then_the_completion(layer, connect, make_user, make_worker):
    alice = await make_user("alice")
    task_id = await aenqueue(tasks.two_steps, "t", created_by=alice)
    comm = await connect(alice)
    await comm.send_json_to({"action": "subscribe", "tasks": [task_id]})
    assert (await frame(comm))["tasks"][0]["status"] == "pending"

    await make_worker(progress_interval=0.02)
    quarter = await frames_until(comm, lambda f: f["task"]["progress"] == 0.25)
    tasks.gate("t-1").set()
    three_quarters = await frames_until(comm, lambda f: f["task"]["progress"] == 0.75)
    tasks.gate("t-2").set()
    ending = await frames_until(comm, finished)

    received = [f["task"] for f in quarter + three_quarters + ending]
    assert all(f["type"] == "task" for f in quarter + three_quarters + ending)
    assert {t["id"] for t in received} == {task_id}
    assert [t["status"] for t in received[:-1]] == ["running"] * (len(received) - 1)
    progress = [t["progress"] for t in received]
    assert progress == sorted(progress)
    last = received[-1]
    assert (last["status"], last["progress"], last["result"]) == ("completed", 1.0, "t")
    assert last["completed_at"] is not None and last["started_at"] is not None
    assert await comm.receive_nothing(timeout=0.2)


async def test_each_socket_sees_only_its_tasks_and_its_users(layer, connect, make_user, make_worker):
    alice, bob = await make_user("alice"), await make_user("bob")
    carol = await make_user("carol", "view_taskrecord")
    mine = await aenqueue(tasks.process_data, [1, 2, 3], created_by=alice)
    theirs = await aenqueue(tasks.process_data, [4, 5], created_by=bob)

    alice_socket, bob_socket, carol_socket = await connect(alice), await connect(bob), await connect(carol)
    await alice_socket.send_json_to({"action": "subscribe", "tasks": [theirs]})
    refused = await frame(alice_socket)
    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    assert (await frame(alice_socket))["tasks"] == []
    await alice_socket.send_json_to({"action": "subscribe", "list": {}})
    assert [t["id"] for t in (await frame(alice_socket))["tasks"]] == [mine]
    await bob_socket.send_json_to({"action": "subscribe", "tasks": [theirs]})
    assert [t["id"] for t in (await frame(bob_socket))["tasks"]] == [theirs]
    await carol_socket.send_json_to({"action": "subscribe", "list": {"status": "completed"}})
    assert (await frame(carol_socket))["tasks"] == []

    await make_worker()
    alice_frames = await frames_until(alice_socket, finished)
    bob_frames = await frames_until(bob_socket, finished)
    assert {f["task"]["id"] for f in alice_frames} == {mine}
    assert {f["task"]["id"] for f in bob_frames} == {theirs}
    assert alice_frames[-1]["task"]["result"] == [2, 4, 6]
    # Both completions, one "task" frame each or together in one "tasks" frame.
    carol_tasks = tasks_of(await frame(carol_socket))
    if len(carol_tasks) < 2:
        carol_tasks += tasks_of(await frame(carol_socket))
    assert {t["id"] for t in carol_tasks} == {mine, theirs}
    assert {t["status"] for t in carol_tasks} == {"completed"}  # the status filter applies


async def test_bad_requests_get_error_frames_and_the_socket_stays_open(layer, connect, make_user):
    alice = await make_user("alice")
    comm = await connect(alice)
    cases = [
        ({"text_data": "{not json"}, "bad_json", None),
        ({"bytes_data": b"\x00\x01"}, "bad_json", None),
        ({"text_data": "[1, 2]"}, "bad_request", None),
        ({"text_data": '{"action": "dance", "ref": "r1"}'}, "unknown_action", "r1"),
        ({"text_data": '{"action": "subscribe"}'}, "bad_request", None),
        ({"text_data": '{"action": "subscribe", "tasks": "abc"}'}, "bad_request", None),
        ({"text_data": '{"action": "subscribe", "list": {"status": "nope"}}'}, "bad_request", None),
        ({"text_data": '{"action": "subscribe", "list": {"limit": 0}}'}, "bad_request", None),
        ({"text_data": '{"action": "unsubscribe", "list": 3}'}, "bad_request", None),
        ({"text_data": '{"action": "cancel", "task": 5}'}, "bad_request", None),
        ({"text_data": '{"action": "cancel", "task": "missing", "ref": 2}'}, "unknown_task", 2),
    ]
    for kwargs, code, ref in cases:
        await comm.send_to(**kwargs)
        error = await frame(comm)
        assert (error["type"], error["code"]) == ("error", code), kwargs
        assert error.get("ref") == ref and error["message"]
    await comm.send_json_to({"action": "subscribe", "tasks": ["missing"]})
    assert (await frame(comm))["code"] == "unknown_task"
    assert (await frame(comm))["tasks"] == []
    task_id = await aenqueue(tasks.echo, created_by=alice)
    await comm.send_json_to({"action": "subscribe", "tasks": [task_id]})
    assert [t["id"] for t in (await frame(comm))["tasks"]] == [task_id]


async def test_cancel_through_the_socket_needs_ownership_or_the_change_permission(layer, connect, make_user):
    alice, bob = await make_user("alice"), await make_user("bob")
    admin = await make_user("admin", "change_taskrecord")
    own = await aenqueue(tasks.echo, created_by=alice)
    other = await aenqueue(tasks.echo, created_by=alice)

    comm = await connect(alice)
    await comm.send_json_to({"action": "subscribe", "tasks": [own]})
    await frame(comm)
    await comm.send_json_to({"action": "cancel", "task": own, "ref": 1})
    assert await frame(comm) == {"type": "cancel", "task": own, "cancelled": True, "ref": 1}
    event = await frame(comm)
    assert (event["task"]["id"], event["task"]["status"]) == (own, "cancelled")
    assert (await aget_task_info(own)).status == TaskStatus.CANCELLED

    bob_socket = await connect(bob)
    await bob_socket.send_json_to({"action": "cancel", "task": other})
    assert (await frame(bob_socket))["code"] == "forbidden"
    assert (await aget_task_info(other)).status == TaskStatus.PENDING

    admin_socket = await connect(admin)
    await admin_socket.send_json_to({"action": "cancel", "task": other})
    assert await frame(admin_socket) == {"type": "cancel", "task": other, "cancelled": True}
    await admin_socket.send_json_to({"action": "cancel", "task": other})
    assert await frame(admin_socket) == {"type": "cancel", "task": other, "cancelled": False}


async def test_cancel_of_a_running_task_reaches_its_worker(layer, connect, make_user, make_worker):
    alice = await make_user("alice")
    await make_worker()
    task_id = await aenqueue(tasks.wait_for_gate, "held", created_by=alice)
    await tasks.started_event("held").wait()
    comm = await connect(alice)
    await comm.send_json_to({"action": "subscribe", "tasks": [task_id]})
    assert (await frame(comm))["tasks"][0]["status"] == "running"
    await comm.send_json_to({"action": "cancel", "task": task_id})
    ending = await frames_until(comm, finished)
    assert {"type": "cancel", "task": task_id, "cancelled": True} in ending
    assert ending[-1]["task"]["status"] == "cancelled"


async def test_a_list_subscription_sees_new_tasks_through_the_relay(layer, connect, make_user):
    alice = await make_user("alice")
    comm = await connect(alice)
    await comm.send_json_to({"action": "subscribe", "list": {"mine": True}})
    assert (await frame(comm))["tasks"] == []
    relay = Relay(layer, 0.05)
    relay.start()
    try:
        task_id = await aenqueue(tasks.echo, created_by=alice)
        await aenqueue(tasks.echo)  # nobody's: not in alice's list
        event = await frame(comm)
        assert (event["task"]["id"], event["task"]["status"]) == (task_id, "pending")
        await wait_until(lambda: _relayed(relay), lambda n: n >= 2)
        assert await comm.receive_nothing(timeout=0.2)
    finally:
        await relay.stop()


async def test_a_bulk_enqueue_reaches_a_list_in_batches_and_a_watched_task_on_its_own(
    layer, connect, make_user, monkeypatch
):
    monkeypatch.setattr(relay_module, "RELAY_PAGE", 7)  # several pages, several chunks each
    monkeypatch.setattr(publisher, "PUBLISH_CHUNK", 3)
    alice = await make_user("alice")
    lister, watcher = await connect(alice), await connect(alice)
    first = await aenqueue(tasks.echo, created_by=alice)
    await lister.send_json_to({"action": "subscribe", "list": {"mine": True, "limit": 1}})
    assert [t["id"] for t in (await frame(lister))["tasks"]] == [first]
    await watcher.send_json_to({"action": "subscribe", "tasks": [first]})
    await frame(watcher)
    relay = Relay(layer, 0.05)
    relay.start()
    try:
        ids = await sync_to_async(django_atw.enqueue_many)(tasks.echo, [[n] for n in range(30)])
        await sync_to_async(_set_owner)(ids, alice)
        seen: list[str] = []
        batches = 0
        while len(seen) < len(ids):
            received = await frame(lister)
            batches += received["type"] == "tasks"
            seen += [t["id"] for t in tasks_of(received)]
        assert sorted(seen) == sorted(ids) and batches > 1
        assert await django_atw.acancel_task(first)
        event = await frame(watcher)
        assert (event["type"], event["task"]["id"], event["task"]["status"]) == ("task", first, "cancelled")
    finally:
        await relay.stop()


async def test_subscriptions_per_socket_are_capped_and_the_socket_stays_open(
    layer, connect, make_user, monkeypatch
):
    monkeypatch.setattr(protocol, "MAX_SUBSCRIPTIONS", 3)
    ids = await sync_to_async(django_atw.enqueue_many)(tasks.echo, [[n] for n in range(5)])
    comm = await connect(await make_user("viewer", "view_taskrecord"))
    await comm.send_json_to({"action": "subscribe", "tasks": ids[:2]})
    assert len((await frame(comm))["tasks"]) == 2
    await comm.send_json_to({"action": "subscribe", "tasks": ids[2:4], "ref": "more"})
    refused = await frame(comm)
    assert (refused["type"], refused["code"], refused["ref"]) == ("error", "too_many_subscriptions", "more")
    assert "3" in refused["message"]
    # Still open, still serving: ids already held count once, and room is left for one more.
    await comm.send_json_to({"action": "subscribe", "tasks": [ids[0], ids[4]]})
    assert [t["id"] for t in (await frame(comm))["tasks"]] == [ids[0], ids[4]]


def _set_owner(ids: list[str], user) -> None:
    TaskRecord.objects.filter(id__in=ids).update(created_by=user, updated_at=timezone.now())


async def _relayed(relay: Relay) -> int:
    return relay.relayed


async def test_unsubscribe_stops_the_events(layer, connect, make_user, make_worker):
    alice = await make_user("alice")
    task_id = await aenqueue(tasks.echo, created_by=alice)
    comm = await connect(alice)
    await comm.send_json_to({"action": "subscribe", "tasks": [task_id]})
    await frame(comm)
    await comm.send_json_to({"action": "unsubscribe", "tasks": [task_id]})
    worker = await make_worker()
    await worker.wait_for_tasks([task_id], timeout=10)
    assert await comm.receive_nothing(timeout=0.3)


async def test_a_large_result_is_left_out_of_the_event(layer, connect, make_user, make_worker):
    alice = await make_user("alice")
    task_id = await aenqueue(tasks.echo, "x" * 5000, created_by=alice)
    comm = await connect(alice)
    await comm.send_json_to({"action": "subscribe", "tasks": [task_id]})
    await frame(comm)
    await make_worker()
    last = (await frames_until(comm, finished))[-1]["task"]
    assert last["status"] == "completed" and last["result_truncated"] is True and "result" not in last
    await comm.send_json_to({"action": "subscribe", "tasks": [task_id]})
    (stored,) = (await frame(comm))["tasks"]
    assert stored["result_truncated"] is True and "result" not in stored


async def test_a_filtered_list_hears_of_a_task_leaving_the_filter(layer, connect, make_user, make_worker):
    alice = await make_user("alice")
    comm = await connect(alice)
    await comm.send_json_to({"action": "subscribe", "list": {"status": "running"}})
    assert (await frame(comm))["tasks"] == []
    await make_worker()
    task_id = await aenqueue(tasks.wait_for_gate, "listed", created_by=alice)
    running = await frame(comm)
    assert (running["task"]["id"], running["task"]["status"]) == (task_id, "running")
    tasks.gate("listed").set()
    ending = await frames_until(comm, finished)
    assert ending[-1]["task"]["id"] == task_id and ending[-1]["task"]["status"] == "completed"


async def test_without_a_channel_layer_the_socket_fails_with_a_clear_error(make_user):
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), SOCKET_PATH)
    comm.scope["user"] = await make_user("alice")
    with pytest.raises(ImproperlyConfigured, match="needs a channel layer: set CHANNEL_LAYERS"):
        await comm.connect(timeout=5)


async def test_a_socket_survives_a_redis_restart_and_asks_its_client_to_resubscribe(connect, make_user):
    redis = await sync_to_async(ThrowawayRedis)()
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis.url, "socket_timeout": 30}]},
        }
    }
    try:
        with override_settings(CHANNEL_LAYERS=layers):
            redis_layer = get_channel_layer()
            alice = await make_user("alice")
            task_id = await aenqueue(tasks.echo, created_by=alice)
            comm = await connect(alice)
            await comm.send_json_to({"action": "subscribe", "tasks": [task_id]})
            assert (await frame(comm))["type"] == "snapshot"

            await sync_to_async(redis.restart)()  # the groups it held are gone with it
            assert await frame(comm, timeout=30) == {"type": "resync"}
            await comm.send_json_to({"action": "subscribe", "tasks": [task_id]})
            assert (await frame(comm))["type"] == "snapshot"
            # Joined again: events reach the socket.
            assert await django_atw.acancel_task(task_id)
            await publish_tasks([task_id], redis_layer)
            event = await frame(comm)
            assert (event["type"], event["task"]["status"]) == ("task", "cancelled")
            await comm.disconnect()
            await redis_layer.close_pools()
    finally:
        await sync_to_async(redis.stop)()
