"""Claim tasks from the database in batches and run them with bounded concurrency."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta

from django.utils import timezone

from .. import registry, store
from ..logs import brief
from ..status import TaskStatus
from ..store.thread import DatabaseThread
from ..values import ClaimedTask, Outcome
from .executor import TaskExecutor
from .futures import CANCEL_ERROR_TYPE
from .retries import retry_delay, should_retry
from .writer import OutcomeWriter

logger = logging.getLogger(__name__)

# Why a running task's coroutine was cancelled.
USER_CANCEL = "user"
SHUTDOWN = "shutdown"
# Lease recovery gave the task to another run: this run's outcome must not be written.
LEASE_LOST = "lease-lost"
# How long stop() waits for cancelled coroutines to unwind before it gives up on them.
UNWIND_TIMEOUT = 5.0
# Claiming ahead of free slots (see WorkerPool): only while this worker's recent runs took less
# than PREFETCH_RUN_LIMIT seconds on average, and only as many tasks as free slots would start
# within about PREFETCH_WAIT seconds at that pace (at most a claim batch). A claim round trip
# then overlaps the runs instead of leaving the slots idle, and claims come in fewer, larger
# batches (a no-op drain with max_workers=10 on PostgreSQL made one 0.5 ms claim per ten runs).
PREFETCH_RUN_LIMIT = 0.005
PREFETCH_WAIT = 0.002
# A task claimed ahead that still waits for a slot after this many seconds (long tasks took the
# slots) goes back to the queue, for any worker to take; prefetching stops until runs are
# short again.
PREFETCH_HOLD = 0.05
# Weight of the newest run in the average run time.
RUN_TIME_WEIGHT = 0.2


class WorkerPool:
    """Up to ``max_workers`` tasks at once, claimed ``min(free slots, batch_size)`` at a time.

    The claim loop sleeps until woken: by a task added in this process, by a slot freeing up
    while more work may be waiting, or by the poll interval (the fallback for tasks added
    elsewhere). It claims no more tasks than it has free slots, except while tasks run very
    short (``PREFETCH_RUN_LIMIT``): then it claims ahead a few that start, in claim order, as
    slots free up, within about ``PREFETCH_WAIT`` at the recent pace. Those are stored running
    from their claim, as every claimed task is; a stop releases any not started.
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
        # Clear from a claim's start until its tasks are started: they are neither pending in the
        # database nor running here yet (``--burst`` must not take that moment for "drained"),
        # and the free slots are not known (``reserve`` waits).
        self._claim_over = asyncio.Event()
        self._claim_over.set()
        self._stop_requested = asyncio.Event()
        self._cancel_reasons: dict[asyncio.Task[None], str] = {}
        # Tasks claimed here whose cancel arrived before they started (see cancel_when_started).
        self._cancel_before_start: set[str] = set()
        self._released: list[str] = []
        self._loop_task: asyncio.Task[None] | None = None
        # Claimed ahead, not started, with their claim time: they start in this order as slots
        # free up, or go back to the queue after PREFETCH_HOLD (``_hand_back_due``).
        self._ahead: collections.deque[tuple[float, ClaimedTask]] = collections.deque()
        self._hold_timer: asyncio.TimerHandle | None = None
        self._hand_back_due = False
        self._mean_run: float | None = None  # seconds, recent runs weighted most

    @property
    def claiming(self) -> bool:
        """True from a claim's start until its tasks are started."""
        return not self._claim_over.is_set()

    @property
    def busy(self) -> bool:
        """True while tasks run here, wait here (claimed ahead), or slots are reserved for adds."""
        return bool(self.running) or self._reserved > 0 or bool(self._ahead)

    @property
    def waiting(self) -> int:
        """How many tasks claimed ahead wait for a slot here."""
        return len(self._ahead)

    def prefetch(self) -> int:
        """How many tasks to claim beyond the free slots now (0 unless runs are very short)."""
        mean = self._mean_run
        if mean is None or mean >= PREFETCH_RUN_LIMIT or self._stopping:
            return 0
        at_pace = int(PREFETCH_WAIT * self.max_workers / max(mean, 1e-6))
        return max(0, min(self._batch_size, at_pace))

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._claim_loop(), name=f"atw-claim-{self.worker_id}")

    def side_tasks(self) -> list[asyncio.Task[None]]:
        """The long-lived tasks the worker watches (the claim loop)."""
        return [self._loop_task] if self._loop_task is not None else []

    def wake(self) -> None:
        """Make the claim loop look for work now."""
        self._maybe_more = True
        self._wake.set()

    async def reserve(self, count: int) -> int:
        """Take up to ``count`` free slots for tasks added in this process; return how many.

        Waits for a claim under way to start its tasks first: until then the slots it asked for
        are not known to be free. (The caller's INSERT runs on the claim's database thread, so
        it would have waited for the claim anyway.)

        The caller stores the reserved tasks already claimed and hands them to
        ``start_reserved``, saving the claim's round trip, unless the database holds a pending
        task a claim would run first (the INSERT itself decides: a task added here never
        overtakes one); it gives back what it did not use with ``unreserve``.
        """
        await self._claim_over.wait()
        if self._stopping:
            return 0
        taken = max(0, min(count, self._free()))
        self._reserved += taken
        return taken

    def unreserve(self, count: int) -> None:
        self._reserved -= count
        if count:
            self._fill_slots()
            self._wake.set()

    def start_reserved(self, claims: list[ClaimedTask]) -> None:
        """Start tasks stored as claimed by this worker in reserved slots."""
        self._reserved -= len(claims)
        for claim in claims:
            self._start(claim)

    def _free(self) -> int:
        return self.max_workers - len(self.running) - self._reserved

    def _fill_slots(self) -> None:
        """Start tasks claimed ahead, in claim order, while slots are free."""
        while self._ahead and not self._stopping and self._free() > 0:
            self._start(self._ahead.popleft()[1])

    def _watch_ahead(self) -> None:
        """Have the oldest task claimed ahead handed back if it waits past ``PREFETCH_HOLD``."""
        if self._ahead and self._hold_timer is None:
            due = self._ahead[0][0] + PREFETCH_HOLD - asyncio.get_running_loop().time()
            self._hold_timer = asyncio.get_running_loop().call_later(max(0.0, due), self._hold_over)

    def _hold_over(self) -> None:
        self._hold_timer = None
        if self._ahead and asyncio.get_running_loop().time() - self._ahead[0][0] >= PREFETCH_HOLD:
            self._hand_back_due = True  # the claim loop hands them back: it owns this connection
            self._wake.set()
        else:
            self._watch_ahead()

    async def _hand_back(self) -> None:
        """Return every task claimed ahead to the queue, and claim no more ahead for now."""
        self._hand_back_due = False
        back = [claim for _, claim in self._ahead]
        self._ahead.clear()
        self._cancel_before_start.difference_update(claim.id for claim in back)
        self._mean_run = None  # known again after the next run: long ones hold the slots now
        if not back:
            return
        try:
            await self._db.run(store.release, self.worker_id, [claim.id for claim in back])
        except Exception as exc:
            # Still running under this worker in the database: keep them, to start here.
            logger.warning("could not hand back %d tasks claimed ahead (%s)", len(back), brief(exc))
            now = asyncio.get_running_loop().time()
            self._ahead.extendleft((now, claim) for claim in reversed(back))
            self._fill_slots()
            self._watch_ahead()
            return
        logger.info("handed back %d tasks claimed ahead: the slots stayed busy", len(back))

    async def _claim_loop(self) -> None:
        try:
            await self._claim_until_stopped()
        finally:
            self._claim_over.set()  # a claim cancelled mid-way must not hold back reserve

    async def _claim_until_stopped(self) -> None:
        failures_delay = self._poll_interval
        while not self._stopping:
            # Clear before claiming: a wake-up that arrives during the claim is kept.
            self._wake.clear()
            if self._hand_back_due:
                await self._hand_back()
            free = self._free()
            ahead = self.prefetch()
            room = free + ahead - len(self._ahead)
            # Claiming ahead: once half of what may wait is gone, not for every slot that frees.
            if self._maybe_more and room > 0 and (free > 0 or room >= max(1, ahead // 2)):
                want = min(room, self._batch_size)
                self._claim_over.clear()
                try:
                    claims = await self._db.run(store.claim_batch, self.worker_id, self.queues, want)
                except Exception as exc:
                    self._claim_over.set()
                    # Back off while the database is away (a restart, a failover), up to 8 polls.
                    logger.warning(
                        "claiming tasks failed (%s: %s); retrying in %.1fs",
                        type(exc).__name__,
                        str(exc).strip()[:200],
                        failures_delay,
                    )
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(failures_delay):
                            await self._stop_requested.wait()  # stop() need not wait out the backoff
                    failures_delay = min(failures_delay * 2, self._poll_interval * 8)
                    continue
                if failures_delay > self._poll_interval:
                    logger.info("claiming tasks works again")
                failures_delay = self._poll_interval
                if self._stopping:
                    # stop() began during the claim: these never started, so hand them back.
                    await self._db.run(store.release, self.worker_id, [c.id for c in claims])
                    self._claim_over.set()
                    break
                claimed_at = asyncio.get_running_loop().time()
                self._ahead.extend((claimed_at, claim) for claim in claims)
                self._fill_slots()
                self._watch_ahead()
                self._claim_over.set()
                # A wake-up during the claim may stand for a task committed after the claim's
                # snapshot: keep it, or that task would wait for the next poll.
                self._maybe_more = len(claims) == want or self._wake.is_set()
                if self._maybe_more and (self._free() > 0 or len(self._ahead) < self.prefetch()):
                    continue
            try:
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                self._maybe_more = True  # the poll: tasks may have been added by another process

    def _start(self, claim: ClaimedTask) -> None:
        stale = self.running.get(claim.id)
        if stale is not None:
            # Lease recovery returned this task to the queue while it still ran here, and this
            # worker claimed it again: the old run must stop, and its outcome is fenced off.
            self._cancel_reasons[stale] = LEASE_LOST
            stale.cancel()
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "task started id=%s type=%s attempt=%d/%d",
                claim.id,
                claim.task_type,
                claim.attempts,
                claim.max_attempts,
            )
        self.running[claim.id] = asyncio.create_task(
            self._run_one(claim), name=f"atw-task-{claim.task_type}[{claim.id}]"
        )
        if self._on_started is not None:
            self._on_started(claim)

    async def _run_one(self, claim: ClaimedTask) -> None:
        me = asyncio.current_task()
        assert me is not None
        began = asyncio.get_running_loop().time()
        try:
            if claim.id in self._cancel_before_start:
                self._cancel_before_start.discard(claim.id)
                self._cancel_reasons[me] = USER_CANCEL
                raise asyncio.CancelledError  # stored as cancelled below, never run
            outcome = await self._executor.execute(claim)
        except asyncio.CancelledError:
            reason = self._cancel_reasons.pop(me, SHUTDOWN)
            if reason != USER_CANCEL:
                if reason == SHUTDOWN:
                    self._released.append(claim.id)
                if self.running.get(claim.id) is me:
                    self._executor.progress.forget(claim.id)
                self._log_end(claim, reason, began)
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
            if self.running.get(claim.id) is me:
                del self.running[claim.id]
            self._fill_slots()
            if self._maybe_more:
                self._wake.set()
        self._cancel_reasons.pop(me, None)
        self._executor.progress.forget(claim.id)
        ran = asyncio.get_running_loop().time() - began
        mean = self._mean_run
        self._mean_run = ran if mean is None else mean + RUN_TIME_WEIGHT * (ran - mean)
        outcome.attempt = claim.attempts
        if should_retry(claim, outcome):
            delay = retry_delay(registry.options_for(claim.task_type).retry_backoff, claim.attempts)
            outcome.status = TaskStatus.PENDING
            outcome.run_after = timezone.now() + timedelta(seconds=delay)
            outcome.completed_at = None
            # Come back for it when it is due, rather than at the next poll.
            asyncio.get_running_loop().call_later(delay, self.wake)
            logger.warning(
                "task failed, retrying in %.2fs id=%s type=%s attempt=%d/%d error=%s",
                delay,
                claim.id,
                claim.task_type,
                claim.attempts,
                claim.max_attempts,
                outcome.error_type,
            )
        self._log_end(claim, outcome.status.value, began)
        self._writer.submit(outcome)

    def _log_end(self, claim: ClaimedTask, outcome: str, began: float) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "task finished id=%s type=%s outcome=%s duration=%.3fs",
                claim.id,
                claim.task_type,
                "retry" if outcome == TaskStatus.PENDING.value else outcome,
                asyncio.get_running_loop().time() - began,
            )

    def cancel(self, task_id: str) -> bool:
        """Cancel a task running here; its outcome is written as cancelled."""
        running = self.running.get(task_id)
        if running is None:
            return False
        self._cancel_reasons[running] = USER_CANCEL
        running.cancel()
        return True

    def cancel_when_started(self, task_id: str) -> None:
        """Cancel a task this worker claimed but has not started yet, as soon as it starts.

        A claim's rows are committed as running before this worker starts them; a cancel that
        lands in between must not let the task run (see ``AsyncTaskWorker.cancel_task``).
        """
        if not self.cancel(task_id):
            self._cancel_before_start.add(task_id)

    def abandon_all(self) -> int:
        """Stop every running task without writing an outcome: lease recovery took them.

        Called when this worker finds its lease expired (another worker marked it dead and
        returned its tasks to the queue); finishing them here would run them twice at once.
        """
        self._ahead.clear()  # not started: lease recovery returned them to the queue too
        self._stop_hold_timer()
        abandoned = list(self.running.values())
        for running in abandoned:
            self._cancel_reasons[running] = LEASE_LOST
            running.cancel()
        return len(abandoned)

    async def stop_claiming(self) -> None:
        """Stop taking new tasks; running ones go on."""
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        # Claimed ahead and never started: handed back with the unfinished ones (``drain``).
        self._released.extend(claim.id for _, claim in self._ahead)
        self._ahead.clear()
        self._stop_hold_timer()

    def _stop_hold_timer(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None

    async def drain(self, timeout: float) -> list[str]:
        """Wait up to ``timeout`` for running tasks, then cancel the rest; return their ids.

        The returned tasks did not finish and must be handed back with ``store.release``.
        """
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=timeout)
        leftovers = dict(self.running)
        for running in leftovers.values():
            self._cancel_reasons.setdefault(running, SHUTDOWN)
            running.cancel()
        if leftovers:
            _, hung = await asyncio.wait(leftovers.values(), timeout=UNWIND_TIMEOUT)
            for task_id, running in leftovers.items():
                if running in hung:
                    logger.warning("task %s ignored cancellation; released anyway", running.get_name())
                    self._released.append(task_id)
        released, self._released = self._released, []
        return released
