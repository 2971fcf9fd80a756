"""The task admin: a read-only window on the queue, live bars, and cancel and run-again actions.

Task rows are written only by ``store`` and ``adding``; the admin never saves a task form, so a
stale page can never overwrite what a worker wrote meanwhile.
"""

from __future__ import annotations

import json
from datetime import timedelta
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
from django.utils import dateformat, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import smart_split, unescape_string_literal
from django.utils.translation import gettext_lazy

from .. import adding, registry, shortcuts, validation
from ..exceptions import QueueFullError, TaskDefinitionError
from ..models import TaskRecord
from ..status import TaskStatus
from ..values import NewTask
from ._format import plural

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


# Two overlapping sheets, drawn inline: no icon font, and it scales with the text.
_COPY_ICON = mark_safe(
    '<svg width="10" height="10" viewBox="0 0 16 16" aria-hidden="true" fill="none" stroke="currentColor"'
    ' stroke-width="1.6"><rect x="5" y="5" width="9" height="9" rx="1.5"/>'
    '<path d="M11 5V3.5A1.5 1.5 0 0 0 9.5 2h-6A1.5 1.5 0 0 0 2 3.5v6A1.5 1.5 0 0 0 3.5 11H5"/></svg>'
)


def _pretty_json(value: Any) -> SafeString:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


def _format_duration(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


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
class TaskRecordAdmin(TaskAdminBase):
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

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: TaskRecord) -> SafeString:
        """The id's first 8 characters, linking to the task; the copy button copies all of it."""
        url = reverse(f"{self.admin_site.name}:django_atw_taskrecord_change", args=[quote(obj.id)])
        return format_html(
            '<a href="{}" title="{}"><code>{}</code></a>'
            '<button type="button" class="atw-copy" data-atw-copy="{}" title="Copy the full id"'
            ' aria-label="Copy the full id {}">{}</button>',
            url,
            obj.id,
            obj.id[:8],
            obj.id,
            obj.id,
            _COPY_ICON,
        )

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: TaskRecord) -> SafeString:
        """``14:05:09`` today, ``Dec 6, 14:05`` before; the full time on hover."""
        local = timezone.localtime(obj.created_at)
        short = "H:i:s" if local.date() == timezone.localdate() else "M j, H:i"
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            local.isoformat(),
            dateformat.format(local, "Y-m-d H:i:s T"),
            dateformat.format(local, short),
        )

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: TaskRecord) -> SafeString:
        return format_html(
            '<span class="atw-status atw-status-{}" data-atw-status="{}">{}</span>',
            obj.status,
            obj.id,
            obj.get_status_display(),
        )

    @admin.display(description="status", ordering="status")
    def status_and_progress(self, obj: TaskRecord) -> SafeString:
        """The list's one column for both: the badge, and the bar under it (narrower than two)."""
        return format_html(
            '{}<div class="atw-list-progress">{}</div>', self.status_badge(obj), self.progress_bar(obj)
        )

    @admin.display(description="progress", ordering="progress")
    def progress_bar(self, obj: TaskRecord) -> SafeString:
        value = min(max(obj.progress or 0.0, 0.0), 1.0)
        return format_html(
            '<progress class="atw-progress atw-progress-{}" value="{}" max="1" data-atw-task-id="{}">'
            "</progress> "
            '<span class="atw-progress-text" data-atw-percent="{}">{}%</span>',
            obj.status,
            f"{value:.4f}",
            obj.id,
            obj.id,
            round(value * 100),
        )

    @admin.display(description="duration")
    def duration(self, obj: TaskRecord) -> SafeString:
        """Fixed once the task ended; while it runs, admin.js counts up from ``started_at``."""
        if obj.started_at is None:
            text = ""
        elif obj.completed_at is not None:
            text = _format_duration(obj.completed_at - obj.started_at)
        elif obj.status == TaskStatus.RUNNING.value:
            text = _format_duration(timezone.now() - obj.started_at)
        else:
            text = ""
        return format_html(
            '<span class="atw-duration" data-atw-duration="{}" data-atw-started="{}" '
            'data-atw-running="{}">{}</span>',
            obj.id,
            obj.started_at.isoformat() if obj.started_at else "",
            "1" if obj.status == TaskStatus.RUNNING.value else "",
            text,
        )

    @admin.display(description="args")
    def args_json(self, obj: TaskRecord) -> SafeString:
        return _pretty_json(obj.args)

    @admin.display(description="kwargs")
    def kwargs_json(self, obj: TaskRecord) -> SafeString:
        return _pretty_json(obj.kwargs)

    @admin.display(description="metadata")
    def metadata_json(self, obj: TaskRecord) -> SafeString:
        return _pretty_json(obj.metadata)

    @admin.display(description="result")
    def result_json(self, obj: TaskRecord) -> SafeString:
        return _pretty_json(obj.result)

    @admin.display(description="error")
    def error_text(self, obj: TaskRecord) -> SafeString:
        return format_html("<pre>{}</pre>", obj.error)

    @admin.display(description="traceback")
    def traceback_text(self, obj: TaskRecord) -> SafeString:
        return format_html("<pre>{}</pre>", obj.traceback)

    @admin.display(description="worker")
    def worker_link(self, obj: TaskRecord) -> str:
        """Link by id: the worker row may be gone (no constraint), which must not break the page."""
        if not obj.worker_id:
            return ""
        url = reverse(f"{self.admin_site.name}:django_atw_workerprocess_change", args=[quote(obj.worker_id)])
        return format_html('<a href="{}">{}</a>', url, obj.worker_id)

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
