"""ASGI entry point: ``daphne example_project.asgi:application`` (or uvicorn, hypercorn).

HTTP goes to Django, WebSockets to django_atw's live progress consumer, and ``with_worker``
runs a task worker inside the server process for as long as the server runs.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from django_atw.asgi import websocket_application, with_worker  # noqa: E402

# Daphne run directly (not through runserver) serves no static files, so in development serve
# them here, for the admin's CSS. A real deployment runs collectstatic behind a web server.
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app

application = with_worker(ProtocolTypeRouter({"http": http_app, "websocket": websocket_application()}))
