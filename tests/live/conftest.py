"""Fixtures for live progress: a channel layer, users with or without permissions, sockets."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission, User
from django.test import override_settings

from django_atw.realtime.routing import websocket_urlpatterns
from tests.live.example_server import example_server  # noqa: F401 (a fixture)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}}
SOCKET_PATH = "/ws/atw/tasks/"


def redis_layers() -> dict[str, Any]:
    url = os.environ.get("ATW_TEST_REDIS")
    if not url:
        pytest.skip("the Redis channel layer needs ATW_TEST_REDIS=redis://127.0.0.1:6379/<db>")
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": url, "socket_timeout": 30}]},
        }
    }


@pytest.fixture
async def layer() -> AsyncIterator[Any]:
    """The in-memory channel layer, empty at the start and end of the test."""
    with override_settings(CHANNEL_LAYERS=IN_MEMORY):
        current = get_channel_layer()
        yield current
        await current.flush()


@pytest.fixture
async def redis_layer() -> AsyncIterator[Any]:
    """The Redis channel layer on the test's own Redis database, flushed before and after."""
    with override_settings(CHANNEL_LAYERS=redis_layers()):
        current = get_channel_layer()
        await current.flush()
        yield current
        await current.flush()
        await current.close_pools()


def _make_user(name: str, perms: tuple[str, ...], active: bool) -> User:
    user = User.objects.create_user(name, is_active=active)  # no password: no slow hashing
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return User.objects.get(pk=user.pk)  # fresh: no stale permission cache


@pytest.fixture
def make_user() -> Callable[..., Awaitable[User]]:
    async def factory(name: str, *perms: str, active: bool = True) -> User:
        return await sync_to_async(_make_user)(name, perms, active)

    return factory


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[WebsocketCommunicator]]]:
    """Open sockets to the consumer as a given user; all are closed at the end of the test."""
    opened: list[WebsocketCommunicator] = []
    app = URLRouter(websocket_urlpatterns)

    async def open_socket(user: Any) -> WebsocketCommunicator:
        comm = WebsocketCommunicator(app, SOCKET_PATH)
        comm.scope["user"] = user
        connected, code = await comm.connect(timeout=5)
        assert connected, f"refused with close code {code}"
        opened.append(comm)
        return comm

    yield open_socket
    for comm in opened:
        await comm.disconnect()


async def frame(comm: WebsocketCommunicator, timeout: float = 10) -> dict[str, Any]:
    received: dict[str, Any] = await comm.receive_json_from(timeout=timeout)
    return received


async def frames_until(
    comm: WebsocketCommunicator, done: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> list[dict[str, Any]]:
    """Receive frames until ``done(frame)``; return all of them, the last included."""
    seen = []
    while True:
        seen.append(await frame(comm, timeout))
        if done(seen[-1]):
            return seen


def tasks_of(received: dict[str, Any]) -> list[dict[str, Any]]:
    """The tasks of a ``task`` frame (one) or a ``tasks`` frame (a batch of changes)."""
    return received["tasks"] if received["type"] == "tasks" else [received["task"]]
