"""Django's ``django.tasks`` backend over django-atw: ``@task`` functions run on our workers.

    TASKS = {"default": {"BACKEND": "django_atw.backend.TaskBackend", "QUEUES": ["default"]}}

Every enqueued task is a ``TaskRecord`` added through ``adding.add_with_settings``, the one
add path; its task type is the task's ``module_path``. When a ``Task`` is defined, the backend
registers a runner under that path (``validate_task``), so a worker that imports the module can
run it: async functions on the worker's loop, sync ones in a thread pool
(``OPTIONS["sync_threads"]``). The runner sends ``task_started`` and ``task_finished``.

How the two models meet:
- priority: Django runs larger numbers first, django-atw lower ones, so ours is ``-priority``;
- status: pending -> READY, running -> RUNNING, completed -> SUCCESSFUL, failed -> FAILED,
  cancelled -> FAILED with a ``TaskCancellationError`` error (Django has no cancelled state);
- ``errors``: one per failed attempt, from the attempt log; ``worker_ids``: one per attempt.
"""

from __future__ import annotations

import django
from django.core.exceptions import ImproperlyConfigured


class DjangoTooOldError(ImproperlyConfigured, ImportError):
    """Raised on import under Django < 6.0, which has no ``django.tasks``."""


if django.VERSION < (6, 0):  # pragma: no cover - exercised by the Django 5.2 run
    raise DjangoTooOldError(
        f"django_atw.backend needs Django 6.0 or newer (django.tasks), but Django "
        f"{django.get_version()} is installed. Upgrade Django, or use django-atw's own API "
        "(django_atw.task, enqueue) and leave TaskBackend out of TASKS."
    )

import asyncio  # the imports below need django.tasks: they follow the version check
import builtins
import dataclasses
import functools
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from inspect import iscoroutinefunction
from traceback import format_exception
from typing import Any, cast

from django.apps import apps
from django.core import checks
from django.db import close_old_connections, transaction
from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, TaskError
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from . import exceptions, registry, store, validation
from .adding import add_with_settings
from .engine.executor import TaskRun, accepts_progress, current_run
from .status import TaskStatus
from .values import TaskHistory

# Threads per process for synchronous task functions, unless OPTIONS["sync_threads"] says.
DEFAULT_SYNC_THREADS = 10
# Where the enqueue-time facts Django keeps and django-atw has no column for live in metadata.
METADATA_KEY = "django_tasks"
_STATUSES = {
    TaskStatus.PENDING: TaskResultStatus.READY,
    TaskStatus.RUNNING: TaskResultStatus.RUNNING,
    TaskStatus.COMPLETED: TaskResultStatus.SUCCESSFUL,
    TaskStatus.FAILED: TaskResultStatus.FAILED,
    TaskStatus.CANCELLED: TaskResultStatus.FAILED,
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AtwTask(Task):  # type: ignore[type-arg]
    """A ``Task`` with django-atw's options: ``@task(timeout=30, max_attempts=3, retry_on=(IOError,))``.

    The keywords reach it through ``@task`` on Django 6.1 (``TaskBackend.task_class``). ``retry_on``
    and ``retry_backoff`` work as for django-atw's own ``@task``: without ``retry_on`` a failed
    run is final, and ``max_attempts`` only bounds re-runs after a worker died.
    """

    timeout: float | None = None
    max_attempts: int | None = None
    retry_on: tuple[type[BaseException], ...] = ()
    retry_backoff: float = 1.0
    use_cache: bool | None = None
    cache_ttl: int | None = None


_OPTION_DEFAULTS = {field.name: field.default for field in dataclasses.fields(AtwTask) if field.name in (
    "timeout", "max_attempts", "retry_on", "retry_backoff", "use_cache", "cache_ttl"
)}  # fmt: skip


def _options(task: Task) -> dict[str, Any]:  # type: ignore[type-arg]
    """The task's django-atw options (defaults for a plain ``Task``)."""
    return {name: getattr(task, name, default) for name, default in _OPTION_DEFAULTS.items()}


class TaskBackend(BaseTaskBackend):
    """Run ``django.tasks`` tasks on django-atw workers, each task a ``TaskRecord``.

    ``OPTIONS``: ``sync_threads`` (threads per worker process for sync task functions, default
    10). Workers must serve the queues named in ``QUEUES`` (``ATW_worker --queue``, or the
    ``queues`` of the embedded worker). The constructor reads settings only: Django builds the
    backend when task modules are imported, before any database may be used.
    """

    task_class = AtwTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        unknown = sorted(set(self.options) - {"sync_threads"})
        if unknown:
            raise InvalidTaskBackend(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown keys {unknown}; the only option is 'sync_threads'."
            )
        threads = self.options.get("sync_threads", DEFAULT_SYNC_THREADS)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InvalidTaskBackend(
                f"TASKS[{alias!r}]['OPTIONS']['sync_threads'] must be a whole number of at least 1 "
                f"(got {threads!r})."
            )
        self.sync_threads: int = threads

    def validate_task(self, task: Task) -> None:  # type: ignore[type-arg]
        """Check ``task`` as Django does, check its django-atw options, and register its runner."""
        super().validate_task(task)
        options = _options(task)
        try:
            validation.check_options(
                timeout=options["timeout"], use_cache=options["use_cache"], cache_ttl=options["cache_ttl"]
            )
            _register(task, options)
        except (ValueError, TypeError) as exc:
            raise InvalidTask(f"{task.module_path}: {exc}") from exc

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:  # type: ignore[type-arg]
        """Store the task through django-atw's add path and send ``task_enqueued``."""
        self.validate_task(task)
        options = _options(task)
        new = validation.build(
            task.module_path,
            cast(list[Any], normalize_json(list(args))),
            cast(dict[str, Any], normalize_json(dict(kwargs))),
            priority=-task.priority,
            queue=task.queue_name,
            run_after=task.run_after,
            timeout=options["timeout"],
            use_cache=options["use_cache"],
            cache_ttl=options["cache_ttl"],
            metadata={METADATA_KEY: _enqueue_facts(task, self.alias)},
        )
        # The signal goes out before the row commits, so no worker can send task_started first;
        # inside the caller's own transaction the row commits with it, as any enqueue does.
        with transaction.atomic():
            new.created_at = timezone.now()
            (task_id,) = add_with_settings([new])
            hit = new.cached_result_json is not None  # completed from the result cache when added
            result: TaskResult[Any, Any] = TaskResult(
                task=task,
                id=task_id,
                status=TaskResultStatus.SUCCESSFUL if hit else TaskResultStatus.READY,
                enqueued_at=new.created_at,
                started_at=None,
                finished_at=new.created_at if hit else None,
                last_attempted_at=None,
                args=new.args,
                kwargs=new.kwargs,
                backend=self.alias,
                errors=[],
                worker_ids=[],
            )
            if hit:
                assert new.cached_result_json is not None
                object.__setattr__(result, "_return_value", json.loads(new.cached_result_json))
            task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:  # type: ignore[type-arg]
        """Read the task's row as a ``TaskResult``; ``TaskResultDoesNotExist`` if there is none."""
        history = store.get_task_history(str(result_id))
        if history is None:
            raise TaskResultDoesNotExist(result_id)
        return _result(history, _defined_task(history.info.task_type, result_id))

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        if not apps.is_installed("django_atw"):
            return [
                checks.Error(
                    f"TASKS[{self.alias!r}] uses django_atw.backend.TaskBackend, but django_atw is not "
                    "in INSTALLED_APPS.",
                    hint="Add 'django_atw' to INSTALLED_APPS and run manage.py migrate.",
                    id="django_atw.E010",
                )
            ]
        return []


# --- enqueue and read ---------------------------------------------------------------------------


def _enqueue_facts(task: Task, alias: str) -> dict[str, Any]:  # type: ignore[type-arg]
    """What ``get_result`` needs to rebuild the enqueued ``Task`` that no column holds."""
    return {
        "backend": alias,
        "run_after": task.run_after.isoformat() if task.run_after is not None else None,
    }


def _defined_task(task_type: str, result_id: Any) -> Task:  # type: ignore[type-arg]
    """The module-level ``Task`` a stored task type names, or ``TaskResultDoesNotExist``."""
    try:
        task = import_string(task_type)
    except ImportError:
        task = None
    if not isinstance(task, Task):
        raise TaskResultDoesNotExist(
            f"Task {result_id!r} exists, but its type {task_type!r} is not a django.tasks Task: "
            "read it with django_atw.get_task_info instead."
        )
    return task


def _result(history: TaskHistory, defined: Task) -> TaskResult:  # type: ignore[type-arg]
    """The ``TaskResult`` of a stored task; its ``task`` is ``defined`` as it was enqueued."""
    info = history.info
    facts = info.metadata.get(METADATA_KEY) or {}
    run_after = parse_datetime(facts["run_after"]) if facts.get("run_after") else None
    priority = max(TASK_MIN_PRIORITY, min(TASK_MAX_PRIORITY, -info.priority))
    task = defined
    if (priority, info.queue, run_after, facts.get("backend", defined.backend)) != (
        defined.priority,
        defined.queue_name,
        defined.run_after,
        defined.backend,
    ):
        task = defined.using(
            priority=priority, queue_name=info.queue, run_after=run_after, backend=facts.get("backend")
        )
    failed = history.failed_attempts
    logged = {attempt.attempt: attempt.worker_id for attempt in failed}
    worker_ids = [
        logged.get(n) or (info.worker_id if n == info.attempts else None) or ""
        for n in range(1, info.attempts + 1)
    ]
    errors = [
        TaskError(exception_class_path=_class_path(a.error_type), traceback=a.traceback or a.error)
        for a in failed
    ]
    if info.status in (TaskStatus.FAILED, TaskStatus.CANCELLED) and not any(
        a.attempt == info.attempts for a in failed
    ):
        # Ended without a logged failure: cancelled, or refused before it ran.
        errors.append(
            TaskError(
                exception_class_path=_class_path(info.error_type or "TaskCancellationError"),
                traceback=history.traceback or info.error or "",
            )
        )
    last_start = info.started_at or (failed[-1].started_at if failed else None)
    result: TaskResult[Any, Any] = TaskResult(
        task=task,
        id=info.id,
        status=_STATUSES[info.status],
        enqueued_at=info.created_at,
        started_at=failed[0].started_at if failed and failed[0].started_at else last_start,
        finished_at=info.completed_at,
        last_attempted_at=last_start,
        args=info.args,
        kwargs=info.kwargs,
        backend=task.backend,
        errors=errors,
        worker_ids=worker_ids,
    )
    if info.status is TaskStatus.COMPLETED:
        object.__setattr__(result, "_return_value", info.result)
    return result


def _class_path(error_type: str) -> str:
    """Django's ``exception_class_path`` for a stored error type (``ValueError`` is a builtin)."""
    if not error_type or "." in error_type:
        return error_type
    if isinstance(getattr(builtins, error_type, None), type):
        return f"builtins.{error_type}"
    if isinstance(getattr(exceptions, error_type, None), type):
        return f"django_atw.exceptions.{error_type}"
    return error_type


# --- running --------------------------------------------------------------------------------------

_lock = threading.Lock()
_pools: dict[str, ThreadPoolExecutor] = {}
# module_path -> (func, options, runner): a Task and its .using() copies register one runner.
_runners: dict[str, tuple[Callable[..., Any], dict[str, Any], registry.TaskFunction]] = {}


def _register(task: Task, options: dict[str, Any]) -> None:  # type: ignore[type-arg]
    """Register the runner of ``task`` under its module path (once per function and options)."""
    path = task.module_path
    known = _runners.get(path)
    if known is not None and known[0] is task.func and known[1] == options:
        if registry.get_task_function(path) is not known[2]:
            registry.register_task(path, known[2], **_registry_options(options))
        return
    runner = _runner(path)
    registry.register_task(path, runner, **_registry_options(options))
    _runners[path] = (task.func, options, runner)


def _registry_options(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "max_attempts": options["max_attempts"],
        "retry_on": options["retry_on"],
        "retry_backoff": options["retry_backoff"],
    }


def _pool(backend: TaskBackend) -> ThreadPoolExecutor:
    """The thread pool sync tasks of ``backend``'s alias run in (made on first use)."""
    with _lock:
        pool = _pools.get(backend.alias)
        if pool is None:
            pool = _pools[backend.alias] = ThreadPoolExecutor(
                backend.sync_threads, thread_name_prefix=f"atw-tasks-{backend.alias}"
            )
        return pool


def _runner(path: str) -> registry.TaskFunction:
    """The async function django-atw runs for the ``Task`` at ``path``."""

    async def run_django_task(*args: Any, **kwargs: Any) -> Any:
        defined = _defined_task(path, path)
        backend = defined.get_backend()
        if not isinstance(backend, TaskBackend):
            raise InvalidTaskBackend(
                f"{path} is a task of the {defined.backend!r} backend, not of django_atw.backend.TaskBackend."
            )
        progress = kwargs.pop("progress_callback", None)
        if progress is not None and accepts_progress(defined.func):
            kwargs["progress_callback"] = progress
        run = current_run.get()
        if run is None:  # awaited directly, not run by a worker: no result, no signals
            return await defined.acall(*args, **kwargs)
        loop = asyncio.get_running_loop()
        pool = _pool(backend)
        if not iscoroutinefunction(defined.func):
            if "progress_callback" in kwargs:
                # The tracker lives on the loop: a thread hands it each value.
                kwargs["progress_callback"] = functools.partial(loop.call_soon_threadsafe, progress)
            return await loop.run_in_executor(pool, _run_sync, defined, run, args, kwargs)
        result = await loop.run_in_executor(pool, _started, defined, run, True)
        call_args = (TaskContext(task_result=result), *args) if defined.takes_context else args
        try:
            value = normalize_json(await defined.func(*call_args, **kwargs))
        except Exception as exc:
            await loop.run_in_executor(pool, _finished_failed, result, exc)
            raise
        await loop.run_in_executor(pool, _finished, result, value)
        return value

    run_django_task.__qualname__ = f"run_django_task[{path}]"
    return run_django_task


def _started(defined: Task, run: TaskRun, close: bool = False) -> TaskResult:  # type: ignore[type-arg]
    """Read the running task as a ``TaskResult`` and send ``task_started`` (in a pool thread).

    One read per run: the result handed to ``TaskContext`` and the signals is the one
    ``get_result`` would give, with this run counted in ``worker_ids`` and earlier ``errors``.
    """
    close_old_connections()
    try:
        history = store.get_task_history(run.task_id)
        if history is None:
            raise TaskResultDoesNotExist(run.task_id)
        result = _result(history, defined)
        task_started.send(type(result.task.get_backend()), task_result=result)
    finally:
        if close:  # an async task runs on the loop: nothing more happens in this thread
            close_old_connections()
    return result


def _finished(result: TaskResult, value: Any) -> None:  # type: ignore[type-arg]
    object.__setattr__(result, "finished_at", timezone.now())
    object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "_return_value", value)
    try:
        task_finished.send(type(result.task.get_backend()), task_result=result)
    finally:
        close_old_connections()


def _finished_failed(result: TaskResult, exc: BaseException) -> None:  # type: ignore[type-arg]
    """Send ``task_finished`` for a failed run from inside an ``except`` block, as Django does."""
    object.__setattr__(result, "finished_at", timezone.now())
    object.__setattr__(result, "status", TaskResultStatus.FAILED)
    kind = type(exc)
    result.errors.append(
        TaskError(
            exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
            traceback="".join(format_exception(exc)),
        )
    )
    # Django's own receiver logs sys.exc_info(): re-raise here so this thread has it, and leave
    # the exception's traceback as it was for the worker, which stores it.
    trace = exc.__traceback__
    try:
        raise exc
    except BaseException:
        task_finished.send(type(result.task.get_backend()), task_result=result)
    finally:
        exc.__traceback__ = trace
        close_old_connections()


def _run_sync(defined: Task, run: TaskRun, args: Any, kwargs: Any) -> Any:  # type: ignore[type-arg]
    """Run a sync task function in a pool thread, with both signals, as ``ImmediateBackend`` does."""
    result = _started(defined, run)
    call_args = (TaskContext(task_result=result), *args) if defined.takes_context else args
    try:
        value = normalize_json(defined.func(*call_args, **kwargs))
    except Exception as exc:
        _finished_failed(result, exc)
        raise
    _finished(result, value)
    return value


__all__ = ["AtwTask", "DjangoTooOldError", "TaskBackend"]
