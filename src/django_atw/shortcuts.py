"""Module-level task functions for code without a running worker: views, the shell, commands.

Each sync function has an async twin prefixed ``a`` (Django's convention). The record waits
in the database until a worker (in this process or another) claims it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async

from . import store, submit
from .cache.adapter import AsyncCacheAdapter, default_adapter
from .conf import get_settings
from .engine import caching, wakeup
from .exceptions import TaskArgumentError
from .status import TaskInfo, TaskStatus
from .values import NewTask


def enqueue(
    task_func: Callable[..., Awaitable[Any]] | str,
    *args: Any,
    priority: int = 0,
    task_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    use_cache: bool | None = None,
    cache_ttl: int | None = None,
    cache_key_fn: Callable[..., str] | None = None,
    queue: str | None = None,
    run_after: datetime | timedelta | None = None,
    created_by: Any = None,
    **kwargs: Any,
) -> str:
    """Store a task for any worker to run and return its id (same options as ``add_task``).

    ``created_by`` is the user the task belongs to (a user instance or its pk), for the admin
    and for ownership checks. With ``ATW["CACHE"]["ENABLED"]`` the cache key is computed here,
    so ``cache_key_fn`` and ``metadata`` work as with ``add_task``.
    """
    new = submit.build(
        task_func,
        args,
        kwargs,
        priority=priority,
        task_id=task_id,
        metadata=metadata,
        timeout=timeout,
        use_cache=use_cache,
        cache_ttl=cache_ttl,
        queue=queue,
        default_queue=get_settings().DEFAULT_QUEUE,
        run_after=run_after,
        created_by_id=getattr(created_by, "pk", created_by),
    )
    adapter = _assign_cache_keys([new], cache_key_fn)
    (added,) = caching.add_tasks([new], adapter)
    if new.cached_result_json is None:
        wakeup.notify([new.queue])
        wakeup.broadcast(queues=[new.queue])
    return added


def enqueue_many(
    task_func: Callable[..., Awaitable[Any]] | str,
    calls: Iterable[Sequence[Any] | Mapping[str, Any]],
    *,
    priority: int = 0,
    metadata: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    queue: str | None = None,
    run_after: datetime | timedelta | None = None,
) -> list[str]:
    """Store many calls of one task with a single INSERT (see ``AsyncTaskWorker.add_tasks``)."""
    new = submit.build_calls(
        task_func,
        calls,
        priority=priority,
        metadata=metadata,
        timeout=timeout,
        queue=queue,
        default_queue=get_settings().DEFAULT_QUEUE,
        run_after=run_after,
    )
    adapter = _assign_cache_keys(new, None)
    ids = caching.add_tasks(new, adapter)
    queues = {n.queue for n in new if n.cached_result_json is None}
    if queues:
        wakeup.notify(queues)
        wakeup.broadcast(queues=queues)
    return ids


def _assign_cache_keys(
    new: list[NewTask], cache_key_fn: Callable[..., str] | None
) -> AsyncCacheAdapter | None:
    """Store cache keys as a worker's add_task would; return the adapter (None: caching off).

    The adapter is the one ``ATW["CACHE"]`` describes; ``caching.add_tasks`` looks the keys up.
    """
    if cache_key_fn is not None and not callable(cache_key_fn):
        raise TaskArgumentError(f"cache_key_fn must be callable or None, got {cache_key_fn!r}.")
    if not get_settings().CACHE.ENABLED:
        return None
    adapter = default_adapter()
    caching.assign_cache_keys(new, adapter, enabled=True, cache_key_fn=cache_key_fn)
    return adapter


def get_task_info(task_id: str) -> TaskInfo | None:
    """Return a task's stored state, or None if unknown."""
    return store.get_task(task_id)


def check_list_filters(
    status: TaskStatus | str | None, limit: int | None, older_than: timedelta | None
) -> TaskStatus | None:
    """Validate ``get_all_tasks`` filters, naming the bad one; return the status as an enum."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int or None, got {limit!r}.")
    if older_than is not None and not isinstance(older_than, timedelta):
        raise ValueError(f"older_than must be a timedelta or None, got {older_than!r}.")
    if status is None:
        return None
    try:
        return TaskStatus(status)
    except ValueError:
        choices = ", ".join(s.value for s in TaskStatus)
        raise ValueError(f"status must be one of {choices}, got {status!r}.") from None


def get_all_tasks(
    status: TaskStatus | str | None = None,
    limit: int | None = None,
    older_than: timedelta | None = None,
) -> list[TaskInfo]:
    """Return the ``limit`` newest tasks, of ``status``, created before ``now - older_than``."""
    return store.list_tasks(check_list_filters(status, limit, older_than), limit, older_than)


def cancel_task(task_id: str) -> bool:
    """Cancel a pending task at once or ask a running task's worker to cancel it.

    Returns False for an unknown or finished task. A worker in this process is told at once,
    one in another process by NOTIFY (PostgreSQL) or the channel layer, else at its next poll.
    """
    outcome, _owner = store.cancel(task_id)
    if outcome == store.CANCEL_REQUESTED:
        wakeup.notify_cancel(task_id)
        wakeup.broadcast(cancel=task_id)
    return outcome != store.NOT_CANCELLABLE


aenqueue = sync_to_async(enqueue)
aenqueue.__doc__ = "Async version of ``enqueue``."
aenqueue_many = sync_to_async(enqueue_many)
aenqueue_many.__doc__ = "Async version of ``enqueue_many``."
aget_task_info = sync_to_async(get_task_info)
aget_task_info.__doc__ = "Async version of ``get_task_info``."
aget_all_tasks = sync_to_async(get_all_tasks)
aget_all_tasks.__doc__ = "Async version of ``get_all_tasks``."
acancel_task = sync_to_async(cancel_task)
acancel_task.__doc__ = "Async version of ``cancel_task``."
