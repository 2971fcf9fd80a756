"""What a started worker runs, started in order and always torn down, whatever failed.

``AsyncTaskWorker.start()`` builds a ``Runtime``; ``stop()`` closes it. Every part that starts
pushes its own teardown onto one ``AsyncExitStack``, so a start that fails half-way, or a
stop whose first step raises, still stops the writer, the publisher, the housekeeper (and so
the heartbeat) and the database threads, and marks the worker row stopped.

The side tasks (claim loop, writer, housekeeping loops, event publisher) are watched: one that
dies of an exception stops the worker loudly (logged with its traceback, ``failure`` set),
instead of leaving a worker that heartbeats but no longer claims or writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from django.db import connection

from .. import doorbell, store, wakeup
from ..conf import get_settings
from ..realtime.publisher import EventPublisher
from ..store.thread import DatabaseThread
from ..values import Outcome
from .caching import ResultCache
from .executor import ProgressTracker, TaskExecutor
from .housekeeping import Housekeeper
from .pool import WorkerPool
from .scheduler import Scheduler
from .writer import OutcomeWriter

if TYPE_CHECKING:
    from .worker import AsyncTaskWorker

logger = logging.getLogger(__name__)

# Seconds start() waits for the wake-up listener's connection before going on without it.
LISTEN_TIMEOUT = 5.0
# Seconds each teardown step may take when the part it stops hangs (a channel layer that
# never answers, a database that is away): the worker still stops, and what it could not
# store is left to lease recovery.
TEARDOWN_TIMEOUT = 10.0


class Runtime:
    """The running parts of one worker: database threads, writer, pool, housekeeper, listener."""

    def __init__(self, worker: AsyncTaskWorker, worker_id: str) -> None:
        self.worker = worker
        self.worker_id = worker_id
        self.db = DatabaseThread(f"atw-db-{worker_id}")
        # Outcomes are written on a second connection, so a claim never waits for a write to
        # commit (and the reverse). SQLite has one writer per file: a second connection would
        # only queue on its lock, so there both share one thread.
        self.write_db = DatabaseThread(f"atw-write-{worker_id}") if connection.vendor != "sqlite" else self.db
        # Reads made through the worker (get_task_info, get_all_tasks, the first read of a
        # wait_for_tasks) on a connection of their own: a 20,000-task wait's read held up
        # claims for tens of milliseconds on the claims' thread.
        self.read_db = DatabaseThread(f"atw-read-{worker_id}")
        self.events: EventPublisher | None = None
        self.progress = ProgressTracker(self._progress_changed)
        self.writer: OutcomeWriter | None = None
        self.pool: WorkerPool | None = None
        self.housekeeper: Housekeeper | None = None
        self.scheduler: Scheduler | None = None
        self.listener: (
            wakeup.PostgresListener | wakeup.ChannelLayerListener | wakeup.DoorbellListener | None
        ) = None
        self.failure: BaseException | None = None
        self.failed = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()
        self._stop_timeout = 5.0
        self._stopping = False

    async def start(self, on_committed: Callable[[Sequence[Outcome]], None]) -> None:
        """Start every part in order; on any failure, stop what started and re-raise."""
        try:
            await self._start(on_committed)
        except BaseException:
            self._stopping = True
            await self._stack.aclose()
            raise

    async def _start(self, on_committed: Callable[[Sequence[Outcome]], None]) -> None:
        worker = self.worker
        stack = self._stack
        stack.push_async_callback(self._close_threads)
        await self.register()
        stack.push_async_callback(self._mark_stopped)
        self.events = EventPublisher.for_worker(self.worker_id)
        if self.events is not None:
            self.events.start()
            stack.push_async_callback(self._bounded, "event publisher", self.events.stop)
        self.writer = OutcomeWriter(
            self.write_db,
            self.worker_id,
            progress=self.progress,
            progress_interval=worker.progress_interval,
            retry_interval=worker.worker_poll_interval,
            on_committed=self._committed(on_committed),
            on_progress_committed=self.events.progress_committed if self.events else None,
            expecting_more=self._outcomes_coming,
        )
        self.writer.start()
        # Bounded: with the database away, outcomes not stored by then are left to lease recovery.
        stack.push_async_callback(self._stop_writer)
        self.pool = WorkerPool(
            worker_id=self.worker_id,
            db=self.db,
            executor=TaskExecutor(
                worker.default_task_timeout, self.progress, self._result_cache(), worker_id=self.worker_id
            ),
            writer=self.writer,
            max_workers=worker.max_workers,
            queues=worker.queues,
            poll_interval=worker.worker_poll_interval,
            batch_size=worker.claim_batch_size,
            on_started=self.events.task_started if self.events else None,
        )
        retention = worker.cleanup_interval > 0 and worker.task_retention_days is not None
        self.housekeeper = Housekeeper(
            worker_id=self.worker_id,
            db=self.db,
            pool=self.pool,
            futures=worker._futures,
            poll_interval=worker.worker_poll_interval,
            writing=self.writer.writing,
            cleanup=worker.cleanup_old_tasks if retention else None,
            cleanup_interval=worker.cleanup_interval,
            lease=worker.worker_lease,
            register=self.register,
            # SQLite keeps no dead row versions to vacuum (see store/maintenance.py).
            vacuum_interval=get_settings().VACUUM_INTERVAL if connection.vendor == "postgresql" else 0.0,
        )
        self.housekeeper.start()
        stack.push_async_callback(self._bounded, "housekeeper", self.housekeeper.stop)
        self.pool.start()
        stack.push_async_callback(self._drain_and_release)
        if get_settings().SCHEDULER:
            self.scheduler = Scheduler(
                worker_id=self.worker_id, db=self.db, refresh=worker.worker_poll_interval
            )
            self.scheduler.start()
            stack.push_async_callback(self._bounded, "scheduler", self.scheduler.stop)
        self._watch()
        self._start_listening()
        if worker.cache_enabled:
            await worker.cache.start_cleanup_task()
            stack.push_async_callback(worker.cache.stop_cleanup_task)
        if self.listener is not None:
            # Listening before start() returns: a task added right after is never missed.
            # Bounded: with LISTEN unavailable the worker still polls.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LISTEN_TIMEOUT):
                    await self.listener.connected.wait()

    def _start_listening(self) -> None:
        assert self.pool is not None
        pool = self.pool
        wakeup.listen(self, self.worker.queues, pool.wake, pool.cancel)
        self._stack.callback(wakeup.unlisten, self)
        if wakeup.PostgresListener.available():
            self.listener = wakeup.PostgresListener(
                self.worker_id, self.worker.queues, pool.wake, pool.cancel
            )
        elif wakeup.remote_layer() is not None:
            self.listener = wakeup.ChannelLayerListener(
                self.worker_id, self.worker.queues, pool.wake, pool.cancel
            )
        elif (bell := doorbell.folder()) is not None:
            self.listener = wakeup.DoorbellListener(
                self.worker_id, self.worker.queues, pool.wake, pool.cancel, bell
            )
        if self.listener is not None:
            self.listener.start()
            self._stack.push_async_callback(self._bounded, "wake-up listener", self.listener.stop)

    async def stop(self, timeout: float) -> None:
        """Stop claiming, give running tasks ``timeout`` seconds, release the rest, stop every part.

        Each step runs even if an earlier one raised; the first error is re-raised at the end.
        """
        self._stopping = True
        self._stop_timeout = timeout
        await self._stack.aclose()

    async def register(self) -> None:
        await self.db.run(
            store.register_worker,
            self.worker_id,
            socket.gethostname(),
            os.getpid(),
            self.worker.queues,
            self.worker.max_workers,
        )

    # --- teardown steps (pushed in start order, run in reverse) ---

    async def _drain_and_release(self) -> None:
        assert self.pool is not None
        await self._bounded("claim loop", self.pool.stop_claiming)
        unfinished = await self.pool.drain(self._stop_timeout)
        if not unfinished:
            return
        try:
            released = await self.db.run(store.release, self.worker_id, unfinished)
            logger.info("returned %d unfinished tasks to pending", released)
        except Exception as exc:
            logger.warning(
                "could not return %d unfinished tasks to pending (%s); lease recovery will",
                len(unfinished),
                type(exc).__name__,
            )

    async def _stop_writer(self) -> None:
        assert self.writer is not None
        await self.writer.stop(timeout=max(self._stop_timeout, self.worker.worker_poll_interval))

    async def _mark_stopped(self) -> None:
        # Marked stopped, any task this worker could not store or release is recovered at once.
        try:
            async with asyncio.timeout(TEARDOWN_TIMEOUT):
                await self.db.run(store.mark_worker_stopped, self.worker_id)
        except Exception as exc:
            logger.warning(
                "could not mark worker %s stopped (%s); its lease will expire", self.worker_id, exc
            )

    async def _close_threads(self) -> None:
        self.worker.cache.unbind_runner(self.db.run)
        if self.write_db is not self.db:
            await self.write_db.close()
        await self.read_db.close()
        await self.db.close()

    @staticmethod
    async def _bounded(what: str, stop: Callable[[], Any]) -> None:
        """Run one part's stop, but never wait on it for more than ``TEARDOWN_TIMEOUT``."""
        try:
            async with asyncio.timeout(TEARDOWN_TIMEOUT):
                await stop()
        except TimeoutError:
            logger.error("the %s did not stop within %g s; left behind", what, TEARDOWN_TIMEOUT)

    # --- side-task monitor ---

    def _watch(self) -> None:
        """Stop the worker loudly when a side task dies; cancellation at stop is expected."""
        parts: list[Any] = [self.pool, self.writer, self.housekeeper, self.scheduler, self.events]
        for part in parts:
            for task in getattr(part, "side_tasks", lambda: [])():
                task.add_done_callback(self._side_task_done)

    def _side_task_done(self, task: asyncio.Task[Any]) -> None:
        if self._stopping or task.cancelled():
            return
        error = task.exception()
        if error is None:
            error = RuntimeError(f"{task.get_name()} ended while the worker was running")
        if self.failure is not None:
            return
        self.failure = error
        logger.critical(
            "worker %s: %s died (%s: %s); stopping the worker, its running tasks go back to pending",
            self.worker_id,
            task.get_name(),
            type(error).__name__,
            error,
            exc_info=error,
        )
        self.failed.set()
        asyncio.get_running_loop().create_task(self._stop_after_failure(), name=f"atw-stop-{self.worker_id}")

    async def _stop_after_failure(self) -> None:
        try:
            await self.worker.stop()
        except Exception:
            logger.exception("worker %s: stopping after a failure raised too", self.worker_id)

    # --- hooks ---

    def _progress_changed(self) -> None:
        if self.writer is not None:
            self.writer.progress_changed()

    def _outcomes_coming(self) -> bool:
        """True while tasks run here or are being added to start here: more outcomes soon."""
        return self.pool is not None and self.pool.busy

    def _committed(
        self, on_committed: Callable[[Sequence[Outcome]], None]
    ) -> Callable[[Sequence[Outcome]], None]:
        def committed(outcomes: Sequence[Outcome]) -> None:
            if self.events is not None:
                self.events.outcomes_committed(outcomes)
            on_committed(outcomes)

        return committed

    def _result_cache(self) -> ResultCache:
        worker = self.worker
        worker.cache.bind_runner(self.db.run)
        return ResultCache(
            worker.cache,
            is_enabled=lambda: worker.cache_enabled,
            db=self.db,
            poll_interval=worker.worker_poll_interval,
        )
