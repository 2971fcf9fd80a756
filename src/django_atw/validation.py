"""Turn an ``add_task`` call into a validated row to insert, or a clear error.

Everything a worker needs must survive a trip through the database, so the function must be
findable by name and its arguments must be JSON values. Checking here, in the caller's process,
puts the error where the mistake is instead of in a worker log.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from . import registry
from .exceptions import TaskArgumentError, TaskDefinitionError
from .jsonvalues import UNSTORABLE_TEXT, check_json, check_size, text_problem
from .values import NewTask

# The options add_task takes beside the task's own arguments. A task cannot have a keyword
# argument with one of these names (the original library has the same rule).
OPTION_NAMES = frozenset(
    {
        "priority", "task_id", "metadata", "timeout", "use_cache", "cache_ttl", "cache_key_fn", "queue",
        "run_after",
    }
)  # fmt: skip
MAX_TASK_ID_LENGTH = 255
# The keyword argument the worker passes to a task that takes it; never the caller's to pass.
PROGRESS_CALLBACK = "progress_callback"
# A custom task id is a URL path segment (tasks/<id>), a Location header and a log field, so it
# takes the characters that are safe in all three unescaped: letters, digits and . _ : -, and
# is never "." or ".." (a dot segment: "tasks/.." resolves to the API's root). Written without
# look-ahead so that the API's schema, checked by pydantic's Rust regex, uses the same pattern.
TASK_ID_PATTERN = r"^(?:[A-Za-z0-9._:-]*[A-Za-z0-9_:-][A-Za-z0-9._:-]*|\.{3,})$"
_TASK_ID = re.compile(TASK_ID_PATTERN)
TASK_ID_RULE = (
    f"task_id must be 1 to {MAX_TASK_ID_LENGTH} of the characters A-Z a-z 0-9 . _ : - (and not '.' or '..')"
)
# priority and cache_ttl are 32-bit integer columns; timeout and cache_ttl seconds share that
# bound (68 years), far beyond any real deadline and well inside what timedelta can add.
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
# run_after is stored in UTC and shown in any time zone (the admin, the API's offsets): a day's
# margin inside datetime's years 1..9999 keeps every such rendering representable. (Outside,
# Python overflows converting to UTC and PostgreSQL refuses the value.)
RUN_AFTER_RANGE = (
    datetime(1, 1, 2, tzinfo=UTC),
    datetime(9999, 12, 30, tzinfo=UTC),
)


def _check_option_types(
    *,
    priority: Any,
    task_id: Any,
    metadata: Any,
    timeout: Any,
    use_cache: Any,
    cache_ttl: Any,
    queue: Any,
) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TaskArgumentError(
            f"priority must be an int (lower runs first), got {priority!r}.", path=("priority",)
        )
    if not _INT32_MIN <= priority <= _INT32_MAX:
        raise TaskArgumentError(
            f"priority must be an int from {_INT32_MIN} to {_INT32_MAX} (lower runs first), got {priority}.",
            path=("priority",),
        )
    if task_id is not None:
        if not isinstance(task_id, str):
            raise TaskArgumentError(f"task_id must be a string, got {task_id!r}.", path=("task_id",))
        if len(task_id) > MAX_TASK_ID_LENGTH or not _TASK_ID.match(task_id):
            shown = task_id if len(task_id) <= 80 else task_id[:80] + "..."
            raise TaskArgumentError(
                f"{TASK_ID_RULE}, got {shown!r}. Build ids from such parts (e.g. 'report:2024-01-31'), "
                "or pass none to get a new UUID.",
                path=("task_id",),
            )
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TaskArgumentError(
            f"metadata must be a dict, got {type(metadata).__name__}.", path=("metadata",)
        )
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TaskArgumentError(
                f"timeout must be a number of seconds or None, got {timeout!r}.", path=("timeout",)
            )
        if not 0 < timeout <= _INT32_MAX:  # NaN fails both comparisons
            raise TaskArgumentError(
                f"timeout must be a positive number of seconds up to {_INT32_MAX}, got {timeout!r}. "
                "Pass None for no timeout.",
                path=("timeout",),
            )
    if use_cache is not None and not isinstance(use_cache, bool):
        raise TaskArgumentError(
            f"use_cache must be True, False or None, got {use_cache!r}.", path=("use_cache",)
        )
    if cache_ttl is not None and (
        isinstance(cache_ttl, bool) or not isinstance(cache_ttl, int) or not 0 <= cache_ttl <= _INT32_MAX
    ):
        raise TaskArgumentError(
            f"cache_ttl must be an int of seconds from 0 to {_INT32_MAX}, got {cache_ttl!r}.",
            path=("cache_ttl",),
        )
    if not isinstance(queue, str) or not queue or len(queue) > 100:
        raise TaskArgumentError(
            f"queue must be a non-empty string of at most 100 characters, got {queue!r}.", path=("queue",)
        )
    problem = text_problem(queue)
    if problem is not None:
        raise TaskArgumentError(f"queue holds {problem}, {UNSTORABLE_TEXT}", path=("queue",))


@functools.lru_cache(maxsize=1024)
def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    """``func``'s signature (None when Python cannot read one), cached: reading it costs more
    than binding it, and a function's signature does not change."""
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def binding_error(func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
    """Return why ``func(*args, **kwargs)`` could not be called (naming the parameter), or None.

    The worker passes ``progress_callback`` to a function that takes it, so it is bound as if given.
    """
    signature = _signature(func)
    if signature is None:
        return None
    params = signature.parameters
    if PROGRESS_CALLBACK not in kwargs and (
        PROGRESS_CALLBACK in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    ):
        kwargs = {**kwargs, PROGRESS_CALLBACK: None}
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        return str(exc)
    return None


def _run_after_out_of_range(run_after: Any) -> TaskArgumentError:
    return TaskArgumentError(
        f"run_after must fall between {RUN_AFTER_RANGE[0].date().isoformat()} and "
        f"{RUN_AFTER_RANGE[1].date().isoformat()} "
        f"(UTC), got {run_after!r}. Pass a nearer time, or None to run as soon as possible.",
        path=("run_after",),
    )


def check_options(*, timeout: Any = None, use_cache: Any = None, cache_ttl: Any = None) -> None:
    """Check the per-task options a task definition may carry (the django.tasks backend's)."""
    _check_option_types(
        priority=0,
        task_id=None,
        metadata=None,
        timeout=timeout,
        use_cache=use_cache,
        cache_ttl=cache_ttl,
        queue="default",
    )


def run_after_time(run_after: Any) -> datetime | None:
    """Turn ``run_after`` (an aware datetime, a timedelta from now, or None) into a time."""
    if run_after is None:
        return None
    if isinstance(run_after, timedelta):
        try:
            when = timezone.now() + run_after
        except OverflowError:
            raise _run_after_out_of_range(run_after) from None
    elif isinstance(run_after, datetime):
        if timezone.is_naive(run_after):
            raise TaskArgumentError(
                f"run_after is a naive datetime ({run_after.isoformat()}); pass an aware one "
                "(django.utils.timezone.now() + timedelta(...)) or a timedelta.",
                path=("run_after",),
            )
        when = run_after
    else:
        raise TaskArgumentError(
            f"run_after must be a datetime, a timedelta or None, got {run_after!r}.", path=("run_after",)
        )
    try:
        in_range = RUN_AFTER_RANGE[0] <= when <= RUN_AFTER_RANGE[1]
    except OverflowError:  # an offset that takes it past year 1 or 9999 in UTC
        in_range = False
    if not in_range:
        raise _run_after_out_of_range(run_after)
    return when


def build(
    task_func: Callable[..., Any] | str,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    *,
    priority: int = 0,
    task_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    use_cache: bool | None = None,
    cache_ttl: int | None = None,
    queue: str | None = None,
    default_queue: str = "default",
    run_after: datetime | timedelta | None = None,
    created_by_id: int | None = None,
) -> NewTask:
    """Validate one task and return it as a ``NewTask``; raise a ``TaskDefinitionError`` if unfit.

    The queue is ``queue``, else the one its ``@task(queue=)`` names, else ``default_queue``.
    """
    if isinstance(task_func, str):
        resolved = registry.resolve(task_func)
        if resolved is None:
            known = ", ".join(registry.get_all_task_types()) or "none"
            raise TaskDefinitionError(
                f"Unknown task type {task_func!r}. Registered types: {known}. Register it with "
                "@task(...) in an installed app's tasks.py, or pass an importable async function."
            )
        task_type, func = task_func, resolved
    elif callable(task_func):
        task_type, func = registry.type_of(task_func), task_func
    else:
        raise TaskArgumentError(
            f"task_func must be an async function or a task type name, got {type(task_func).__name__}."
        )
    options = registry.options_for(task_type)
    if queue is None:
        queue = options.queue or default_queue
    _check_option_types(
        priority=priority,
        task_id=task_id,
        metadata=metadata,
        timeout=timeout,
        use_cache=use_cache,
        cache_ttl=cache_ttl,
        queue=queue,
    )
    if PROGRESS_CALLBACK in kwargs:
        raise TaskArgumentError(
            "kwargs['progress_callback'] is set by the worker when the task runs; do not pass it.",
            path=("kwargs", PROGRESS_CALLBACK),
        )
    mismatch = binding_error(func, args, kwargs)
    if mismatch is not None:
        raise TaskArgumentError(
            f"Task {task_type!r} cannot be called with these arguments: {mismatch}. Pass what its "
            f"function takes: {getattr(func, '__name__', task_type)}{_signature(func)}.",
        )
    arg_list = list(args)
    size = 0
    for index, value in enumerate(arg_list):
        size += check_json(value, f"args[{index}]", ("args", index))
    for name, value in kwargs.items():
        size += check_json(value, f"kwargs[{name!r}]", ("kwargs", name))
    meta = dict(metadata or {})
    size += check_json(meta, "metadata")
    kwargs = dict(kwargs)
    check_size(arg_list, kwargs, meta, size)
    return NewTask(
        id=task_id,
        task_type=task_type,
        args=arg_list,
        kwargs=kwargs,
        metadata=meta,
        priority=priority,
        queue=queue,
        timeout=float(timeout) if timeout is not None else None,
        use_cache=use_cache,
        cache_ttl=cache_ttl,
        created_by_id=created_by_id,
        max_attempts=options.max_attempts,
        run_after=run_after_time(run_after),
    )


def build_calls(
    task_func: Callable[..., Any] | str,
    calls: Iterable[Sequence[Any] | Mapping[str, Any]],
    **options: Any,
) -> list[NewTask]:
    """Validate each call of a bulk add: a tuple/list of positional arguments or a dict of kwargs."""
    new = []
    for index, call in enumerate(calls):
        if isinstance(call, Mapping):
            args: Sequence[Any] = ()
            kwargs = dict(call)
        elif isinstance(call, (list, tuple)):
            args, kwargs = call, {}
        else:
            raise TaskArgumentError(
                f"calls[{index}] is a {type(call).__name__}; pass a tuple of positional arguments "
                "or a dict of keyword arguments (wrap a lone dict argument in a tuple)."
            )
        try:
            new.append(build(task_func, args, kwargs, **options))
        except TaskArgumentError as exc:
            raise TaskArgumentError(f"calls[{index}]: {exc}", path=exc.path) from exc
    return new
