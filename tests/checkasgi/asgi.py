"""ASGI applications for tests/test_checks.py; ``application`` is wired as the README says."""

from __future__ import annotations

from typing import Any

from channels.routing import ProtocolTypeRouter
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from django_atw.asgi import EmbeddedEngine, WithWorker, websocket_application

django_app = get_asgi_application()


def _with_worker(app: Any) -> WithWorker:
    return WithWorker(app, EmbeddedEngine())  # an engine of its own: never started here


application = _with_worker(
    ProtocolTypeRouter({"http": ASGIStaticFilesHandler(django_app), "websocket": websocket_application()})
)
no_static = _with_worker(ProtocolTypeRouter({"http": django_app, "websocket": websocket_application()}))
no_socket = _with_worker(ProtocolTypeRouter({"http": ASGIStaticFilesHandler(django_app)}))
socket_only = ProtocolTypeRouter(
    {"http": ASGIStaticFilesHandler(django_app), "websocket": websocket_application()}
)
plain = django_app


async def opaque(scope: Any, receive: Any, send: Any) -> None:
    """An application of unknown shape: nothing can be said about it."""
