"""URLs of the HTTP API: ``path("atw/", include("django_atw.api.urls"))``."""

from __future__ import annotations

from django.urls import path, re_path, register_converter

from . import views
from .metrics import metrics_view


class TaskIdConverter:
    """Any non-empty task id, including "/" and line breaks (the ``path`` converter stops at those)."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(TaskIdConverter, "atw_task_id")

app_name = "django_atw_api"

urlpatterns = [
    path("tasks", views.tasks_view, name="tasks"),
    # Before tasks/<id>: a task whose id is "types" is reached through the list, as in the original.
    path("tasks/types", views.types_view, name="task-types"),
    path("tasks/<atw_task_id:task_id>", views.task_view, name="task"),
    path("types", views.types_view, name="types"),
    path("health", views.health_view, name="health"),
    path("openapi.json", views.openapi_view, name="openapi"),
    path("metrics", metrics_view, name="metrics"),
    # Last: any other path under the include answers a JSON 404, not the project's HTML page.
    re_path(r"^", views.unknown_path_view),
]
