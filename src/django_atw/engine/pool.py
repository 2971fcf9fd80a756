"""Claim tasks from the database in batches and run them with bounded concurrency."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from django.utils import timezone

from .. import store
from ..status import TaskStatus
from ..store import ClaimedTask, Outcome
from .db import DatabaseThread
from .executor import TaskExecutor
from .futures import CANCEL_ERROR_TYPE
from .writer import OutcomeWriter

logger = logging.getLogger(__name__)

# Why a running task's coroutine was cancelled.
USER_CANCEL = "user"
SHUTDOWN = "shutdown"
# How long stop() waits for cancelled coroutines to unwind before it gives up on them.
UNWIND_TIMEOUT = 5.0


class WorkerPool:
    """Up to ``max_workers`` tasks at once, claimed ``min(free slots, batch_size)`` at a time.

    The claim loop sleeps until woken: by a task added in this process, by a slot freeing up
    while more work may be waiting, or by the poll interval (the fallback for tasks added
    elsewhere). It never claims more tasks than it has free slots, so nothing claimed waits.
    """

    def __init__(
        self,
        *,
        worker_id: str,
        db: DatabaseThread,
        executor: TaskExecutor,
        writer: OutcomeWriter,
        max_workers: int,
        queues: Sequence[str],
        poll_interval: float,
        batch_size: int,
        on_started: Callable[[ClaimedTask], None] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self._on_started = on_started  # live events: a task began running
        self.max_workers = max_workers
        self.queues = list(queues)
        self.running: dict[str, asyncio.Task[None]] = {}
        self._db = db
        self._executor = executor
        self._writer = writer
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._maybe_more = True
        self._reserved = 0
        self._stopping = False
        self._cancel_reasons: dict[str, str] = {}
        self._released: list[str] = []
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._claim_loop(), name=f"atw-claim-{self.worker_id}")

    def wake(self) -> None:
        """Make the claim loop look for work now."""
        self._maybe_more = True
        self._wake.set()

    def reserve(self, count: int) -> int:
        """Take up to ``count`` free slots for tasks added in this process; return how many.

        Only while no backlog is known (the last claim emptied the queue): a task added here
        must not overtake pending tasks that a claim would run first. The caller stores the
        reserved tasks already claimed and hands them to ``start_reserved``, saving the claim's
        round trip; it gives back what it did not use with ``unreserve``.
        """
        if self._stopping or self._maybe_more:
            return 0
        taken = max(0, min(count, self._free()))
        self._reserved += taken
        return taken

    def unreserve(self, count: int) -> None:
        self._reserved -= count
        if count:
            self._wake.set()

    def start_reserved(self, claims: list[ClaimedTask]) -> None:
        """Start tasks stored as claimed by this worker in reserved slots."""
        self._reserved -= len(claims)
        for claim in claims:
            self._start(claim)

    def _free(self) -> int:
        return self.max_workers - len(self.running) - self._reserved

    async def _claim_loop(self) -> None:
        while not self._stopping:
            # Clear before claiming: a wake-up that arrives during the claim is kept.
            self._wake.clear()
            free = self._free()
            if free > 0 and self._maybe_more:
                want = min(free, self._batch_size)
                try:
                    claims = await self._db.run(store.claim_batch, self.worker_id, self.queues, want)
                except Exception:
                    logger.exception("claiming tasks failed; retrying in %.1fs", self._poll_interval)
                    await asyncio.sleep(self._poll_interval)
                    continue
                if self._stopping:
                    # stop() began during the claim: these never started, so hand them back.
                    await self._db.run(store.release, self.worker_id, [c.id for c in claims])
                    break
                for claim in claims:
                    self._start(claim)
                self._maybe_more = len(claims) == want
                if self._maybe_more and self._free() > 0:
                    continue
            try:
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                self._maybe_more = True  # the poll: tasks may have been added by another process

    def _start(self, claim: ClaimedTask) -> None:
        logger.debug("task started id=%s type=%s", claim.id, claim.task_type)
        self.running[claim.id] = asyncio.create_task(
            self._run_one(claim), name=f"atw-task-{claim.task_type}[{claim.id}]"
        )
        if self._on_started is not None:
            self._on_started(claim)

    async def _run_one(self, claim: ClaimedTask) -> None:
        try:
            outcome = await self._executor.execute(claim)
        except asyncio.CancelledError:
            reason = self._cancel_reasons.pop(claim.id, SHUTDOWN)
            if reason == SHUTDOWN:
                self._released.append(claim.id)
                self._executor.progress.forget(claim.id)
                return
            outcome = Outcome(
                task_id=claim.id,
                status=TaskStatus.CANCELLED,
                progress=self._executor.progress.values.get(claim.id, 0.0),
                error="Task cancelled while running",
                error_type=CANCEL_ERROR_TYPE,
                completed_at=timezone.now(),
            )
        finally:
            del self.running[claim.id]
            if self._maybe_more:
                self._wake.set()
        self._executor.progress.forget(claim.id)
        self._writer.submit(outcome)

    def cancel(self, task_id: str) -> bool:
        """Cancel a task running here; its outcome is written as cancelled."""
        running = self.running.get(task_id)
        if running is None:
            return False
        self._cancel_reasons[task_id] = USER_CANCEL
        running.cancel()
        return True

    async def stop_claiming(self) -> None:
        """Stop taking new tasks; running ones go on."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task

    async def drain(self, timeout: float) -> list[str]:
        """Wait up to ``timeout`` for running tasks, then cancel the rest; return their ids.

        The returned tasks did not finish and must be handed back with ``store.release``.
        """
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=timeout)
        leftovers = dict(self.running)
        for task_id, running in leftovers.items():
            self._cancel_reasons.setdefault(task_id, SHUTDOWN)
            running.cancel()
        if leftovers:
            _, hung = await asyncio.wait(leftovers.values(), timeout=UNWIND_TIMEOUT)
            for task_id, running in leftovers.items():
                if running in hung:
                    logger.warning("task %s ignored cancellation; released anyway", running.get_name())
                    self._released.append(task_id)
        released, self._released = self._released, []
        return released
