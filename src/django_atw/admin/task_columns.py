"""The task admin's columns and read-only fields: ids, badges, bars, durations, JSON, links."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from ..models import TaskRecord
from ..status import TaskStatus

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


class TaskColumns:
    """Display methods of ``TaskRecordAdmin`` (list columns and detail fields); every one read-only."""

    admin_site: admin.AdminSite

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
