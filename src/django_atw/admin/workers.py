"""The worker admin: worker processes as they report themselves, read-only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.http import HttpRequest

from ..models import WorkerProcess

if TYPE_CHECKING:
    WorkerAdminBase = admin.ModelAdmin[WorkerProcess]
else:
    WorkerAdminBase = admin.ModelAdmin


@admin.register(WorkerProcess)
class WorkerProcessAdmin(WorkerAdminBase):
    """Workers write their own rows; the admin shows them and may delete stale ones."""

    list_display = (
        "id",
        "hostname",
        "pid",
        "queue_list",
        "concurrency",
        "tasks_running",
        "started_at",
        "last_heartbeat",
        "stopping",
        "stopped_at",
    )
    list_filter = ("stopping", "hostname")
    search_fields = ("id", "hostname")
    ordering = ("-started_at",)

    @admin.display(description="queues")
    def queue_list(self, obj: WorkerProcess) -> str:
        return ", ".join(str(queue) for queue in obj.queues or [])

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WorkerProcess | None = None) -> bool:
        return False
