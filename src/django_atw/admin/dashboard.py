"""The operations dashboard: one admin page of live stats, listed in the admin beside the tasks.

The page is a template and ``dashboard.js``; its numbers arrive over ``/ws/atw/dashboard/``
(``realtime.dashboard``), refreshed every few seconds with no reload. The admin lists it
through the ``OperationsDashboard`` proxy, so it sits at ``<admin>/django_atw/operationsdashboard/``
behind the admin's login; it needs staff status and ``view_taskrecord``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from ..models import OperationsDashboard

if TYPE_CHECKING:
    DashboardAdminBase = admin.ModelAdmin[OperationsDashboard]
else:
    DashboardAdminBase = admin.ModelAdmin

VIEW = "django_atw.view_taskrecord"


@admin.register(OperationsDashboard)
class DashboardAdmin(DashboardAdminBase):
    """Shows the dashboard instead of a change list; there are no rows to add, change or delete."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_staff and request.user.has_perm(VIEW))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        return [path("", self.admin_site.admin_view(self.dashboard_view), name=name)]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Operations dashboard",
            "opts": self.opts,
            "socket_path": "/ws/atw/dashboard/",
        }
        return TemplateResponse(request, "admin/django_atw/dashboard.html", context)
