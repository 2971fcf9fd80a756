"""Turn an ``add_task`` call into a validated row to insert, or a clear error.

Everything a worker needs must survive a trip through the database, so the function must be
findable by name and its arguments must be JSON values. Checking here, in the caller's process,
puts the error where the mistake is instead of in a worker log.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from . import registry
from .conf import get_settings
from .exceptions import TaskArgumentError, TaskDefinitionError
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
# Deepest nesting of containers accepted in an argument, a kwarg, the metadata or a result.
# Real payloads nest a handful of levels; pydantic refuses to serialise beyond ~250 (a stored
# row that deep would break every API answer that lists it), and Python's own recursion limit
# lies beyond that. 32 leaves generous room for real data and stays far below both.
MAX_JSON_DEPTH = 32
# Integers in JSON arguments: SQLite's JSON functions turn larger ones into floats (losing
# digits), and Python refuses to print ints of more than 4,300 digits; 64 bits is what both
# databases and every JSON client keep exactly (JavaScript up to 2**53, though).
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
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
# Upper bounds of the JSON text of one character and of one number, for the cheap size bound:
# ensure_ascii writes a character as at most 6 bytes (\uXXXX), a float as at most 24.
_JSON_ESCAPE_WIDTH = 6
_JSON_NUMBER_WIDTH = 24


def text_problem(text: str) -> str | None:
    """Name what in ``text`` no database column can hold (NUL, a lone surrogate), or return None.

    PostgreSQL refuses NUL in text and JSON, and no driver encodes a lone surrogate; SQLite
    stores both, so a task that works on a developer's SQLite would fail on PostgreSQL.
    """
    if "\x00" in text:
        return "a NUL character (\\u0000)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "an unpaired surrogate (\\ud800-\\udfff)"
    return None


_UNSTORABLE_TEXT = (
    "which the database cannot store. Remove it, or encode binary data (for example as base64)."
)


class _Refused(Exception):
    """A value ``check_json`` refuses; ``path`` is filled in, innermost first, as it unwinds."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.path: list[str | int] = []


class _TooDeep(Exception):
    """Raised past ``MAX_JSON_DEPTH``; the caller measures the real depth only then."""


def _walk(value: Any, depth: int) -> int:
    """Check one JSON value and return an upper bound of its ``json.dumps`` length.

    ``depth`` is the nesting of the containers around ``value``; the recursion stops at
    ``MAX_JSON_DEPTH``, so no value can exhaust the interpreter's stack. Paths are collected
    only on the way out of a refusal, so a valid value costs no string formatting.
    """
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise _Refused(f"holds {problem}, {_UNSTORABLE_TEXT}")
        return _JSON_ESCAPE_WIDTH * len(value) + 2
    if value is None or isinstance(value, bool):
        return 5
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _Refused(
                f"is an integer of {value.bit_length()} bits, outside the signed 64-bit range "
                f"({_INT64_MIN} to {_INT64_MAX}) that is accepted. Pass it as a string."
            )
        return _JSON_NUMBER_WIDTH
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused(f"is {value!r}, which is not a JSON value. Pass a finite number.")
        return _JSON_NUMBER_WIDTH
    if isinstance(value, (list, tuple)):
        if depth >= MAX_JSON_DEPTH:
            raise _TooDeep
        size = 2
        for index, item in enumerate(value):
            try:
                size += _walk(item, depth + 1) + 2
            except _Refused as exc:
                exc.path.append(index)
                raise
        return size
    if isinstance(value, dict):
        if depth >= MAX_JSON_DEPTH:
            raise _TooDeep
        size = 2
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Refused(
                    f"has the key {key!r} of type {type(key).__name__}; JSON object keys "
                    "must be strings. Convert the keys with str()."
                )
            problem = text_problem(key)
            if problem is not None:
                raise _Refused(f"has the key {key!r}, which holds {problem}, {_UNSTORABLE_TEXT}")
            try:
                size += _walk(item, depth + 1) + _JSON_ESCAPE_WIDTH * len(key) + 6
            except _Refused as exc:
                exc.path.append(key)
                raise
        return size
    raise _Refused(
        f"is a {type(value).__name__}, which is not a JSON value. Task arguments are stored "
        "as JSON: pass str, int, float, bool, None, lists or dicts (for example date.isoformat() "
        "for a date) and convert inside the task."
    )


def json_depth(value: Any, *, stop_after: int | None = None) -> int:
    """Return how many containers deep ``value`` nests (0 for a scalar), without recursion.

    With ``stop_after``, return as soon as the depth exceeds it (the first depth found beyond).
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, (list, tuple, dict)):
            if depth > deepest:
                deepest = depth
                if stop_after is not None and deepest > stop_after:
                    return deepest
            stack.extend((child, depth + 1) for child in children if isinstance(child, (list, tuple, dict)))
    return deepest


def _where(where: str, path: Sequence[str | int]) -> str:
    return where + "".join(f"[{part!r}]" for part in path)


def check_json(value: Any, where: str, path: tuple[str | int, ...] | None = None) -> int:
    """Raise ``TaskArgumentError`` naming ``where`` (e.g. ``kwargs['when']``) if not JSON.

    Tuples are accepted and come back as lists; dict keys must be strings (JSON would turn
    ``{1: x}`` into ``{"1": x}`` silently); NaN and infinities are refused (not JSON); so is
    nesting deeper than ``MAX_JSON_DEPTH``. ``path`` locates ``value`` for the error's ``path``
    (default: ``(where,)``). Returns an upper bound of the value's JSON length in bytes.
    """
    root = path if path is not None else (where,)
    try:
        return _walk(value, 0)
    except _Refused as exc:
        inner = exc.path[::-1]
        raise TaskArgumentError(f"{_where(where, inner)} {exc.problem}", path=(*root, *inner)) from None
    except _TooDeep:
        raise TaskArgumentError(
            f"{where} is nested {json_depth(value)} levels deep; at most {MAX_JSON_DEPTH} levels are "
            "accepted. Pass a flatter structure, or store the data elsewhere and pass a reference.",
            path=root,
        ) from None


def _check_size(arg_list: list[Any], kwargs: dict[str, Any], meta: dict[str, Any], bound: int) -> None:
    """Refuse arguments larger than ``ATW["MAX_ARGUMENT_BYTES"]`` as JSON.

    ``bound`` is ``check_json``'s upper bound; only when it exceeds the limit are the arguments
    encoded to measure them exactly, so an ordinary call never pays for a second encoding.
    """
    limit = get_settings().MAX_ARGUMENT_BYTES
    if bound <= limit:
        return
    sizes = {
        name: len(json.dumps(value))
        for name, value in (("args", arg_list), ("kwargs", kwargs), ("metadata", meta))
    }
    total = sum(sizes.values())
    if total > limit:
        largest = max(sizes, key=sizes.__getitem__)
        raise TaskArgumentError(
            f"args, kwargs and metadata take {total:,} bytes as JSON; at most "
            f"ATW['MAX_ARGUMENT_BYTES'] = {limit:,} are accepted ({largest} takes {sizes[largest]:,}). "
            "Store large data elsewhere (a file, object storage, a model) and pass a reference to it.",
            path=(largest,),
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
        raise TaskArgumentError(f"queue holds {problem}, {_UNSTORABLE_TEXT}", path=("queue",))


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
    _check_size(arg_list, kwargs, meta, size)
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
