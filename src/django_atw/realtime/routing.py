"""WebSocket routes of live progress, for ``channels.routing.URLRouter``."""

from __future__ import annotations

from django.urls import path

from .consumers import TaskConsumer
from .dashboard import DashboardConsumer

websocket_urlpatterns = [
    path("ws/atw/tasks/", TaskConsumer.as_asgi(), name="atw-tasks-socket"),
    path("ws/atw/dashboard/", DashboardConsumer.as_asgi(), name="atw-dashboard-socket"),
]
