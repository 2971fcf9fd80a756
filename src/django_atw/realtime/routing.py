"""WebSocket routes of live progress, for ``channels.routing.URLRouter``."""

from __future__ import annotations

from django.urls import path

from .consumers import TaskConsumer

websocket_urlpatterns = [
    path("ws/atw/tasks/", TaskConsumer.as_asgi(), name="atw-tasks-socket"),
]
