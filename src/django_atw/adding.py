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
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Model

from . import store, validation, wakeup
from .cache.adapter import AsyncCacheAdapter, default_adapter
from .cache.task_keys import assign_cache_keys, complete_hits
from .conf import get_settings
from .exceptions import QueueFullError, TaskArgumentError
from .group_commit import GroupCommit, drop_dead_connections
from .values import NewTask

logger = logging.getLogger(__name__)


def add_new_tasks(
    new_tasks: Sequence[NewTask],
    *,
    cache: AsyncCacheAdapter | None,
    cache_key_fn: Callable[..., str] | None = None,
    max_queue_size: int | None = None,
    claim_queues: Sequence[str] = (),
) -> list[str]:
    """Store validated tasks with one INSERT and return their ids in order.

    ``cache`` is the result cache to key and look the tasks up in (None: caching is off).
    A task found there is inserted completed and never runs. ``max_queue_size`` refuses the
    batch with ``QueueFullError`` when that many tasks are pending already (hits do not count).
    Synchronous: it runs on a worker's database thread or the caller's thread, on that thread's
    connection and in its transaction, if any. When the cache entries live in the task database,
    lookup and INSERT share one transaction. Workers are woken after the commit, in this process
    and in others (``wakeup.notify_processes``).
    """
    add = _Add(new_tasks, cache, cache_key_fn, max_queue_size)
    add.assign_keys()
    return _store_alone(add, claim_queues)


class _Add:
    """One call's tasks on their way through the add path, alone or in a group commit."""

    __slots__ = ("cache", "cache_key_fn", "keyed", "looked_up", "max_queue_size", "new_tasks")

    def __init__(
        self,
        new_tasks: Sequence[NewTask],
        cache: AsyncCacheAdapter | None,
        cache_key_fn: Callable[..., str] | None,
        max_queue_size: int | None,
    ) -> None:
        if cache_key_fn is not None and not callable(cache_key_fn):
            raise TaskArgumentError(f"cache_key_fn must be callable or None, got {cache_key_fn!r}.")
        self.new_tasks = new_tasks
        self.cache = cache
        self.cache_key_fn = cache_key_fn
        self.max_queue_size = max_queue_size
        self.keyed: bool | None = None  # None: keys not assigned yet
        self.looked_up = False  # add-time hits looked up (and kept) already

    @property
    def together(self) -> bool:
        """The cache entries live in the task database: look up in the INSERT's transaction."""
        return bool(self.keyed) and self.cache is not None and self.cache.backend.in_task_database

    def assign_keys(self) -> None:
        """Cache keys (the caller's key function runs here), once."""
        if self.keyed is None:
            self.keyed = self.cache is not None and self.cache.enabled
            if self.keyed:
                assert self.cache is not None
                assign_cache_keys(self.new_tasks, self.cache, enabled=True, cache_key_fn=self.cache_key_fn)

    def prepare(self) -> None:
        """Keys, and the add-time lookup in a cache outside the task database (no transaction)."""
        self.assign_keys()
        if self.keyed and not self.together and not self.looked_up:
            self.look_up()

    def look_up(self) -> None:
        assert self.cache is not None
        complete_hits(self.new_tasks, self.cache)
        self.looked_up = True

    def queued(self) -> int:
        """How many of the tasks count against ``max_queue_size`` (cache hits do not)."""
        return sum(1 for new in self.new_tasks if new.cached_result_json is None)

    def queues(self) -> frozenset[str]:
        """The queues that get a claimable task: what the wake-up names."""
        return frozenset(
            new.queue for new in self.new_tasks if new.cached_result_json is None and new.claimed_by is None
        )


def _store_alone(add: _Add, claim_queues: Sequence[str] = ()) -> list[str]:
    """Store one call's tasks in one transaction on this thread's connection; wake on commit.

    Tasks marked ``claimed_by`` a worker serving ``claim_queues`` are stored claimed unless a
    pending task would be claimed first (``store.add_tasks``); those are woken for instead."""
    look_up = bool(add.keyed) and not add.looked_up
    with transaction.atomic() if look_up and add.together else contextlib.nullcontext():
        if look_up:
            add.look_up()
        if add.max_queue_size is not None and add.queued():
            refused = _queue_full(store.count_pending(), add.queued(), add.max_queue_size)
            if refused is not None:
                raise refused
        ids = store.add_tasks(add.new_tasks, claim_queues)
    queues = add.queues()
    if queues:
        transaction.on_commit(functools.partial(_wake, queues))
    return ids


def _queue_full(pending: int, queued: int, max_queue_size: int) -> QueueFullError | None:
    """The error for ``queued`` more tasks that do not fit beside ``pending``; None if they fit."""
    if not queued or pending + queued <= max_queue_size:
        return None
    return QueueFullError(
        f"{pending} tasks are pending and max_queue_size is {max_queue_size}; "
        f"{queued} more do not fit. Wait for tasks to finish or raise max_queue_size."
    )


def _wake(queues: frozenset[str]) -> None:
    """Wake the workers serving ``queues``: this process's at once, others' by NOTIFY or the layer."""
    wakeup.notify(queues)
    wakeup.notify_processes(queues)


# --- group commit -----------------------------------------------------------------------------

# Most tasks one group commit stores with its one INSERT (a larger enqueue_many goes alone).
GROUP_MAX_ROWS = 1000
_CONNECTION_ERRORS = (InterfaceError, OperationalError)


def _store_batch(adds: list[_Add]) -> list[list[str] | BaseException]:
    """Store the calls of a group commit with one INSERT and one commit; one outcome per call.

    Runs on the leading caller's thread and connection (autocommit) or on the group's own
    thread. A call whose rows the INSERT refuses must fail alone: when the batch's INSERT fails,
    each call is stored again on its own, so only the bad one gets the error it would have got
    alone. A failing connection fails every call: none of them could be stored.
    """
    outcomes: list[list[str] | BaseException | None] = [None] * len(adds)
    for index, add in enumerate(adds):
        try:
            add.prepare()  # done already by a thread's caller; a coroutine's leaves it to here
        except Exception as exc:
            outcomes[index] = exc
    prepare_errors = list(outcomes)
    live = [index for index, outcome in enumerate(outcomes) if outcome is None]
    in_transaction = [adds[index] for index in live if adds[index].together and not adds[index].looked_up]
    undo = [(new, new.cached_result_json, new.claimed_by) for add in in_transaction for new in add.new_tasks]
    try:
        with transaction.atomic() if in_transaction else contextlib.nullcontext():
            for add in in_transaction:
                add.look_up()
            admitted = _admit(adds, live, outcomes)
            ids = store.add_tasks([new for index in admitted for new in adds[index].new_tasks])
    except _CONNECTION_ERRORS as exc:
        drop_dead_connections()
        return [exc if outcome is None else outcome for outcome in outcomes]
    except Exception:
        for new, result_json, claimed_by in undo:  # those lookups were rolled back with the batch
            new.cached_result_json, new.claimed_by = result_json, claimed_by
        for add in in_transaction:
            add.looked_up = False
        # Queue sizes too are checked again, each against the calls stored before it.
        pairs = zip(adds, prepare_errors, strict=True)
        return [_store_or_error(add) if error is None else error for add, error in pairs]
    # Committed: from here on nothing may fail the calls (storing them again would fail them all).
    start = 0
    for index in admitted:
        count = len(adds[index].new_tasks)
        outcomes[index] = ids[start : start + count]
        start += count
    queues = frozenset[str]().union(*(adds[index].queues() for index in admitted))
    if queues:
        try:
            _wake(queues)
        except Exception:
            logger.exception("could not wake workers for queues %s; they will poll", sorted(queues))
    return [outcome for outcome in outcomes if outcome is not None]


def _admit(adds: list[_Add], live: list[int], outcomes: list[list[str] | BaseException | None]) -> list[int]:
    """The calls whose tasks fit ``max_queue_size``, in order; the others' outcome is ``QueueFullError``.

    One count of pending tasks for the batch; each call admitted counts for the next ones, as if
    they had been stored one after the other.
    """
    if not any(adds[index].max_queue_size is not None and adds[index].queued() for index in live):
        return live
    pending = store.count_pending()
    admitted = []
    for index in live:
        add = adds[index]
        queued = add.queued()
        refused = None if add.max_queue_size is None else _queue_full(pending, queued, add.max_queue_size)
        if refused is not None:
            outcomes[index] = refused
            continue
        pending += queued
        admitted.append(index)
    return admitted


def _store_or_error(add: _Add) -> list[str] | BaseException:
    try:
        return _store_alone(add)
    except Exception as exc:
        return exc


# Batches of concurrent adds stored at once on PostgreSQL, each on its own connection: while one
# waits for its commit the next is sent (8 coroutines awaiting aenqueue: 6,300 -> 8,400 tasks/s
# measured). SQLite has one writer: a second batch would only wait for its lock.
POSTGRES_LANES = 2


def _lanes() -> int:
    return POSTGRES_LANES if connection.vendor == "postgresql" else 1


_GROUP: GroupCommit[_Add, list[str]] = GroupCommit(
    _store_batch, max_rows=GROUP_MAX_ROWS, name="atw-enqueue", lanes=_lanes
)


def _joins_group() -> bool:
    """True when the caller has no transaction of its own: its tasks may commit with others'."""
    return not connection.in_atomic_block and connection.get_autocommit()


def close_group_connection() -> None:
    """Close the connection of the group commit's own thread (it stores what no caller's thread can)."""
    _GROUP.close()


def add_with_settings(
    new_tasks: Sequence[NewTask], cache_key_fn: Callable[..., str] | None = None
) -> list[str]:
    """``add_new_tasks`` for adds made without a worker: the cache and queue size of ``ATW``.

    Outside a transaction, calls made at the same moment by several threads are stored
    together, with one INSERT and one commit (``GroupCommit``); each returns once its rows are
    committed. Inside ``transaction.atomic()`` the tasks are stored in the caller's transaction.
    """
    add = _with_settings(new_tasks, cache_key_fn)
    if not _joins_group():
        add.assign_keys()
        return _store_alone(add)
    add.prepare()  # on this thread: the key function, and a cache lookup outside the database
    return _GROUP.run(add, rows=len(new_tasks))


async def _aadd_with_settings(
    new_tasks: Sequence[NewTask], cache_key_fn: Callable[..., str] | None = None
) -> list[str]:
    """``add_with_settings`` from a coroutine: stored by the group commit (async code has no
    transaction to join), awaited without blocking the loop."""
    return await _GROUP.arun(_with_settings(new_tasks, cache_key_fn), rows=len(new_tasks))


def _with_settings(new_tasks: Sequence[NewTask], cache_key_fn: Callable[..., str] | None) -> _Add:
    conf = get_settings()
    cache = default_adapter() if conf.CACHE.ENABLED else None
    return _Add(new_tasks, cache, cache_key_fn, conf.MAX_QUEUE_SIZE)


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


async def aenqueue(
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
    """Async version of ``enqueue``.

    Validated on the loop; stored by the group commit on a thread of its own (with the calls
    of other coroutines and threads made meanwhile), never on the thread ``sync_to_async``
    shares. Returns once the task is committed. A ``created_by`` given as a pk is looked up
    with ``sync_to_async``.
    """
    owner = (
        _owner_id(created_by)
        if created_by is None or isinstance(created_by, Model)
        else await sync_to_async(_owner_id)(created_by)
    )
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
        created_by_id=owner,
    )
    (added,) = await _aadd_with_settings([new], cache_key_fn)
    return added


async def aenqueue_many(
    task_func: Callable[..., Awaitable[Any]] | str,
    calls: Iterable[Sequence[Any] | Mapping[str, Any]],
    *,
    priority: int = 0,
    metadata: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    queue: str | None = None,
    run_after: datetime | timedelta | None = None,
) -> list[str]:
    """Async version of ``enqueue_many`` (stored as ``aenqueue`` stores)."""
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
    return await _aadd_with_settings(new)
