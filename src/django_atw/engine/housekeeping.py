"""A running worker's background duties: heartbeats, lease recovery, other processes' changes,
retention, vacuuming the task table."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Container
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from .. import store
from ..conf import get_settings
from ..logs import brief
from ..store.thread import DatabaseThread
from .futures import TaskFutureManager
from .pool import WorkerPool

logger = logging.getLogger(__name__)

# Seconds between heartbeats of the worker's row (its liveness for the admin and for leases).
# A third of the lease when the lease is short, so two missed beats never cost a live worker
# its tasks.
HEARTBEAT_INTERVAL = 5.0
# Seconds between prunes of the rows of workers that stopped (cleanly or found dead) longer
# than ATW["WORKER_RETENTION"] ago; any live worker prunes. A backlog larger than one batch
# goes one batch per heartbeat until it is gone.
PRUNE_INTERVAL = 600.0
# Awaited tasks running elsewhere: a poll reads up to CHECK_AT_ONCE of them, or more when
# needed for every one to be read once per FULL_CHECK seconds. Short polls with many tasks
# awaited (``wait_for_tasks`` on a whole backlog) otherwise read the whole list at every poll.
CHECK_AT_ONCE = 100
FULL_CHECK = 2.0


class Housekeeper:
    """Notice, at the poll interval, what no in-process event announces.

    Futures of tasks that run in other processes resolve from the stored outcome; a cancel
    request stored by another process cancels the task here. Retention cleanup runs on its
    own, slower interval (none when disabled), on the worker's connection.

    On its own loop, every heartbeat interval: the heartbeat (a worker that finds its lease
    taken drops its tasks and registers again), then lease recovery of dead workers' tasks.
    That loop has a database thread, and so a connection, of its own (``lease_db``; created
    here when not given): a long query on the worker's claim connection, a wide read or a
    large retention cleanup, must never hold back the heartbeat, or another worker would take
    this worker's running tasks and run them a second time. On SQLite there is one writer per
    file: a heartbeat may still wait for the write lock, but every write elsewhere is one short
    transaction (retention deletes ``store.DELETE_BATCH`` rows per transaction), so the wait
    is bounded by one of them, far below any sensible lease.

    On PostgreSQL, every ``vacuum_interval`` seconds (none when 0), the task table's statistics
    are read on the lease connection and, when claims and completions have left enough dead
    rows (``store.vacuum_due``) or changed enough rows (``store.analyze_due``), the table is
    vacuumed and analyzed on a connection opened for that alone (see ``vacuum``).
    """

    def __init__(
        self,
        *,
        worker_id: str,
        db: DatabaseThread,
        pool: WorkerPool,
        futures: TaskFutureManager,
        poll_interval: float,
        writing: Container[str] = frozenset(),
        cleanup: Callable[[], Awaitable[int]] | None,
        cleanup_interval: float,
        lease: float = 30.0,
        register: Callable[[], Awaitable[None]] | None = None,
        lease_db: DatabaseThread | None = None,
        vacuum_interval: float = 0.0,
    ) -> None:
        self._worker_id = worker_id
        self._db = db
        # Heartbeat, lease recovery and pruning only: nothing else may queue on this thread.
        self._owns_lease_db = lease_db is None
        self._lease_db = lease_db if lease_db is not None else DatabaseThread(f"atw-lease-{worker_id}")
        self._pool = pool
        self._futures = futures
        self._writing = writing  # tasks whose outcome this worker is storing (OutcomeWriter.writing)
        self._poll_interval = poll_interval
        self._cleanup = cleanup
        self._cleanup_interval = cleanup_interval
        self._lease = lease
        self._register = register
        self._vacuum_interval = vacuum_interval
        self._told_unmaintainable = False  # logged once that this role may not vacuum the table
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._poll_loop(), name=f"atw-housekeeping-{self._worker_id}"))
        self._tasks.append(asyncio.create_task(self._lease_loop(), name=f"atw-lease-{self._worker_id}"))
        if self._cleanup is not None:
            self._tasks.append(
                asyncio.create_task(self._cleanup_loop(), name=f"atw-cleanup-{self._worker_id}")
            )
        if self._vacuum_interval > 0:
            self._tasks.append(asyncio.create_task(self._vacuum_loop(), name=f"atw-vacuum-{self._worker_id}"))

    def side_tasks(self) -> list[asyncio.Task[None]]:
        """The long-lived tasks the worker watches (polling, heartbeats, cleanup)."""
        return list(self._tasks)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._owns_lease_db:
            await self._lease_db.close()

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self._poll_once()
            except Exception as exc:
                logger.warning("worker housekeeping failed (%s); retrying at the next poll", brief(exc))

    async def _lease_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = min(HEARTBEAT_INTERVAL, self._lease / 3)
        next_prune = loop.time()
        while True:
            await asyncio.sleep(interval)
            try:
                await self.beat()
                await self.recover()
                if loop.time() >= next_prune and await self.prune() < store.PRUNE_BATCH:
                    next_prune = loop.time() + PRUNE_INTERVAL
            except Exception as exc:
                logger.warning("heartbeat or lease recovery failed (%s); retrying", brief(exc))

    async def beat(self) -> None:
        """Heartbeat; if the lease was lost meanwhile, drop the running tasks and register again."""
        if await self._lease_db.run(store.heartbeat, self._worker_id, len(self._pool.running)):
            return
        dropped = self._pool.abandon_all()
        logger.error(
            "worker %s missed its lease (no heartbeat for %g s): its %d running tasks were recovered "
            "by another worker and are dropped here; registering again",
            self._worker_id,
            self._lease,
            dropped,
        )
        if self._register is not None:
            await self._register()
            self._pool.wake()

    async def recover(self) -> store.Reaped:
        """Recover the running tasks of workers whose lease expired (see ``store.reap_stale_workers``)."""
        reaped = await self._lease_db.run(store.reap_stale_workers, timedelta(seconds=self._lease))
        if reaped.requeued or reaped.failed:
            logger.warning(
                "recovered tasks of dead workers %s: %d back to pending, %d failed (no attempts left)",
                ",".join(reaped.workers) or "(already marked)",
                len(reaped.requeued),
                len(reaped.failed),
            )
            if reaped.requeued:
                self._pool.wake()
        return reaped

    async def prune(self) -> int:
        """Delete one batch of rows of workers stopped longer than ``ATW["WORKER_RETENTION"]`` ago.

        Returns how many; a full batch (``store.PRUNE_BATCH``) means more are due.
        """
        cutoff = timezone.now() - timedelta(seconds=get_settings().WORKER_RETENTION)
        return await self._lease_db.run(store.prune_workers, cutoff)

    def check_size(self) -> int:
        """How many awaited tasks one poll reads: all of them while that is cheap, else a share.

        The share goes round every awaited task once per ``FULL_CHECK`` seconds (or per poll,
        when polls are further apart), so a long ``wait_for_tasks`` costs the worker a bounded
        read per poll, not one that grows with every task awaited (see ``TaskFutureManager
        .next_to_check``). Tasks running in this process resolve without any read.
        """
        share = math.ceil(len(self._futures) * self._poll_interval / FULL_CHECK)
        return max(CHECK_AT_ONCE, share)

    async def _vacuum_loop(self) -> None:
        while True:
            await asyncio.sleep(self._vacuum_interval)
            try:
                await self.vacuum()
            except Exception as exc:
                logger.warning("vacuum of the task table failed (%s); retrying at the next check", brief(exc))

    async def vacuum(self, min_gap: float | None = None) -> store.Vacuumed | None:
        """VACUUM the task table if enough dead rows piled up and no other worker is at it.

        ANALYZE goes with it, or runs alone, when enough rows changed since the planner's
        statistics were gathered (``store.analyze_due``).

        The statistics are read on the lease connection (one short query); only when a vacuum
        is due does a connection of its own open, in autocommit, for the vacuum
        (``store.vacuum_if_due``), and close after it: a vacuum of a large table takes
        seconds, and must hold back neither claims nor heartbeats. At most one vacuum per
        ``min_gap`` seconds (default: ``vacuum_interval``) for all workers together (the table's
        last vacuum, in its statistics). A stop cancels a vacuum under way
        (``pg_cancel_backend``). Returns what was vacuumed, or None.
        """
        gap = self._vacuum_interval if min_gap is None else min_gap
        stats = await self._lease_db.run(store.table_stats)
        if stats is None or not store.maintenance_due(stats, gap):
            return None
        if not stats.maintainable:
            # PostgreSQL would skip the table with only a warning to this connection: say it
            # once in the log, and open no connection for a vacuum that cannot run.
            if not self._told_unmaintainable:
                self._told_unmaintainable = True
                logger.warning(
                    "the task table needs a VACUUM or ANALYZE, but this database role may not run "
                    "them (it must own the table or the database, or be a superuser); the workers "
                    "leave it to autovacuum (see django_atw.W006 and docs/scaling.md)"
                )
            return None
        db = DatabaseThread(f"atw-vacuum-{self._worker_id}")
        pid: int | None = None
        try:
            pid = await db.run(store.backend_pid)
            vacuumed = await db.run(store.vacuum_if_due, gap)
        except asyncio.CancelledError:
            if pid is not None:
                await self._lease_db.run(store.cancel_backend, pid)
            raise
        finally:
            await db.close()
        if vacuumed is None:
            return None
        # A vacuum that removed almost nothing: something still sees the dead rows, and the
        # next vacuums will fail the same way until it ends.
        held = vacuumed.vacuumed and vacuumed.dead_after >= 0.9 * vacuumed.dead_before
        (logger.warning if held else logger.info)(
            "%s the task table in %.1f s: %d dead rows before, %d after%s",
            " and ".join(
                w for w, done in (("vacuumed", vacuumed.vacuumed), ("analyzed", vacuumed.analyzed)) if done
            ),
            vacuumed.seconds,
            vacuumed.dead_before,
            vacuumed.dead_after,
            "; an old transaction, prepared transaction or replication slot keeps them "
            "(see pg_stat_activity.backend_xmin)"
            if held
            else "",
        )
        return vacuumed

    async def _poll_once(self) -> None:
        running = self._pool.running
        # Tasks running here, or whose outcome is being stored here, resolve at their commit.
        remote = self._futures.next_to_check(self.check_size(), skip=_Either(running, self._writing))
        # On the lease connection, a short read beside the heartbeats: on the claims' connection
        # it queued claims and outcome writes behind it at every poll.
        finished = await self._lease_db.run(store.finished_ids_among, remote) if remote else []
        # Most of those finished here, and their futures resolved at the commit: the whole
        # stored state is read only for the rest (finished elsewhere, or cancelled unstarted).
        # (One claimed, run and stored here while the read ran is still in ``writing`` until its
        # future resolves.)
        unresolved = [
            task_id for task_id in finished if self._futures.waiting(task_id) and task_id not in self._writing
        ]
        if unresolved:
            for info in (await self._db.run(store.finished_among, unresolved)).values():
                self._futures.resolve_from_info(info)
        if running:
            for task_id in await self._db.run(store.cancel_requested_among, self._worker_id, list(running)):
                self._pool.cancel(task_id)

    async def _cleanup_loop(self) -> None:
        assert self._cleanup is not None
        while True:
            await asyncio.sleep(self._cleanup_interval)
            try:
                await self._cleanup()
            except Exception:
                logger.exception("retention cleanup failed; retrying at the next interval")


class _Either:
    """Contains what either of two containers contains."""

    def __init__(self, first: Container[str], second: Container[str]) -> None:
        self._first = first
        self._second = second

    def __contains__(self, item: object) -> bool:
        return item in self._first or item in self._second


async def delete_finished_in_chunks(
    run: Callable[..., Awaitable[Any]], cutoff: datetime, *, batch_size: int = store.DELETE_BATCH
) -> int:
    """Delete finished tasks completed before ``cutoff``, one short transaction per call of ``run``.

    ``run`` is the caller's database runner (``DatabaseThread.run``, or ``sync_to_async``). Each
    chunk is its own call, so a claim queued on the same thread meanwhile runs after at most
    one chunk, never after the whole cleanup; awaiting each chunk yields to the event loop.
    Returns how many rows were deleted.
    """
    total = 0
    while True:
        deleted: int = await run(store.delete_finished_chunk, cutoff, batch_size)
        total += deleted
        if deleted < batch_size:
            return total
