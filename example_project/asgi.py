"""ASGI entry point: ``daphne example_project.asgi:application``.

Plain Django over HTTP for now; a Channels router with a WebSocket route for live task
progress comes in a later version.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

django_application = get_asgi_application()

# Daphne run directly (not through runserver) serves no static files, so in development serve
# them here, for the admin's CSS. A real deployment runs collectstatic behind a web server.
application = ASGIStaticFilesHandler(django_application) if settings.DEBUG else django_application
