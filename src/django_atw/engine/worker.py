"""AsyncTaskWorker: the original library's worker API over durable task records."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from asgiref.sync import sync_to_async
from django.utils import timezone

from .. import adding, registry, store, validation, wakeup
from ..cache import AsyncCacheAdapter
from ..shortcuts import check_list_filters
from ..status import TaskInfo, TaskStatus
from ..store.thread import DatabaseThread
from ..values import NewTask, Outcome
from . import housekeeping
from .executor import ProgressTracker
from .futures import TaskFutureManager, error_for, wait_all, wait_first
from .options import check_options, options_from_settings
from .pool import UNWIND_TIMEOUT, WorkerPool
from .runtime import Runtime

logger = logging.getLogger(__name__)


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
        check_options(
            max_workers=max_workers,
            task_timeout=task_timeout,
            worker_poll_interval=worker_poll_interval,
            cache_ttl=cache_ttl,
            max_queue_size=max_queue_size,
            task_retention_days=task_retention_days,
            cleanup_interval=cleanup_interval,
            progress_interval=progress_interval,
            worker_lease=worker_lease,
            claim_batch_size=claim_batch_size,
            queues=queues,
        )
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
        self._runtime: Runtime | None = None
        self._futures = TaskFutureManager()
        # Set after each commit of outcomes: a cheap signal for whoever waits for tasks to end
        # (``atw_worker --burst``). Clear it, check the state, then wait: no commit is missed.
        self.committed = asyncio.Event()
        self.finished_here = 0  # tasks this worker ran to an end (retries not counted), since start
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

    @classmethod
    def from_settings(cls, **overrides: Any) -> AsyncTaskWorker:
        """Build a worker from ``settings.ATW``; keyword arguments override single values."""
        return cls(**{**options_from_settings(), **overrides})

    # The running parts (None while stopped); see runtime.py.

    @property
    def _pool(self) -> WorkerPool | None:
        return self._runtime.pool if self._runtime is not None else None

    @property
    def _db(self) -> DatabaseThread | None:
        return self._runtime.db if self._runtime is not None else None

    @property
    def _read_db(self) -> DatabaseThread | None:
        return self._runtime.read_db if self._runtime is not None else None

    @property
    def _progress(self) -> ProgressTracker | None:
        return self._runtime.progress if self._runtime is not None else None

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

        Idempotent: starting a running worker does nothing. A start that fails stops whatever
        it had started (threads, heartbeat, the worker row) before the error is raised.
        """
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.running:
                return
            self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self._futures = TaskFutureManager()
            self.finished_here = 0
            runtime = Runtime(self, self.worker_id)
            await runtime.start(self._on_committed)
            self._runtime = runtime
            self.running = True
            logger.info(
                "worker started id=%s max_workers=%d queues=%s", self.worker_id, self.max_workers, self.queues
            )

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming, give running tasks ``timeout`` seconds, then return the rest to pending.

        Futures still pending are cancelled; their tasks stay in the database and run again on the
        next start, here or in another process. Nothing is lost. Every part is stopped even when
        one of them fails to; the first such error is raised once all are stopped.
        """
        runtime = self._runtime
        if not self.running or runtime is None:
            return
        self.running = False
        try:
            await runtime.stop(timeout)
        finally:
            self._futures.cancel_all()
            logger.info("worker stopped id=%s", self.worker_id)

    @property
    def failure(self) -> BaseException | None:
        """The error of the part that died and stopped this worker, if one did."""
        return self._runtime.failure if self._runtime is not None else None

    async def wait_failed(self) -> BaseException:
        """Wait until a part of this running worker dies (the worker then stops itself)."""
        assert self._runtime is not None, "the worker was never started"
        runtime = self._runtime
        await runtime.failed.wait()
        failure: BaseException | None = runtime.failure
        assert failure is not None
        return failure

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
            default_queue=self.queues[0],
            run_after=run_after,
        )
        (added,) = await self._insert([new], cache_key_fn)
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
        new = validation.build_calls(
            task_func,
            calls,
            priority=priority,
            metadata=metadata,
            timeout=timeout,
            queue=queue,
            default_queue=self.queues[0],
            run_after=run_after,
        )
        return await self._insert(new)

    async def _insert(self, new: list[NewTask], cache_key_fn: Callable[..., str] | None = None) -> list[str]:
        """Add tasks through the one add path, on this worker's database thread.

        Tasks this worker can start at once are stored already claimed by it: one round trip
        from add_task to the task running, instead of an insert, a wake-up and a claim.
        """
        assert self._db is not None and self._pool is not None
        mine = [n for n in new if n.queue in self.queues and n.run_after is None]
        reserved = await self._pool.reserve(len(mine)) if mine else 0
        for task in mine[:reserved]:
            task.claimed_by = self.worker_id
        try:
            # A task found in the cache is inserted completed (its claimed_by cleared): it never runs.
            # Stored pending instead (claimed_by cleared) when a claim would take another
            # pending task first: a task added here never overtakes one.
            ids = await self._db.run(
                adding.add_new_tasks,
                new,
                cache=self.cache if self.cache_enabled else None,
                cache_key_fn=cache_key_fn,
                max_queue_size=self.max_queue_size,
                claim_queues=self.queues,
            )
        except BaseException:
            self._pool.unreserve(reserved)
            raise
        started = [task for task in mine[:reserved] if task.claimed_by is not None]
        if len(started) < reserved:
            self._pool.unreserve(reserved - len(started))
        by_task = {id(task): task_id for task, task_id in zip(new, ids, strict=True)}
        if started:
            self._pool.start_reserved([task.as_claim(by_task[id(task)]) for task in started])
        for task in new:
            if task.cached_result_json is not None:
                self._futures.completed_at_add(by_task[id(task)], task.cached_result_json)
        return ids

    # --- reading --------------------------------------------------------------------------

    def is_idle(self) -> bool:
        """True when no task runs here and no claim is in flight (for draining, ``--burst``)."""
        pool = self._pool
        return pool is None or (not pool.running and not pool.claiming and not pool.waiting)

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
        """Run a read on this worker's read connection while it runs, else on Django's thread."""
        if self._read_db is not None and self.running:
            return await self._read_db.run(func, *args)
        return await sync_to_async(func)(*args)

    async def _write(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run a write on this worker's claim connection while it runs (SQLite's one writer)."""
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
        pool = self._pool
        if pool is not None and task_id in pool.running:
            return await self._cancel_here(task_id, pool)
        outcome, owner = await self._write(store.cancel, task_id)
        if outcome == store.CANCELLED_PENDING:
            self._futures.set_exception(
                task_id, error_for(task_id, TaskStatus.CANCELLED, "Task cancelled before execution", "")
            )
            return True
        if outcome == store.CANCEL_REQUESTED and pool is not None and owner == self.worker_id:
            # Claimed by this worker but not started yet: cancel it as it starts, and return
            # once that is stored, as for a running task (the original's read-your-writes).
            return await self._cancel_here(task_id, pool)
        if outcome == store.CANCEL_REQUESTED:
            wakeup.notify_cancel(task_id)  # at once if another worker of this process runs it
            await wakeup.abroadcast(cancel=task_id)  # and in other processes (PostgreSQL: NOTIFY)
            return True
        return False

    async def _cancel_here(self, task_id: str, pool: WorkerPool) -> bool:
        """Cancel a task of this worker; return once its cancellation is stored."""
        future = self._futures.get(task_id)
        pool.cancel_when_started(task_id)
        # Bounded: a task that swallows the cancellation and goes on must not hang the caller.
        await asyncio.wait([future], timeout=UNWIND_TIMEOUT)
        return True

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
        return await self._futures.futures_for(task_ids, lambda fresh: self._read(store.watch_states, fresh))

    async def wait_for_tasks(self, task_ids: Sequence[str], timeout: float | None = None) -> list[Any]:
        """Wait for all tasks and return their results in order.

        Raises the first failure's ``TaskError``, or ``TimeoutError`` after ``timeout`` seconds;
        a timeout leaves the tasks running and their futures usable.
        """
        if not task_ids:
            return []
        futures = await self.get_task_futures(task_ids)
        await wait_all(futures, timeout)
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
        index = await wait_first(futures, timeout)
        return futures[index].result(), task_ids[index]

    def _on_committed(self, outcomes: Sequence[Outcome]) -> None:
        self._futures.resolve_committed(outcomes)
        self.finished_here += sum(1 for outcome in outcomes if outcome.status is not TaskStatus.PENDING)
        self.committed.set()

    # --- retention ----------------------------------------------------------------------

    async def cleanup_old_tasks(self) -> int:
        """Delete finished tasks completed more than ``task_retention_days`` ago; return how many."""
        if self.task_retention_days is None:
            return 0
        cutoff = timezone.now() - timedelta(days=self.task_retention_days)
        # Chunk by chunk: claims queued on the same connection run between chunks.
        count = await housekeeping.delete_finished_in_chunks(self._write, cutoff)
        if count:
            logger.info("deleted %d finished tasks older than %s days", count, self.task_retention_days)
        return count

    # --- result cache ---------------------------------------------------------------------

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
                f"Worker pool is not running: AsyncTaskWorker.{method}() needs a started worker. "
                "Await worker.start() first, or use django_atw.aenqueue()/enqueue() to store a task "
                "for any worker."
            )


def _replace_progress(info: TaskInfo, progress: float) -> TaskInfo:
    return dataclasses.replace(info, progress=progress)
