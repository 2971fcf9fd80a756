"""App configuration: autodiscover ``<app>/tasks.py`` modules and register system checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class AtwConfig(AppConfig):
    name = "django_atw"
    verbose_name = "Async tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)

        # Like admin.autodiscover(): every installed app's tasks.py registers its tasks,
        # so a worker process knows each type a web process may enqueue.
        autodiscover_modules("tasks")

        from .exit_release import watch_interrupts

        watch_interrupts()  # under runserver's autoreloader only
