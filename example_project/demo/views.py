"""The demo page: enqueue a task, watch the newest tasks move live, cancel one.

Rows are rendered here; ``django_atw/live.js`` then keeps their bars, badges and results up to date
over one WebSocket and adds rows for tasks created elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

import django_atw
from django_atw.models import TaskRecord

from .forms import EnqueueForm
from .tasks import CHECKS, DEFAULT_KWARGS

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
    from_cache: bool

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
            from_cache=record.from_cache,
        )


# The session key of the last enqueued form: the next form starts from it (type, arguments...).
LAST_FORM = "demo_last_enqueue"


def _initial(request: HttpRequest) -> dict[str, Any]:
    types = django_atw.get_all_task_types()
    last = request.session.get(LAST_FORM)
    if isinstance(last, dict) and last.get("task_type") in types:
        return last
    first = next((name for name in types if name in DEFAULT_KWARGS), types[0] if types else "")
    return {
        "task_type": first,
        "kwargs": _pretty(DEFAULT_KWARGS.get(first, {})),
        "priority": 0,
        "use_cache": True,
    }


def _check_values(task_type: str, kwargs: dict[str, Any]) -> str | None:
    """The demo task's own value check, run before enqueueing; the message if it refuses."""
    check = CHECKS.get(task_type)
    if check is None:
        return None
    try:
        check(**kwargs)
    except TypeError:
        return None  # arguments the function does not take: enqueue() says which, below
    except ValueError as exc:
        return str(exc)
    return None


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
            refused = _check_values(data["task_type"], data["kwargs"])
            if refused is not None:
                form.add_error("kwargs", refused)
            else:
                try:
                    task_id = django_atw.enqueue(
                        data["task_type"],
                        priority=data["priority"],
                        timeout=data["timeout"],
                        use_cache=data["use_cache"],
                        created_by=request.user,
                        **data["kwargs"],
                    )
                except django_atw.TaskArgumentError as exc:
                    # enqueue() binds the arguments to the function's signature and checks that
                    # they are JSON: a task that could never run is refused now, not when it runs.
                    form.add_error("kwargs", str(exc))
                except django_atw.TaskDefinitionError as exc:
                    form.add_error(None, str(exc))
                else:
                    messages.success(request, f"Enqueued {data['task_type']} as task {task_id}.")
                    request.session[LAST_FORM] = {
                        "task_type": data["task_type"],
                        "kwargs": _pretty(data["kwargs"]),
                        "priority": data["priority"],
                        "timeout": data["timeout"],
                        "use_cache": data["use_cache"],
                    }
                    return redirect("demo:index")
    else:
        form = EnqueueForm(initial=_initial(request))

    sees_all = request.user.has_perm("django_atw.view_taskrecord")
    context = {
        "form": form,
        "rows": [TaskRow.from_info(info) for info in _newest_tasks(request, sees_all)],
        "default_kwargs": {name: _pretty(kwargs) for name, kwargs in DEFAULT_KWARGS.items()},
        "newest": NEWEST,
        "sees_all": sees_all,
        # The live list: every task the user may see, or only their own.
        "list_filters_json": json.dumps({"mine": not sees_all, "limit": NEWEST}),
        "cancels_any": request.user.has_perm("django_atw.change_taskrecord"),
    }
    return render(request, "demo/index.html", context, status=400 if form.is_bound else 200)


def _newest_tasks(request: HttpRequest, sees_all: bool) -> list[django_atw.TaskInfo]:
    """The newest tasks: all of them for a user who may view tasks, else the user's own."""
    if sees_all:
        return django_atw.get_all_tasks(limit=NEWEST)
    own = TaskRecord.objects.filter(created_by_id=request.user.pk).order_by("-created_at")
    infos = (django_atw.get_task_info(task_id) for task_id in own.values_list("id", flat=True)[:NEWEST])
    return [info for info in infos if info is not None]


def _may_cancel(request: HttpRequest, task_id: str) -> bool:
    """Only the task's creator, or a user who may change tasks, cancels it (as over the WebSocket)."""
    if request.user.has_perm("django_atw.change_taskrecord"):
        return True
    owner = TaskRecord.objects.filter(pk=task_id).values_list("created_by_id", flat=True).first()
    return owner is not None and owner == request.user.pk


@login_required
@require_POST
def cancel(request: HttpRequest, task_id: str) -> HttpResponse:
    """Cancel a pending task, or ask the worker running it to cancel it.

    The page's cancel buttons send the request over the WebSocket; this view answers the same
    buttons when the socket is down (they are plain form buttons underneath).
    """
    if not _may_cancel(request, task_id):
        raise PermissionDenied("Only the task's creator or a user who may change tasks can cancel it.")
    if django_atw.cancel_task(task_id):
        info = django_atw.get_task_info(task_id)
        if info is not None and info.status == django_atw.TaskStatus.CANCELLED:
            messages.info(request, f"Cancelled task {task_id}.")
        else:
            messages.info(request, f"Asked the worker to cancel task {task_id}.")
    else:
        messages.warning(request, f"Task {task_id} is unknown or already finished.")
    return redirect("demo:index")
