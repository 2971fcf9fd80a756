"""The task admin: a read-only window on the queue, live bars, and cancel and run-again actions.

Task rows are written only by ``store`` and ``adding``; the admin never saves a task form, so a
stale page can never overwrite what a worker wrote meanwhile.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.forms import Script
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.text import smart_split, unescape_string_literal
from django.utils.translation import gettext_lazy

from .. import adding, registry, shortcuts, validation
from ..exceptions import QueueFullError, TaskDefinitionError
from ..models import TaskRecord
from ..status import TaskStatus
from ..values import NewTask
from ._format import plural
from .task_columns import TaskColumns

if TYPE_CHECKING:
    TaskAdminBase = admin.ModelAdmin[TaskRecord]
else:
    TaskAdminBase = admin.ModelAdmin

# Columns the list never shows and that can hold megabytes (results, tracebacks).
LIST_DEFERRED = ("args", "kwargs", "metadata", "result", "error", "traceback")
# The detail page's sections; every entry is read-only.
DETAIL_FIELDS: dict[str | None, tuple[str, ...]] = {
    None: ("id", "task_type", "status_badge", "progress_bar", "queue", "priority"),
    "Call": ("args_json", "kwargs_json", "metadata_json"),
    "Outcome": ("result_json", "from_cache", "error_type", "error_text", "traceback_text"),
    "Life": (
        "created_at",
        "started_at",
        "completed_at",
        "duration",
        "updated_at",
        "attempts",
        "max_attempts",
        "run_after",
    ),
    "Execution": ("worker_link", "created_by", "timeout", "cancel_requested"),
    "Cache": ("use_cache", "cache_ttl", "cache_key"),
}


class TaskChangeList(ChangeList):
    """The task list, without loading the large JSON and text columns it does not show."""

    def get_queryset(
        self, request: HttpRequest, exclude_parameters: list[str | None] | None = None
    ) -> QuerySet[Any]:
        return super().get_queryset(request, exclude_parameters).defer(*LIST_DEFERRED)


class TaskTypeFilter(admin.SimpleListFilter):
    """Filter by task type, offering the registered types.

    Django's default filter would run SELECT DISTINCT over the whole task table on every page;
    the registry already knows the types this deployment runs.
    """

    title = "task type"
    parameter_name = "task_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in registry.get_all_task_types()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(task_type=value) if value else queryset


@admin.register(TaskRecord)
class TaskRecordAdmin(TaskColumns, TaskAdminBase):
    # Fits a 1200 px screen beside the admin's sidebar and filters: priority and queue are on the
    # detail page (queue is also a filter), the creation time is short with the full one on hover.
    list_display = ("short_id", "task_type", "status_and_progress", "created", "duration")
    # short_id links the row itself, beside its copy button (a link column would wrap both).
    list_display_links = None
    list_filter = ("status", TaskTypeFilter, "queue", ("created_at", admin.DateFieldListFilter))
    search_fields = ("id", "task_type", "metadata")
    search_help_text = "Matches part of the task id, the task type or any text in the metadata."
    ordering = ("-created_at",)
    list_per_page = 50
    # COUNT(*) over a large task table on every page view is slower than the page itself.
    show_full_result_count = False
    actions = ("cancel_tasks", "rerun_tasks", "delete_selected")
    fieldsets = [(title, {"fields": names}) for title, names in DETAIL_FIELDS.items()]
    readonly_fields = tuple(name for names in DETAIL_FIELDS.values() for name in names)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TaskChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[TaskRecord], bool]:
        """Each word must match the id, the type or the metadata's JSON text.

        SQLite stores JSON with non-ASCII characters and quotes escaped (``caf\\u00e9``) while
        PostgreSQL's ``jsonb::text`` does not, so the metadata is matched both ways.
        """
        for bit in smart_split(search_term):
            if bit.startswith(('"', "'")) and bit[0] == bit[-1]:  # a quoted phrase, as Django does
                bit = unescape_string_literal(bit)
            match = Q(id__icontains=bit) | Q(task_type__icontains=bit) | Q(metadata__icontains=bit)
            escaped = json.dumps(bit)[1:-1]
            if escaped != bit:
                match |= Q(metadata__icontains=escaped)
            queryset = queryset.filter(match)
        return queryset, False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TaskRecord | None = None) -> bool:
        """Objects are view-only; the model-level change permission only gates the cancel action."""
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: TaskRecord | None = None) -> bool:
        """A running task cannot be deleted: its worker would write to a row that is gone."""
        if obj is not None and obj.status == TaskStatus.RUNNING.value:
            return False
        return super().has_delete_permission(request, obj)

    def has_rerun_permission(self, request: HttpRequest) -> bool:
        """Running a task again adds one, so it needs the add permission the form never grants."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('add', opts)}")

    class Media:
        # live.js keeps the badges, bars and results of the list and detail pages up to date over a
        # WebSocket; admin.css colours the badges by class, so a live status change recolours them.
        # admin.js ticks running durations, recolours bars by status and copies ids.
        css = {"all": ("django_atw/admin.css",)}
        js = (Script("django_atw/live.js", type="module"), Script("django_atw/admin.js", type="module"))

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts
        cancel = path(
            "<path:object_id>/cancel/",
            self.admin_site.admin_view(self.cancel_view),
            name=f"{opts.app_label}_{opts.model_name}_cancel",
        )
        return [cancel, *super().get_urls()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        can_cancel = (
            obj is not None
            and obj.status in (TaskStatus.PENDING.value, TaskStatus.RUNNING.value)
            and self.has_change_permission(request)
        )
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), "atw_can_cancel": can_cancel}
        )

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: cancel one task (the detail page's Cancel button); needs the change permission."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        task_id = unquote(object_id)
        obj = self.get_object(request, task_id)
        if obj is None:
            self.message_user(request, f"No task with id {task_id!r}.", messages.WARNING)
            return HttpResponseRedirect(reverse(f"{self.admin_site.name}:django_atw_taskrecord_changelist"))
        if not shortcuts.cancel_task(obj.id):
            self.message_user(request, "The task had already finished: nothing to cancel.", messages.WARNING)
        elif obj.status == TaskStatus.RUNNING.value:
            self.message_user(request, "Asked the task's worker to cancel it.", messages.SUCCESS)
        else:
            self.message_user(request, "Cancelled the task.", messages.SUCCESS)
        url = reverse(f"{self.admin_site.name}:django_atw_taskrecord_change", args=[quote(obj.id)])
        return HttpResponseRedirect(url)

    @admin.action(permissions=["change"], description="Cancel selected tasks")
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> None:
        cancelled = requested = finished = 0
        for task_id, status in queryset.values_list("id", "status"):
            if not shortcuts.cancel_task(task_id):
                finished += 1
            elif status == TaskStatus.RUNNING.value:
                requested += 1
            else:
                cancelled += 1
        parts = []
        if cancelled:
            parts.append(f"Cancelled {plural(cancelled)}.")
        if requested:
            parts.append(f"Asked the workers of {plural(requested, 'running task')} to cancel.")
        if finished:
            parts.append(f"{plural(finished)} had already finished and could not be cancelled.")
        level = messages.WARNING if finished else messages.SUCCESS
        self.message_user(request, " ".join(parts) or "No tasks selected.", level)

    @admin.action(permissions=["delete"], description=gettext_lazy("Delete selected %(verbose_name_plural)s"))
    def delete_selected(
        self, request: HttpRequest, queryset: QuerySet[TaskRecord]
    ) -> TemplateResponse | None:
        """Django's delete action, refused while the selection holds a running task."""
        running = queryset.filter(status=TaskStatus.RUNNING.value).count()
        if running:
            self.message_user(
                request,
                f"{plural(running, 'running task')} selected: a running task cannot be deleted. "
                "Cancel it first, or leave it out. Nothing was deleted.",
                messages.ERROR,
            )
            return None
        return django_delete_selected(self, request, queryset)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> None:
        # A task may have started between the confirmation page and the POST: keep it.
        super().delete_queryset(request, queryset.exclude(status=TaskStatus.RUNNING.value))

    @admin.action(permissions=["rerun"], description="Run selected tasks again")
    def rerun_tasks(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> None:
        """Add a new task per selected row (oldest first, so their relative order holds)."""
        fields = ("task_type", "args", "kwargs", "metadata", "priority", "queue", "timeout")
        new: list[NewTask] = []
        refused: list[str] = []
        for row in queryset.order_by("created_at").values(*fields):
            try:
                new.append(
                    validation.build(
                        row["task_type"],
                        row["args"],
                        row["kwargs"],
                        metadata=row["metadata"],
                        priority=row["priority"],
                        queue=row["queue"],
                        timeout=row["timeout"],
                        created_by_id=request.user.pk,
                    )
                )
            except TaskDefinitionError as exc:
                refused.append(str(exc))
        if new:
            try:
                adding.add_with_settings(new)
            except QueueFullError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return
            self.message_user(request, f"Added {plural(len(new), 'new task')}.", messages.SUCCESS)
        if refused:
            self.message_user(
                request, f"{plural(len(refused))} could not be run again: {refused[0]}", messages.ERROR
            )
