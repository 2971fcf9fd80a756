"""The API's endpoints: thin async handlers over the module functions and ``store``.

Every database call runs in a thread (``sync_to_async``), so no view blocks the event loop;
none needs a worker in this process: a web-only process stores tasks for other processes.
"""

from __future__ import annotations

import base64
import inspect
import json
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from pydantic import ValidationError

from .. import adding, asgi, registry, shortcuts, store, validation, wakeup
from ..conf import get_settings
from ..exceptions import DuplicateTaskIdError, TaskArgumentError, TaskDefinitionError
from ..status import TaskStatus
from . import signatures
from .auth import ADD, CHANGE, VIEW, Caller
from .dispatch import api_view, parse_json_object, read_body, require_json
from .errors import NO_ENDPOINT, ApiError, error_body, invalid, invalid_value, json_response
from .openapi import build_document
from .schemas import (
    HealthErrorResponse,
    HealthResponse,
    TaskListQuery,
    TaskListResponse,
    TaskResponse,
    TaskSubmitRequest,
    TaskTypeInfo,
    TaskTypesResponse,
)

# Names enqueue() takes for itself (task_func, priority, ...): a task parameter of the same name
# could not be passed through it.
_ENQUEUE_OPTIONS = frozenset(
    name
    for name, param in inspect.signature(adding.enqueue).parameters.items()
    if param.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
)

_get_visible_task = sync_to_async(store.get_visible_task)
_list_tasks_page = sync_to_async(store.list_tasks_page)
_read_health = sync_to_async(store.read_health)


def _not_found(task_id: str) -> ApiError:
    return ApiError(404, "not_found", f"No task with id {task_id!r}.", field="task_id", task_id=task_id)


# Where an argument of enqueue() sits in the body: the task's kwargs are its params.
_BODY_FIELDS = {"kwargs": "params"}


def _refused_argument(exc: TaskArgumentError) -> ApiError:
    """A 422 at the body field the add path refused (``exc.path``), in its words."""
    if not exc.path:
        return invalid_value(("body",), str(exc))
    name, *inside = exc.path
    field = _BODY_FIELDS.get(str(name), str(name))
    message = str(exc)
    if message.startswith(f"{name}["):  # "kwargs['note'] holds ..." -> "params['note'] holds ..."
        message = field + message[len(str(name)) :]
    return invalid_value(("body", field, *inside), message)


# --- tasks ----------------------------------------------------------------------------------


async def submit_task(request: HttpRequest, caller: Caller) -> HttpResponse:
    """POST tasks: validate, store, answer 201 with the stored task."""
    await caller.require(ADD, "submit tasks")
    try:
        raw = read_body(request)
        if raw:  # an empty body declares nothing: parse_json_object says it is empty
            require_json(request)
        body = TaskSubmitRequest.model_validate(parse_json_object(raw))
    except ValidationError as exc:
        raise invalid(exc, "body") from None
    func = registry.get_task_function(body.task_type)
    if func is None:
        known = ", ".join(registry.get_all_task_types()) or "none"
        raise ApiError(
            400,
            "unknown_task_type",
            f"Unknown task type {body.task_type!r}. Known: {known}.",
            field="task_type",
        )
    clashing = sorted(set(body.params) & _ENQUEUE_OPTIONS)
    if clashing:
        raise ApiError(
            400,
            "invalid_params",
            f"params.{clashing[0]} is a name enqueue() keeps for its own option; "
            "a task parameter cannot have it.",
            field=f"params.{clashing[0]}",
        )
    if validation.PROGRESS_CALLBACK in body.params:
        raise ApiError(
            400,
            "invalid_params",
            "params.progress_callback is passed by the worker when the task runs; do not send it.",
            field="params.progress_callback",
        )
    problem = validation.binding_error(func, body.args, body.params)
    if problem is not None:
        raise ApiError(
            400, "invalid_params", f"Task {body.task_type!r} cannot be called so: {problem}.", field="params"
        )
    options: dict[str, Any] = {
        "priority": body.priority,
        "task_id": body.task_id,
        "metadata": body.metadata,
        "timeout": body.timeout,
        "use_cache": body.use_cache,
        "cache_ttl": body.cache_ttl,
        "queue": body.queue,
        "created_by": caller.user,
    }
    if body.run_after is not None:
        options["run_after"] = body.run_after
    try:
        task_id = await adding.aenqueue(body.task_type, *body.args, **options, **body.params)
    except DuplicateTaskIdError as exc:
        raise ApiError(409, "duplicate_task_id", str(exc), field="task_id", task_id=exc.task_id) from None
    except TaskArgumentError as exc:
        raise _refused_argument(exc) from None
    except TaskDefinitionError as exc:
        raise ApiError(400, "invalid_task", str(exc)) from None
    info = await shortcuts.aget_task_info(task_id)
    if info is None:  # deleted between the insert and the read (retention, an admin)
        raise _not_found(task_id)
    response = json_response(TaskResponse.from_info(info), 201)
    response["Location"] = reverse("django_atw_api:task", kwargs={"task_id": task_id})
    return response


def _encode_cursor(key: tuple[datetime, str]) -> str:
    raw = json.dumps([key[0].isoformat(), key[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, task_id = json.loads(raw)
        when = datetime.fromisoformat(created_at)
        if not isinstance(task_id, str) or when.tzinfo is None:
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError):
        raise invalid_value(
            ("query", "cursor"), "cursor is not a value this API gave as 'next'; start without it."
        ) from None
    return when, task_id


async def list_tasks(request: HttpRequest, caller: Caller) -> HttpResponse:
    """GET tasks: one page, newest first, with filters; users without view see their own."""
    for name, values in request.GET.lists():
        if len(values) > 1:  # QueryDict.dict() would keep the last one silently
            raise invalid_value(
                ("query", name),
                f"{name} is given {len(values)} times; give each query parameter once.",
            )
    try:
        query = TaskListQuery.model_validate(request.GET.dict())
    except ValidationError as exc:
        raise invalid(exc, "query") from None
    owner_id = await caller.owner_filter()
    if query.created_by == "me":
        owner_id = caller.user.pk
    filters = store.PageFilters(
        status=query.status or query.task_status,
        task_type=query.task_type,
        queue=query.queue,
        created_before=(
            timezone.now() - timedelta(minutes=query.older_than_minutes)
            if query.older_than_minutes is not None
            else None
        ),
        owner_id=owner_id,
    )
    after = _decode_cursor(query.cursor) if query.cursor else None
    page, next_key = await _list_tasks_page(filters, query.limit, after)
    body = TaskListResponse(
        tasks=[TaskResponse.from_info(info) for info in page],
        count=len(page),
        next=_encode_cursor(next_key) if next_key is not None else None,
    )
    return json_response(body)


async def _visible_task(caller: Caller, task_id: str) -> Any:
    if "\x00" in task_id:
        raise _not_found(task_id)
    info = await _get_visible_task(task_id, await caller.owner_filter())
    if info is None:
        raise _not_found(task_id)
    return info


async def get_task(request: HttpRequest, caller: Caller, task_id: str) -> HttpResponse:
    """GET tasks/<id>: a task the caller may see, else 404 (whether or not it exists)."""
    return json_response(TaskResponse.from_info(await _visible_task(caller, task_id)))


async def cancel_task(request: HttpRequest, caller: Caller, task_id: str) -> HttpResponse:
    """DELETE tasks/<id>: cancel; 204 also when it had already finished (left unchanged)."""
    await caller.require(CHANGE, "cancel tasks")
    info = await _visible_task(caller, task_id)
    if not info.status.is_terminal and not await shortcuts.acancel_task(task_id):
        raise ApiError(
            409,
            "not_cancellable",
            f"Task {task_id!r} could not be cancelled: it finished meanwhile.",
            task_id=task_id,
        )
    return HttpResponse(status=204)


# --- types, health, schema ------------------------------------------------------------------


async def task_types(request: HttpRequest, caller: Caller) -> HttpResponse:
    """GET types and tasks/types: registered task types with their parameter schemas."""
    if not (await caller.may(VIEW) or await caller.may(ADD)):
        raise ApiError(
            403, "permission_denied", f"You need the permission {VIEW!r} or {ADD!r} to list task types."
        )
    described = []
    for name in registry.get_all_task_types():
        func = registry.get_task_function(name)
        if func is None:  # unregistered meanwhile
            continue
        parameters, accepts_args = signatures.parameters_schema(func)
        described.append(
            TaskTypeInfo(
                name=name,
                description=signatures.first_docstring_line(func),
                parameters=parameters,
                accepts_args=accepts_args,
            )
        )
    return json_response(TaskTypesResponse(task_types=[t.name for t in described], types=described))


def _embedded_worker() -> Any:
    """The worker the ASGI server runs in this process (``django_atw.asgi``), if it is running."""
    worker = asgi.engine.worker
    return worker if worker is not None and worker.running else None


async def health(request: HttpRequest, caller: Caller | None) -> HttpResponse:
    """GET health: 200 while the database answers (status ok when a worker is alive), else 503.

    worker_count is the original's: task slots (its pool's size), here summed over the live
    workers of every process. This process's embedded worker counts once, even when its heartbeat
    is late: it is running.
    """
    local = wakeup.local_worker_count() > 0
    embedded = _embedded_worker()
    # Alive while within its lease: the workers whose running tasks lease recovery leaves alone.
    alive_since = timezone.now() - timedelta(seconds=get_settings().WORKER_LEASE)
    counts = await _read_health(alive_since, excluding=embedded.worker_id if embedded else None)
    processes = counts.workers_alive + (1 if embedded else 0)
    body = HealthResponse(
        status="ok" if processes > 0 else "stopped",
        worker_count=counts.worker_slots + (embedded.max_workers if embedded else 0),
        worker_processes=processes,
        queue_size=counts.pending,
        local_worker=local,
        queue_depth={TaskStatus.PENDING.value: counts.pending, TaskStatus.RUNNING.value: counts.running},
        database=True,
    )
    return json_response(body)


def _health_unavailable() -> HttpResponse:
    """GET health's 503: the database failed (reading the counts, or the caller's token)."""
    error = error_body(503, "unavailable", "The database does not answer; no task can be stored or run.")
    body = HealthErrorResponse(
        status="stopped",
        worker_count=0,
        worker_processes=0,
        queue_size=0,
        local_worker=wakeup.local_worker_count() > 0,
        queue_depth={},
        database=False,
        **dict(error),
    )
    return json_response(body, 503)


async def openapi_document(request: HttpRequest, caller: Caller) -> HttpResponse:
    """GET openapi.json: the OpenAPI 3.1 document, its paths under the prefix this was reached at."""
    prefix = request.path[: -len("openapi.json")]
    return HttpResponse(json.dumps(build_document(prefix)), content_type="application/json")


async def unknown_path(request: HttpRequest, caller: Caller | None) -> HttpResponse:
    """Any other path under the API: a JSON 404 that lists where to look."""
    raise ApiError(
        404, "not_found", f"No API endpoint at {request.path!r}; see openapi.json.", kind=NO_ENDPOINT
    )


def _public_health() -> bool:
    return get_settings().API_PUBLIC_HEALTH


tasks_view = api_view({"GET": list_tasks, "POST": submit_task})
task_view = api_view({"GET": get_task, "DELETE": cancel_task})
types_view = api_view({"GET": task_types})
health_view = api_view({"GET": health}, public=_public_health, unavailable=_health_unavailable)
openapi_view = api_view({"GET": openapi_document})
_EVERY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
unknown_path_view = api_view(dict.fromkeys(_EVERY_METHOD, unknown_path), public=lambda: True)
