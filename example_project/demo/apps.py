from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo app: its tasks.py is autodiscovered by django_atw."""

    name = "example_project.demo"
    label = "demo"
    verbose_name = "django-atw demo"
