"""The dashboard socket: staff only, a full snapshot at once, refreshes that follow the queue."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from django_atw import aenqueue
from django_atw.realtime import dashboard
from django_atw.realtime.routing import websocket_urlpatterns
from tests.live.conftest import frame
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/ws/atw/dashboard/"


@pytest.fixture(autouse=True)
def fast_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "INTERVAL", 0.1)
    monkeypatch.setattr(dashboard, "_shared", None)


async def open_socket(user) -> tuple[WebsocketCommunicator, bool]:
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), PATH)
    comm.scope["user"] = user
    connected, _ = await comm.connect(timeout=5)
    return comm, connected


async def closed_with(user) -> int:
    comm, connected = await open_socket(user)
    assert connected  # accepted first, so that a browser sees the code
    output = await comm.receive_output(timeout=5)
    assert output["type"] == "websocket.close"
    return int(output["code"])


async def test_anonymous_and_non_staff_sockets_are_closed(make_user):
    from django.contrib.auth.models import AnonymousUser

    assert await closed_with(AnonymousUser()) == 4401
    assert await closed_with(await make_user("alice", "view_taskrecord")) == 4403  # not staff
    nobody = await sync_to_async(User.objects.create_user)("bob", is_staff=True)
    assert await closed_with(nobody) == 4403  # staff without view_taskrecord


async def test_staff_get_a_full_snapshot_then_refreshes_that_count_new_work(worker):
    admin = await sync_to_async(User.objects.create_superuser)("root")
    comm, connected = await open_socket(admin)
    assert connected
    first = await frame(comm)
    assert (first["type"], first["full"], first["window"]) == ("stats", True, 3600)
    assert first["throughput"] == []
    assert any(w["id"] == worker.worker_id and w["alive"] for w in first["workers"])

    for n in range(3):
        await aenqueue(tasks.echo, n)
    await aenqueue(tasks.fail, "boom")
    done = failed = 0
    while done < 3 or failed < 1:
        refresh = await frame(comm)
        assert refresh["full"] is False
        done = sum(bucket[1] for bucket in refresh["throughput"])
        failed = sum(bucket[2] for bucket in refresh["throughput"])
    types = {t["task_type"]: t for t in refresh["types"]}
    assert types["echo"]["completed"] == 3
    assert types["fail"]["failure_rate"] == 1.0
    assert types["echo"]["p50"] is not None
    await comm.disconnect()
