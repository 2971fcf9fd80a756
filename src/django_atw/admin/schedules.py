"""The schedule admin: schedules from code (read-only but for ``enabled``) and from here, "Run now".

Workers re-read the schedules at every pass, so a change here applies at the schedule's next
tick without a restart. A new schedule, a changed cron or zone, or a schedule enabled again
starts from the moment it is saved: ticks before then are not caught up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .. import schedules, scheduling
from ..exceptions import AtwError
from ..models import Schedule

if TYPE_CHECKING:
    ScheduleAdminBase = admin.ModelAdmin[Schedule]
    ScheduleFormBase = forms.ModelForm[Schedule]
else:
    ScheduleAdminBase = admin.ModelAdmin
    ScheduleFormBase = forms.ModelForm

# Fields that define when a schedule ticks: changing one restarts it from now.
_TIMING = ("cron", "timezone", "enabled")


class ScheduleForm(ScheduleFormBase):
    class Meta:
        model = Schedule
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "cron" in data or "timezone" in data:
            cron = data.get("cron", self.instance.cron)
            zone = data.get("timezone", self.instance.timezone)
            try:
                schedules.check_cron(cron, zone, where="This schedule")
            except AtwError as exc:
                raise forms.ValidationError(str(exc)) from None
        return data


@admin.register(Schedule)
class ScheduleAdmin(ScheduleAdminBase):
    """Both kinds of schedule; a code schedule's definition belongs to the code."""

    form = ScheduleForm
    list_display = (
        "name",
        "task_type",
        "cron",
        "timezone",
        "enabled",
        "from_code",
        "missed",
        "last_run_at",
        "next_run_at",
    )
    list_filter = ("enabled", "from_code", "missed")
    search_fields = ("name", "task_type")
    actions = ("run_now", "enable", "disable")
    readonly_fields = ("from_code", "last_run_at", "last_task_id", "next_run_at", "handled_until")

    def get_readonly_fields(self, request: HttpRequest, obj: Schedule | None = None) -> Any:
        if obj is not None and obj.from_code:
            editable = {"enabled"}
            names = [f.name for f in Schedule._meta.fields if f.name not in editable and f.name != "id"]
            return tuple(dict.fromkeys([*names, *self.readonly_fields]))
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        if not change or any(name in form.changed_data for name in _TIMING):
            obj.handled_until = timezone.now()
            obj.next_run_at = None
        super().save_model(request, obj, form, change)

    @admin.action(permissions=["change"], description="Run selected schedules now")
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        """Add one task per schedule through the add path; the schedules' ticks are unchanged."""
        added, failed = 0, []
        for schedule in queryset:
            try:
                scheduling.run_now(schedule.id, created_by=request.user)
                added += 1
            except AtwError as exc:
                failed.append(f"{schedule.name}: {exc}")
        if added:
            self.message_user(request, f"Added {added} task(s).", messages.SUCCESS)
        for line in failed:
            self.message_user(request, line, messages.ERROR)

    @admin.action(permissions=["change"], description="Enable selected schedules (from now)")
    def enable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        changed = queryset.filter(enabled=False).update(
            enabled=True, handled_until=timezone.now(), next_run_at=None
        )
        self.message_user(request, f"Enabled {changed} schedule(s).", messages.SUCCESS)

    @admin.action(permissions=["change"], description="Disable selected schedules")
    def disable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        changed = queryset.filter(enabled=True).update(enabled=False, next_run_at=None)
        self.message_user(request, f"Disabled {changed} schedule(s).", messages.SUCCESS)
