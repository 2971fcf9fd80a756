"""The one way tasks are added: validate, compute cache keys, insert, wake workers on commit.

``AsyncTaskWorker.add_task``/``add_tasks``, ``enqueue``/``aenqueue``, ``enqueue_many``, the
admin's "Run again", the HTTP API and the ``django.tasks`` backend all end in ``add_new_tasks``,
so every task gets the same checks (``max_queue_size``, cache keys and add-time hits) and the
same wake-up, whichever door it came in by.

Workers are woken only once the rows are committed: a task enqueued inside the caller's
``transaction.atomic()`` is woken for when that transaction commits, and never if it rolls
back. Other processes' workers are told after the commit too (``wakeup.notify_processes``: on
PostgreSQL a NOTIFY sent by the process's notifier thread, one per queue per burst of adds).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Model

from . import store, validation, wakeup
from .cache.adapter import AsyncCacheAdapter, default_adapter
from .cache.task_keys import assign_cache_keys, complete_hits
from .conf import get_settings
from .exceptions import QueueFullError, TaskArgumentError
from .values import NewTask


def add_new_tasks(
    new_tasks: Sequence[NewTask],
    *,
    cache: AsyncCacheAdapter | None,
    cache_key_fn: Callable[..., str] | None = None,
    max_queue_size: int | None = None,
) -> list[str]:
    """Store validated tasks with one INSERT and return their ids in order.

    ``cache`` is the result cache to key and look the tasks up in (None: caching is off).
    A task found there is inserted completed and never runs. ``max_queue_size`` refuses the
    batch with ``QueueFullError`` when that many tasks are pending already (hits do not count).
    Synchronous: it runs on a worker's database thread or the caller's thread. When the cache
    entries live in the task database, lookup and INSERT share one transaction. Workers are
    woken after the commit, in this process and in others (``wakeup.notify_processes``).
    """
    if cache_key_fn is not None and not callable(cache_key_fn):
        raise TaskArgumentError(f"cache_key_fn must be callable or None, got {cache_key_fn!r}.")
    keyed = cache is not None and cache.enabled
    if keyed:
        assert cache is not None
        assign_cache_keys(new_tasks, cache, enabled=True, cache_key_fn=cache_key_fn)
    together = keyed and cache is not None and cache.backend.in_task_database
    with transaction.atomic() if together else contextlib.nullcontext():
        if keyed:
            assert cache is not None
            complete_hits(new_tasks, cache)
        if max_queue_size is not None:
            _check_queue_size(new_tasks, max_queue_size)
        ids = store.add_tasks(new_tasks)
    queues = {new.queue for new in new_tasks if new.cached_result_json is None and new.claimed_by is None}
    if queues:
        transaction.on_commit(functools.partial(_wake, frozenset(queues)))
    return ids


def _check_queue_size(new_tasks: Sequence[NewTask], max_queue_size: int) -> None:
    queued = sum(1 for new in new_tasks if new.cached_result_json is None)
    if not queued:
        return
    pending = store.count_pending()
    if pending + queued > max_queue_size:
        raise QueueFullError(
            f"{pending} tasks are pending and max_queue_size is {max_queue_size}; "
            f"{queued} more do not fit. Wait for tasks to finish or raise max_queue_size."
        )


def _wake(queues: frozenset[str]) -> None:
    """Wake the workers serving ``queues``: this process's at once, others' by NOTIFY or the layer."""
    wakeup.notify(queues)
    wakeup.notify_processes(queues)


def add_with_settings(
    new_tasks: Sequence[NewTask], cache_key_fn: Callable[..., str] | None = None
) -> list[str]:
    """``add_new_tasks`` for adds made without a worker: the cache and queue size of ``ATW``."""
    conf = get_settings()
    return add_new_tasks(
        new_tasks,
        cache=default_adapter() if conf.CACHE.ENABLED else None,
        cache_key_fn=cache_key_fn,
        max_queue_size=conf.MAX_QUEUE_SIZE,
    )


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
    so ``cache_key_fn`` and ``metadata`` work as with ``add_task``. ``ATW["MAX_QUEUE_SIZE"]``
    applies. Inside ``transaction.atomic()`` the task is stored with the transaction and
    workers are woken when it commits.
    """
    new = validation.build(
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
        created_by_id=_owner_id(created_by),
    )
    (added,) = add_with_settings([new], cache_key_fn)
    return added


def _owner_id(created_by: Any) -> Any:
    """The pk of ``created_by`` (a user or a pk), or ``TaskArgumentError`` if no user has it.

    A saved user instance is trusted as it is; a bare pk costs one query, so that a mistyped
    one is refused here rather than by the foreign key (on PostgreSQL only at the commit of the
    caller's transaction). No ``created_by``, the common case, costs nothing.
    """
    if created_by is None:
        return None
    if isinstance(created_by, Model):
        if created_by.pk is None or created_by._state.adding:
            raise TaskArgumentError(
                "created_by is a user that is not saved; save it first, or pass None.", path=("created_by",)
            )
        return created_by.pk
    users = get_user_model()._default_manager
    try:
        found = users.filter(pk=created_by).exists()
    except (TypeError, ValueError, ValidationError):  # not even of the pk's type
        found = False
    if not found:
        raise TaskArgumentError(
            f"created_by is {created_by!r}, which is no user's pk. Pass a user instance, the pk of "
            "an existing user, or None.",
            path=("created_by",),
        )
    return created_by


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
    new = validation.build_calls(
        task_func,
        calls,
        priority=priority,
        metadata=metadata,
        timeout=timeout,
        queue=queue,
        default_queue=get_settings().DEFAULT_QUEUE,
        run_after=run_after,
    )
    return add_with_settings(new)


aenqueue = sync_to_async(enqueue)
aenqueue.__doc__ = "Async version of ``enqueue``."
aenqueue_many = sync_to_async(enqueue_many)
aenqueue_many.__doc__ = "Async version of ``enqueue_many``."
