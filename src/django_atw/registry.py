"""The task registry: task type names to async functions.

A stored task names its function by type, so any process that imported the same modules
can run it. Functions that were never registered are named by their dotted import path.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, overload

from . import schedules
from .exceptions import TaskDefinitionError
from .values import DEFAULT_MAX_ATTEMPTS

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
TaskFunction = Callable[..., Awaitable[Any]]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TaskOptions:
    """How tasks of one type are queued and retried (set with ``@task(...)``)."""

    queue: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    # Seconds before the first retry; each further retry waits twice as long (with jitter).
    retry_backoff: float = 1.0
    retry_on: tuple[type[BaseException], ...] = ()


DEFAULT_OPTIONS = TaskOptions()

_registry: dict[str, TaskFunction] = {}
_options: dict[str, TaskOptions] = {}
# id(func) -> type name: add_task(func) looks its type up by identity in O(1).
_types_by_function: dict[int, str] = {}
# Dotted path -> function, for task types found by import rather than by registration: a worker
# resolves the type of every task it runs, and an import-system lookup per task costs more than
# a no-op task itself. Cleared whenever the registry changes.
_imported: dict[str, TaskFunction] = {}


def _describe(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def _check_options(
    task_type: str,
    queue: Any,
    max_attempts: Any,
    retry_backoff: Any,
    retry_on: Any,
) -> TaskOptions:
    where = f"Task {task_type!r}:"
    seconds = "a non-negative number of seconds"
    if queue is not None and (not isinstance(queue, str) or not queue or len(queue) > 100):
        raise ValueError(
            f"{where} queue must be a non-empty string of at most 100 characters, got {queue!r}."
        )
    if max_attempts is None:
        max_attempts = DEFAULT_MAX_ATTEMPTS
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"{where} max_attempts must be a whole number of at least 1, got {max_attempts!r}.")
    if (
        isinstance(retry_backoff, bool)
        or not isinstance(retry_backoff, (int, float))
        or not math.isfinite(retry_backoff)
        or retry_backoff < 0
    ):
        raise ValueError(f"{where} retry_backoff must be {seconds}, got {retry_backoff!r}.")
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    if not isinstance(retry_on, (tuple, list)) or not all(
        isinstance(exc, type) and issubclass(exc, BaseException) for exc in retry_on
    ):
        raise ValueError(f"{where} retry_on must be a tuple of exception classes, got {retry_on!r}.")
    return TaskOptions(
        queue=queue, max_attempts=max_attempts, retry_backoff=float(retry_backoff), retry_on=tuple(retry_on)
    )


def register_task(
    task_type: str,
    task_func: Callable[P, Awaitable[R]],
    *,
    queue: str | None = None,
    max_attempts: int | None = None,
    retry_backoff: float = 1.0,
    retry_on: tuple[type[BaseException], ...] = (),
) -> Callable[P, Awaitable[R]]:
    """Register ``task_func`` under ``task_type``; registering a type again replaces it.

    ``queue`` is where its tasks go unless ``add_task(queue=)`` says otherwise.
    ``max_attempts`` bounds the runs of one task (a run that raised one of ``retry_on``, timed
    out with ``TaskTimeoutError`` in ``retry_on``, or whose worker died); retries wait
    ``retry_backoff`` seconds, doubling each time, with jitter.
    """
    if not isinstance(task_type, str) or not task_type.strip():
        raise ValueError(f"task_type must be a non-empty string, got {task_type!r}.")
    options = _check_options(task_type, queue, max_attempts, retry_backoff, retry_on)
    if not inspect.iscoroutinefunction(task_func):
        raise TypeError(
            f"Task {task_type!r}: {_describe(task_func)} is not an async function. "
            "Tasks run on the worker's event loop: declare it with 'async def'."
        )
    previous = _registry.get(task_type)
    if previous is not None and previous is not task_func:
        if _describe(previous) != _describe(task_func):
            logger.warning(
                "task type %r registered again: %s replaces %s",
                task_type,
                _describe(task_func),
                _describe(previous),
            )
        _types_by_function.pop(id(previous), None)
    _registry[task_type] = task_func
    _options[task_type] = options
    _imported.clear()
    _types_by_function[id(task_func)] = task_type
    return task_func


@overload
def task(
    task_type: str,
    *,
    queue: str | None = None,
    max_attempts: int | None = None,
    retry_backoff: float = 1.0,
    retry_on: tuple[type[BaseException], ...] = (),
    schedule: str | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]: ...
@overload
def task(task_type: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
def task(
    task_type: Any,
    *,
    queue: str | None = None,
    max_attempts: int | None = None,
    retry_backoff: float = 1.0,
    retry_on: tuple[type[BaseException], ...] = (),
    schedule: str | None = None,
) -> Any:
    """Register the decorated async function under ``task_type``: ``@task("process_data")``.

    Options as for ``register_task``: ``@task("fetch", max_attempts=5, retry_on=(IOError,))``.
    ``schedule`` is a cron string: a task runs, without arguments, at each tick, in the zone
    of ``settings.TIME_ZONE``; the schedule is named after the task type. For arguments,
    another zone or a missed-tick policy, call ``periodic(...)`` instead.
    """
    if callable(task_type):
        raise TypeError("@task needs a task type name: write @task('my_type'), not @task.")
    # Checked here too, so a bad option fails where the decorator is written.
    _check_options(str(task_type), queue, max_attempts, retry_backoff, retry_on)
    if schedule is not None:
        schedules.check_cron(schedule, _default_zone(), where=f"@task({task_type!r}, schedule=...)")

    def decorator(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        registered = register_task(
            task_type,
            func,
            queue=queue,
            max_attempts=max_attempts,
            retry_backoff=retry_backoff,
            retry_on=retry_on,
        )
        if schedule is not None:
            schedules.declare(task_type, task_type, schedule, timezone=_default_zone())
        return registered

    return decorator


def periodic(
    task_func: Callable[..., Awaitable[Any]] | str,
    cron: str,
    *,
    name: str | None = None,
    timezone: str | None = None,
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: dict[str, Any] | None = None,
    missed: str = "once",
    max_catch_up: int = schedules.DEFAULT_MAX_CATCH_UP,
) -> schedules.CodeSchedule:
    """Run ``task_func`` with ``args``/``kwargs`` at each tick of ``cron`` in ``timezone``.

    Call it at import time in a ``tasks.py``: ``periodic(send_report, "0 8 * * mon-fri",
    timezone="Europe/Berlin", kwargs={"kind": "daily"})``. ``name`` (default: the task type)
    identifies the schedule across workers and in the admin, where it is listed as from code.
    ``timezone`` defaults to ``settings.TIME_ZONE``. ``missed`` says what happens to ticks
    missed while no worker ran: "once" (one run for all of them), "all" (each, up to
    ``max_catch_up``, the latest ones) or "skip". An invalid cron string, zone or policy
    raises ``ScheduleError`` here, naming the value.
    """
    task_type = task_func if isinstance(task_func, str) else type_of(task_func)
    return schedules.declare(
        name or task_type,
        task_type,
        cron,
        timezone=timezone or _default_zone(),
        args=args,
        kwargs=kwargs,
        missed=missed,
        max_catch_up=max_catch_up,
    )


def _default_zone() -> str:
    from django.conf import settings

    return str(getattr(settings, "TIME_ZONE", None) or "UTC") if settings.configured else "UTC"


def options_for(task_type: str) -> TaskOptions:
    """Return the queue and retry options of ``task_type`` (defaults when unregistered)."""
    return _options.get(task_type, DEFAULT_OPTIONS)


def get_task_function(task_type: str) -> TaskFunction | None:
    """Return the function registered as ``task_type``, or None."""
    return _registry.get(task_type)


def get_all_task_types() -> list[str]:
    """Return the registered task type names, sorted."""
    return sorted(_registry)


def unregister_task(task_type: str) -> None:
    """Remove ``task_type`` from the registry (for tests and reloaders)."""
    func = _registry.pop(task_type, None)
    _options.pop(task_type, None)
    _imported.clear()
    if func is not None and _types_by_function.get(id(func)) == task_type:
        del _types_by_function[id(func)]


def type_of(func: Callable[..., Any]) -> str:
    """Return the name under which ``func`` is stored: its registered type or dotted path.

    Raises ``TaskDefinitionError`` when neither exists, since no other process could find it.
    """
    task_type = _types_by_function.get(id(func))
    if task_type is not None and _registry.get(task_type) is func:
        return task_type
    if not inspect.iscoroutinefunction(func):
        raise TaskDefinitionError(
            f"{_describe(func)} is not an async function. Tasks must be declared with 'async def'."
        )
    path = _describe(func)
    if resolve(path) is not func:
        raise TaskDefinitionError(
            f"{path} is neither registered nor importable by its dotted path, so a worker could not "
            "find it. Decorate it with @task('name') or define it at module level."
        )
    return path


def resolve(task_type: str) -> TaskFunction | None:
    """Find the function for a stored task type: the registry first, then the dotted path."""
    func = _registry.get(task_type) or _imported.get(task_type)
    if func is not None:
        return func
    func = _import_path(task_type)
    if func is None:
        # Importing the module may have registered the type: a django.tasks Task registers
        # itself under its dotted path when it is defined (see django_atw.backend).
        return _registry.get(task_type)
    _imported[task_type] = func
    return func


def _import_path(task_type: str) -> TaskFunction | None:
    """Import the async function a dotted path names, or None."""
    module_name, _, qualname = task_type.rpartition(".")
    if not module_name or "<" in qualname:
        return None
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        # A dotted qualname (Class.method) is a module path that fails to import: try shorter.
        head, _, tail = module_name.rpartition(".")
        if not head:
            return None
        try:
            target = getattr(importlib.import_module(head), tail)
            for part in qualname.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError):
            return None
    return target if inspect.iscoroutinefunction(target) else None
