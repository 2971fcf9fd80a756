"""AsyncTaskWorker: the original library's worker API over durable task records."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from asgiref.sync import sync_to_async
from django.db import connection
from django.utils import timezone

from .. import registry, store, submit
from ..cache import AsyncCacheAdapter
from ..conf import get_settings
from ..exceptions import QueueFullError, TaskArgumentError
from ..realtime.publisher import EventPublisher
from ..shortcuts import check_list_filters
from ..status import TaskInfo, TaskStatus
from ..store import Outcome
from . import caching, wakeup
from .caching import ResultCache, assign_cache_keys
from .db import DatabaseThread
from .executor import ProgressTracker, TaskExecutor
from .futures import TaskFutureManager, error_for
from .housekeeping import Housekeeper
from .pool import UNWIND_TIMEOUT, WorkerPool
from .writer import OutcomeWriter

logger = logging.getLogger(__name__)

# Seconds start() waits for the wake-up listener's connection before going on without it.
LISTEN_TIMEOUT = 5.0


def _positive(name: str, value: Any, *, allow_none: bool = False, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = value >= 0 if allow_zero else value > 0
    if not ok:
        what = "a non-negative number" if allow_zero else "a positive number"
        raise ValueError(f"{name} must be {what}{' or None' if allow_none else ''}, got {value!r}.")


class AsyncTaskWorker:
    """Run registered async tasks from the database queue, with futures, progress and cancellation.

    Parameters (the original library's, plus ``queues``, ``progress_interval`` and ``claim_batch_size``):

    - ``max_workers``: tasks run at once by this worker.
    - ``task_timeout``: default timeout in seconds (None: no timeout); ``add_task(timeout=)`` overrides.
    - ``worker_poll_interval``: seconds between database polls when nothing wakes the worker.
    - ``cache_enabled``: cache task results (False wins over ``add_task(use_cache=True)``).
    - ``cache_ttl``, ``cache_max_size``, ``cache_cleanup_interval``: the cache's default TTL,
      size limit and cleanup interval, when the worker builds its adapter (``ATW["CACHE"]``'s backend).
    - ``cache_adapter``: an ``AsyncCacheAdapter`` to use instead (the options above then do not apply).
    - ``max_queue_size``: refuse ``add_task`` with ``QueueFullError`` when this many tasks are pending.
    - ``task_retention_days``: finished tasks older than this are deleted (None keeps them).
    - ``cleanup_interval``: seconds between retention cleanups; 0 disables them.
    - ``worker_lease``: seconds without a heartbeat after which other workers recover this
      worker's running tasks (``ATW["WORKER_LEASE"]``).
    """

    def __init__(
        self,
        max_workers: int = 10,
        task_timeout: float | None = None,
        worker_poll_interval: float = 1.0,
        cache_enabled: bool = False,
        cache_ttl: int | None = 3600,
        cache_max_size: int | None = 1000,
        cache_adapter: Any = None,
        cache_cleanup_interval: float = 900,
        max_queue_size: int | None = None,
        task_retention_days: float | None = 7,
        cleanup_interval: float = 3600,
        *,
        queues: Sequence[str] = ("default",),
        progress_interval: float = 0.1,
        claim_batch_size: int = 100,
        worker_lease: float = 30.0,
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive int, got {max_workers!r}.")
        _positive("task_timeout", task_timeout, allow_none=True)
        _positive("worker_poll_interval", worker_poll_interval)
        _positive("cache_ttl", cache_ttl, allow_none=True, allow_zero=True)
        _positive("max_queue_size", max_queue_size, allow_none=True)
        _positive("task_retention_days", task_retention_days, allow_none=True, allow_zero=True)
        _positive("cleanup_interval", cleanup_interval, allow_zero=True)
        _positive("progress_interval", progress_interval)
        _positive("worker_lease", worker_lease)
        if (
            isinstance(claim_batch_size, bool)
            or not isinstance(claim_batch_size, int)
            or claim_batch_size < 1
        ):
            raise ValueError(f"claim_batch_size must be a positive int, got {claim_batch_size!r}.")
        if isinstance(queues, str) or not queues or not all(isinstance(q, str) and q for q in queues):
            raise ValueError(f"queues must be a non-empty list of queue names, got {queues!r}.")

        self.max_workers = max_workers
        self.default_task_timeout = task_timeout
        self.worker_poll_interval = worker_poll_interval
        self.cache_enabled = cache_enabled
        self.cache_ttl = cache_ttl
        self.cache_max_size = cache_max_size
        self.cache_adapter = cache_adapter
        self.cache_cleanup_interval = cache_cleanup_interval
        self.max_queue_size = max_queue_size
        self.task_retention_days = task_retention_days
        self.cleanup_interval = cleanup_interval
        self.queues = list(dict.fromkeys(queues))
        self.progress_interval = progress_interval
        self.claim_batch_size = claim_batch_size
        self.worker_lease = worker_lease

        self.worker_id = ""
        self.running = False
        self._starting: asyncio.Lock | None = None
        self._db: DatabaseThread | None = None
        self._write_db: DatabaseThread | None = None
        self._pool: WorkerPool | None = None
        self._writer: OutcomeWriter | None = None
        self._progress: ProgressTracker | None = None
        self._futures = TaskFutureManager()
        self._housekeeper: Housekeeper | None = None
        self._listener: wakeup.PostgresListener | wakeup.ChannelLayerListener | None = None
        self.cache: AsyncCacheAdapter = (
            cache_adapter
            if cache_adapter is not None
            else AsyncCacheAdapter(
                default_ttl=cache_ttl,
                enabled=cache_enabled,
                max_size=cache_max_size,
                cleanup_interval=cache_cleanup_interval,
            )
        )
        self._events: EventPublisher | None = None

    @classmethod
    def from_settings(cls, **overrides: Any) -> AsyncTaskWorker:
        """Build a worker from ``settings.ATW``; keyword arguments override single values."""
        conf = get_settings()
        options: dict[str, Any] = {
            "max_workers": conf.MAX_WORKERS,
            "task_timeout": conf.TASK_TIMEOUT,
            "worker_poll_interval": conf.POLL_INTERVAL,
            "max_queue_size": conf.MAX_QUEUE_SIZE,
            "task_retention_days": conf.TASK_RETENTION_DAYS,
            "cleanup_interval": conf.CLEANUP_INTERVAL,
            "queues": [conf.DEFAULT_QUEUE],
            "progress_interval": conf.PROGRESS_INTERVAL,
            "claim_batch_size": conf.CLAIM_BATCH_SIZE,
            "worker_lease": conf.WORKER_LEASE,
            "cache_enabled": conf.CACHE.ENABLED,
            "cache_ttl": conf.CACHE.DEFAULT_TTL,
            "cache_max_size": conf.CACHE.MAX_SIZE,
            "cache_cleanup_interval": conf.CACHE.CLEANUP_INTERVAL,
        }
        options.update(overrides)
        return cls(**options)

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Register this worker and start claiming tasks, including those already pending.

        Idempotent: starting a running worker does nothing.
        """
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.running:
                return
            self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self._db = DatabaseThread(f"atw-db-{self.worker_id}")
            # Outcomes are written on a second connection, so a claim never waits for a write
            # to commit (and the reverse). SQLite has one writer per file: a second connection
            # would only queue on its lock, so there both share one thread.
            self._write_db = (
                DatabaseThread(f"atw-write-{self.worker_id}") if _separate_write_connection() else self._db
            )
            await self._register()
            self._futures = TaskFutureManager()
            # Live events to the channel layer, when one is configured.
            self._events = EventPublisher.for_worker(self.worker_id)
            if self._events is not None:
                self._events.start()
            self._progress = ProgressTracker(self._progress_changed)
            self._writer = OutcomeWriter(
                self._write_db,
                self.worker_id,
                progress=self._progress,
                progress_interval=self.progress_interval,
                retry_interval=self.worker_poll_interval,
                on_committed=self._on_committed,
                on_progress_committed=self._events.progress_committed if self._events else None,
            )
            self._pool = WorkerPool(
                worker_id=self.worker_id,
                db=self._db,
                executor=TaskExecutor(self.default_task_timeout, self._progress, self._result_cache()),
                writer=self._writer,
                max_workers=self.max_workers,
                queues=self.queues,
                poll_interval=self.worker_poll_interval,
                batch_size=self.claim_batch_size,
                on_started=self._events.task_started if self._events else None,
            )
            self._writer.start()
            self._pool.start()
            retention = self.cleanup_interval > 0 and self.task_retention_days is not None
            self._housekeeper = Housekeeper(
                worker_id=self.worker_id,
                db=self._db,
                pool=self._pool,
                futures=self._futures,
                poll_interval=self.worker_poll_interval,
                cleanup=self.cleanup_old_tasks if retention else None,
                cleanup_interval=self.cleanup_interval,
                lease=self.worker_lease,
                register=self._register,
            )
            self._housekeeper.start()
            wakeup.listen(self, self.queues, self._pool.wake, self._pool.cancel)
            if wakeup.PostgresListener.available():
                self._listener = wakeup.PostgresListener(
                    self.worker_id, self.queues, self._pool.wake, self._pool.cancel
                )
            elif wakeup.remote_layer() is not None:
                self._listener = wakeup.ChannelLayerListener(
                    self.worker_id, self.queues, self._pool.wake, self._pool.cancel
                )
            if self._listener is not None:
                self._listener.start()
                # Listening before start() returns: a task added right after is never missed.
                # Bounded: with LISTEN unavailable the worker still polls.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LISTEN_TIMEOUT):
                        await self._listener.connected.wait()
            if self.cache_enabled:
                await self.cache.start_cleanup_task()
            self.running = True
            logger.info(
                "worker started id=%s max_workers=%d queues=%s", self.worker_id, self.max_workers, self.queues
            )

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming, give running tasks ``timeout`` seconds, then return the rest to pending.

        Futures still pending are cancelled; their tasks stay in the database and run again on the
        next start, here or in another process. Nothing is lost.
        """
        if not self.running:
            return
        assert self._pool is not None and self._writer is not None and self._db is not None
        self.running = False
        wakeup.unlisten(self)
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        await self._pool.stop_claiming()
        unfinished = await self._pool.drain(timeout)
        # Bounded: with the database away, outcomes not stored by then are left to lease recovery.
        await self._writer.stop(timeout=max(timeout, self.worker_poll_interval))
        if self._events is not None:
            await self._events.stop()
        if self._housekeeper is not None:
            await self._housekeeper.stop()
        if self.cache_enabled:
            await self.cache.stop_cleanup_task()
        if unfinished:
            try:
                released = await self._db.run(store.release, self.worker_id, unfinished)
                logger.info("returned %d unfinished tasks to pending", released)
            except Exception as exc:
                logger.warning(
                    "could not return %d unfinished tasks to pending (%s); lease recovery will",
                    len(unfinished),
                    type(exc).__name__,
                )
                unfinished = []
        self._futures.cancel_all()
        # Marked stopped, any task this worker could not store or release is recovered at once.
        with contextlib.suppress(Exception):
            await self._db.run(store.mark_worker_stopped, self.worker_id)
        if self._write_db is not self._db and self._write_db is not None:
            await self._write_db.close()
        self.cache.unbind_runner(self._db.run)
        await self._db.close()
        logger.info("worker stopped id=%s", self.worker_id)

    # --- adding ---------------------------------------------------------------------------

    async def add_task(
        self,
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
        **kwargs: Any,
    ) -> str:
        """Store a task and return its id; a worker (this one, or any other) runs it.

        ``task_func`` is a registered or importable async function, or a task type name.
        Arguments must be JSON values. Raises ``RuntimeError`` if the worker is not running
        (use ``django_atw.aenqueue`` where no worker runs), ``TaskDefinitionError`` for input
        that cannot be stored, ``QueueFullError`` past ``max_queue_size``. ``queue`` defaults to
        the task type's ``@task(queue=)``, else this worker's first queue; ``run_after`` (an aware
        datetime or a timedelta from now) defers the task.
        """
        self._require_running("add_task")
        if cache_key_fn is not None and not callable(cache_key_fn):
            raise TaskArgumentError(f"cache_key_fn must be callable or None, got {cache_key_fn!r}.")
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
            default_queue=self.queues[0],
            run_after=run_after,
        )
        assign_cache_keys([new], self.cache, enabled=self.cache_enabled, cache_key_fn=cache_key_fn)
        (added,) = await self._insert([new])
        return added

    async def add_tasks(
        self,
        task_func: Callable[..., Awaitable[Any]] | str,
        calls: Iterable[Sequence[Any] | Mapping[str, Any]],
        *,
        priority: int = 0,
        metadata: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        queue: str | None = None,
        run_after: datetime | timedelta | None = None,
    ) -> list[str]:
        """Store many calls of one task with a single INSERT; return their ids in order.

        Each item of ``calls`` is a tuple or list of positional arguments, or a dict of keyword
        arguments (wrap a lone dict argument in a tuple: ``(payload,)``). All or none are stored.
        """
        self._require_running("add_tasks")
        new = submit.build_calls(
            task_func,
            calls,
            priority=priority,
            metadata=metadata,
            timeout=timeout,
            queue=queue,
            default_queue=self.queues[0],
            run_after=run_after,
        )
        assign_cache_keys(new, self.cache, enabled=self.cache_enabled)
        return await self._insert(new)

    async def _register(self) -> None:
        assert self._db is not None
        await self._db.run(
            store.register_worker,
            self.worker_id,
            socket.gethostname(),
            os.getpid(),
            self.queues,
            self.max_workers,
        )

    async def _insert(self, new: list[submit.NewTask]) -> list[str]:
        assert self._db is not None and self._pool is not None
        # Tasks this worker can start at once are stored already claimed by it: one round trip
        # from add_task to the task running, instead of an insert, a wake-up and a claim.
        mine = [n for n in new if n.queue in self.queues and n.run_after is None]
        reserved = self._pool.reserve(len(mine)) if mine else 0
        for task in mine[:reserved]:
            task.claimed_by = self.worker_id
        try:
            # One trip to the database thread: cache lookup, queue-size check, INSERT. A task
            # found in the cache is inserted completed (its claimed_by cleared): it never runs.
            ids = await self._db.run(caching.add_tasks, new, self.cache, self._check_queue_size)
        except BaseException:
            self._pool.unreserve(reserved)
            raise
        started = [task for task in mine[:reserved] if task.claimed_by is not None]
        if len(started) < reserved:
            self._pool.unreserve(reserved - len(started))
        by_task = {id(task): task_id for task, task_id in zip(new, ids, strict=True)}
        if started:
            self._pool.start_reserved([_claimed(by_task[id(task)], task) for task in started])
        for task in new:
            if task.cached_result_json is not None:
                self._completed_from_cache(by_task[id(task)], task.cached_result_json)
        queued = [n for n in new if n.cached_result_json is None]
        if any(n.claimed_by is None and n.queue in self.queues and n.run_after is None for n in queued):
            self._pool.wake()
        if queued:
            wakeup.notify({n.queue for n in queued} - set(self.queues))
            await wakeup.abroadcast(queues={n.queue for n in queued if n.claimed_by is None})
        return ids

    def _check_queue_size(self, new: Sequence[submit.NewTask]) -> None:
        """Refuse tasks past ``max_queue_size`` (run on the database thread, before the INSERT).

        Tasks completed from the cache do not count: they never queue.
        """
        queued = sum(1 for n in new if n.cached_result_json is None)
        if self.max_queue_size is None or not queued:
            return
        pending = store.count_pending()
        if pending + queued > self.max_queue_size:
            raise QueueFullError(
                f"{pending} tasks are pending and max_queue_size is {self.max_queue_size}; "
                f"{queued} more do not fit. Wait for tasks to finish or raise max_queue_size."
            )

    def _completed_from_cache(self, task_id: str, result_json: str) -> None:
        """A task this worker stored completed from the cache: resolve its future now."""
        self._futures.completed_at_add(task_id, result_json)

    # --- reading --------------------------------------------------------------------------

    def is_idle(self) -> bool:
        """True when no task runs here and no claim is in flight (for draining, ``--burst``)."""
        return self._pool is None or (not self._pool.running and not self._pool.claiming)

    def running_task_ids(self) -> list[str]:
        """Return the ids of the tasks running in this worker now."""
        return list(self._pool.running) if self._pool is not None else []

    async def get_task_info(self, task_id: str) -> TaskInfo | None:
        """Return a task's state, with live progress if it runs here; None if unknown."""
        info: TaskInfo | None = await self._read(store.get_task, task_id)
        if info is not None and self._progress is not None and info.status is TaskStatus.RUNNING:
            live = self._progress.values.get(task_id)
            if live is not None and live != info.progress:
                info = _replace_progress(info, live)
        return info

    async def get_all_tasks(
        self,
        status: TaskStatus | str | None = None,
        limit: int | None = None,
        older_than: timedelta | None = None,
    ) -> list[TaskInfo]:
        """Return the ``limit`` newest tasks, of ``status``, created before ``now - older_than``."""
        status = check_list_filters(status, limit, older_than)
        tasks = await self._read(store.list_tasks, status, limit, older_than)
        live = self._progress.values if self._progress is not None else {}
        return [_replace_progress(t, live[t.id]) if t.id in live else t for t in tasks]

    async def _read(self, func: Callable[..., Any], *args: Any) -> Any:
        if self._db is not None and self.running:
            return await self._db.run(func, *args)
        return await sync_to_async(func)(*args)

    # --- cancelling -----------------------------------------------------------------------

    async def cancel_task(self, task_id: str) -> bool:
        """Cancel a pending or running task; False if it is unknown or already finished.

        A pending task is cancelled at once. A task running here has its coroutine cancelled
        and this call returns once it is stored as cancelled. A task running in another process
        is flagged; its worker cancels it at its next poll.
        """
        if self._pool is not None and task_id in self._pool.running:
            future = self._futures.get(task_id)
            self._pool.cancel(task_id)
            # Bounded: a task that swallows the cancellation and goes on must not hang the caller.
            await asyncio.wait([future], timeout=UNWIND_TIMEOUT)
            return True
        outcome, _owner = await self._read(store.cancel, task_id)
        if outcome == store.CANCELLED_PENDING:
            self._futures.set_exception(
                task_id, error_for(task_id, TaskStatus.CANCELLED, "Task cancelled before execution", "")
            )
            return True
        if outcome == store.CANCEL_REQUESTED:
            wakeup.notify_cancel(task_id)  # at once if another worker of this process runs it
            await wakeup.abroadcast(cancel=task_id)  # and in other processes (PostgreSQL: NOTIFY)
            return True
        return False

    # --- futures --------------------------------------------------------------------------

    async def get_task_future(self, task_id: str) -> asyncio.Future[Any]:
        """Return a future for the task's result; it raises a ``TaskError`` subclass on failure.

        Resolves at once for a finished task, wherever it ran. Raises ``KeyError`` for an
        unknown id.
        """
        (future,) = await self.get_task_futures([task_id])
        return future

    async def get_task_futures(self, task_ids: Sequence[str]) -> list[asyncio.Future[Any]]:
        """Return futures for several tasks, in order, reading the database once for all of them."""
        fresh = [task_id for task_id in dict.fromkeys(task_ids) if not self._futures.has(task_id)]
        # Register before reading, so an outcome committed in between still resolves them.
        futures = [self._futures.get(task_id) for task_id in task_ids]
        if fresh:
            infos: dict[str, TaskInfo] = await self._read(store.get_tasks, fresh)
            missing = [task_id for task_id in fresh if task_id not in infos]
            for task_id in missing:
                self._futures.set_exception(task_id, KeyError(task_id))
            if missing:
                raise KeyError(f"Task {missing[0]} not found")
            for info in infos.values():
                if info.status.is_terminal:
                    self._futures.resolve_from_info(info)
        return futures

    async def wait_for_tasks(self, task_ids: Sequence[str], timeout: float | None = None) -> list[Any]:
        """Wait for all tasks and return their results in order.

        Raises the first failure's ``TaskError``, or ``TimeoutError`` after ``timeout`` seconds;
        a timeout leaves the tasks running and their futures usable.
        """
        if not task_ids:
            return []
        futures = await self.get_task_futures(task_ids)
        _, pending = await asyncio.wait(futures, timeout=timeout)
        if pending:
            raise TimeoutError(f"{len(pending)} of {len(futures)} tasks did not finish within {timeout} s")
        return [future.result() for future in futures]

    async def wait_for_any_task(
        self, task_ids: Sequence[str], timeout: float | None = None
    ) -> tuple[Any, str]:
        """Wait for the first of the tasks to finish; return ``(result, task_id)``.

        Raises that task's ``TaskError`` if it failed, ``TimeoutError`` after ``timeout`` seconds,
        ``ValueError`` for an empty list.
        """
        if not task_ids:
            raise ValueError("task_ids is empty; pass at least one task id.")
        futures = await self.get_task_futures(task_ids)
        done, _ = await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            raise TimeoutError(f"none of {len(futures)} tasks finished within {timeout} s")
        index = next(i for i, future in enumerate(futures) if future in done)
        return futures[index].result(), task_ids[index]

    def _progress_changed(self) -> None:
        if self._writer is not None:
            self._writer.progress_changed()

    def _on_committed(self, outcomes: Sequence[Outcome]) -> None:
        if self._events is not None:
            self._events.outcomes_committed(outcomes)
        futures = self._futures
        for outcome in outcomes:
            if outcome.status is TaskStatus.PENDING or not futures.has(outcome.task_id):
                continue  # a retry: the future resolves when a later attempt ends
            if outcome.status is TaskStatus.COMPLETED:
                result = json.loads(outcome.result_json) if outcome.result_json is not None else None
                futures.set_result(outcome.task_id, result)
            else:
                exc = error_for(outcome.task_id, outcome.status, outcome.error, outcome.error_type)
                exc.__cause__ = outcome.exception
                futures.set_exception(outcome.task_id, exc)

    # --- retention ----------------------------------------------------------------------

    async def cleanup_old_tasks(self) -> int:
        """Delete finished tasks completed more than ``task_retention_days`` ago; return how many."""
        if self.task_retention_days is None:
            return 0
        cutoff = timezone.now() - timedelta(days=self.task_retention_days)
        count: int = await self._read(store.delete_finished_before, cutoff)
        if count:
            logger.info("deleted %d finished tasks older than %s days", count, self.task_retention_days)
        return count

    # --- result cache ---------------------------------------------------------------------

    def _result_cache(self) -> ResultCache:
        assert self._db is not None
        self.cache.bind_runner(self._db.run)
        return ResultCache(
            self.cache,
            is_enabled=lambda: self.cache_enabled,
            db=self._db,
            poll_interval=self.worker_poll_interval,
        )

    async def invalidate_cache(
        self,
        task_func: Callable[..., Awaitable[Any]] | str,
        *args: Any,
        cache_key_fn: Callable[..., str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> bool:
        """Remove the cached result of ``task_func(*args, **kwargs)``; True if there was one.

        Pass the ``cache_key_fn`` and ``metadata`` the task was added with, if any.
        """
        task_type = task_func if isinstance(task_func, str) else registry.type_of(task_func)
        key = self.cache.make_key(task_type, args, kwargs, cache_key_fn, None, metadata)
        return await self.cache.invalidate_key(key)

    async def clear_cache(self) -> None:
        """Remove every cached result."""
        await self.cache.clear()

    def _require_running(self, method: str) -> None:
        if not self.running:
            raise RuntimeError(
                f"AsyncTaskWorker.{method}() needs a running worker: await worker.start() first, or use "
                "django_atw.aenqueue()/enqueue() to store a task for any worker."
            )


def _claimed(task_id: str, task: submit.NewTask) -> store.ClaimedTask:
    """The claim of a task this worker stored as its own; arguments as a claim would read them."""
    args, kwargs = json.loads(json.dumps([task.args, task.kwargs]))
    return store.ClaimedTask(
        task_id,
        task.task_type,
        args,
        kwargs,
        task.timeout,
        task.priority,
        None,
        1,
        task.max_attempts,
        cache_key=task.cache_key,
        cache_ttl=task.cache_ttl,
    )


def _separate_write_connection() -> bool:
    return connection.vendor != "sqlite"


def _replace_progress(info: TaskInfo, progress: float) -> TaskInfo:
    return dataclasses.replace(info, progress=progress)
