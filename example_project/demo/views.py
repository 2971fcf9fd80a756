"""The demo page: enqueue a task, watch the newest tasks, cancel one."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

import django_atw

from .forms import EnqueueForm
from .tasks import DEFAULT_KWARGS

NEWEST = 20
MAX_RESULT_CHARS = 300
ACTIVE = frozenset({django_atw.TaskStatus.PENDING, django_atw.TaskStatus.RUNNING})


@dataclasses.dataclass(frozen=True, slots=True)
class TaskRow:
    """One line of the task table."""

    id: str
    task_type: str
    status: str
    progress: float
    priority: int
    created_at: datetime
    duration: float | None
    outcome: str
    active: bool
    cancel_requested: bool

    @classmethod
    def from_info(cls, record: django_atw.TaskInfo) -> TaskRow:
        if record.status == django_atw.TaskStatus.COMPLETED:
            outcome = json.dumps(record.result, ensure_ascii=False)
        elif record.error:
            kind = record.error_type.rpartition(".")[2]
            outcome = f"{kind}: {record.error}" if kind else record.error
        else:
            outcome = ""
        if len(outcome) > MAX_RESULT_CHARS:
            outcome = outcome[: MAX_RESULT_CHARS - 1] + "…"
        return cls(
            id=record.id,
            task_type=record.task_type,
            status=record.status.value,
            progress=record.progress,
            priority=record.priority,
            created_at=record.created_at,
            duration=record.duration,
            outcome=outcome,
            active=record.status in ACTIVE,
            cancel_requested=record.cancel_requested,
        )


def _initial() -> dict[str, Any]:
    types = django_atw.get_all_task_types()
    first = next((name for name in types if name in DEFAULT_KWARGS), types[0] if types else "")
    return {"task_type": first, "kwargs": _pretty(DEFAULT_KWARGS.get(first, {})), "priority": 0}


def _pretty(kwargs: dict[str, Any]) -> str:
    return json.dumps(kwargs, indent=2, ensure_ascii=False)


@login_required
@require_http_methods(["GET", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    """Show the enqueue form and the newest tasks; on POST, enqueue a task."""
    if request.method == "POST":
        form = EnqueueForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                task_id = django_atw.enqueue(
                    data["task_type"],
                    priority=data["priority"],
                    timeout=data["timeout"],
                    created_by=request.user,
                    **data["kwargs"],
                )
            except django_atw.TaskDefinitionError as exc:
                # Arguments that cannot be stored (not JSON, unknown type...): show why on the form.
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Enqueued {data['task_type']} as task {task_id}.")
                return redirect("demo:index")
    else:
        form = EnqueueForm(initial=_initial())

    rows = [TaskRow.from_info(info) for info in django_atw.get_all_tasks(limit=NEWEST)]
    context = {
        "form": form,
        "rows": rows,
        # Reload every 2 s while a task may still change, but never over a form showing errors.
        # Live WebSocket updates of the progress bars replace this in a later version.
        "auto_refresh": not form.is_bound and any(row.active for row in rows),
        "default_kwargs": {name: _pretty(kwargs) for name, kwargs in DEFAULT_KWARGS.items()},
        "newest": NEWEST,
    }
    return render(request, "demo/index.html", context, status=400 if form.is_bound else 200)


@login_required
@require_POST
def cancel(request: HttpRequest, task_id: str) -> HttpResponse:
    """Cancel a pending task, or ask the worker running it to cancel it."""
    if django_atw.cancel_task(task_id):
        info = django_atw.get_task_info(task_id)
        if info is not None and info.status == django_atw.TaskStatus.CANCELLED:
            messages.info(request, f"Cancelled task {task_id}.")
        else:
            messages.info(request, f"Asked the worker to cancel task {task_id}; it stops at its next poll.")
    else:
        messages.warning(request, f"Task {task_id} is unknown or already finished.")
    return redirect("demo:index")
