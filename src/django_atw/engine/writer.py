"""Group the database writes of finished tasks and progress into as few transactions as possible."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Container, Sequence

from django.db import DataError, IntegrityError

from .. import store
from ..logs import brief
from ..store.thread import DatabaseThread
from ..values import Outcome
from .executor import ProgressTracker
from .storable import unstorable

logger = logging.getLogger(__name__)

# How long an outcome may wait for company while more are on their way (``expecting_more``).
# A stream of short tasks then shares one commit among several outcomes (on SQLite, where
# claims, adds and writes take turns on one connection, about half the commits) for at most
# this much more latency; a lone task's outcome never waits.
LINGER = 0.002
# An outcome batch this large goes at once: more company would not make its commit cheaper.
LINGER_ENOUGH = 50


class OutcomeWriter:
    """Store outcomes and progress of one worker's tasks, batched.

    While one write is in flight, the outcomes that arrive meanwhile gather and go in the next
    transaction, so an idle system adds no delay and a busy one makes few commits. Progress is
    written on a timer, at most once per ``progress_interval``, always the latest value.
    ``on_committed`` runs after each commit with the outcomes stored (futures resolve only once
    the outcome is durable); an outcome whose row was no longer this run's (the lease was lost,
    or the task cancelled elsewhere) is logged and dropped, never reported as done.
    While ``expecting_more()`` says other tasks are running or about to start, a write waits
    up to ``LINGER`` for their outcomes to join it.

    A failed write is retried: nothing is dropped while the database is away, except on a stop
    that outlasts its timeout, which leaves those rows running for lease recovery. An outcome
    the database refuses (a value it cannot store) is stored as a failure that says so, and the
    rest of its batch as usual.
    """

    def __init__(
        self,
        db: DatabaseThread,
        worker_id: str,
        progress: ProgressTracker,
        progress_interval: float,
        retry_interval: float,
        on_committed: Callable[[Sequence[Outcome]], None],
        on_progress_committed: Callable[[Sequence[tuple[str, float]]], None] | None = None,
        expecting_more: Callable[[], bool] = lambda: False,
        linger: float = LINGER,
    ) -> None:
        self._db = db
        self._worker_id = worker_id
        self._progress = progress
        self._progress_interval = progress_interval
        self._retry_interval = retry_interval
        self._on_committed = on_committed
        self._on_progress_committed = on_progress_committed  # live events
        self._expecting_more = expecting_more
        self._linger = linger
        self._outcomes: list[Outcome] = []
        # Ids of the tasks whose outcome is queued or being written: this worker resolves their
        # futures at the commit, so nobody needs to read them (``writing``).
        self._writing: set[str] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._progress_due = False
        self._timer: asyncio.TimerHandle | None = None
        self._stopping = False
        self._in_flight = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"atw-writer-{self._worker_id}")

    def side_tasks(self) -> list[asyncio.Task[None]]:
        """The long-lived tasks the worker watches (the write loop)."""
        return [self._task] if self._task is not None else []

    @property
    def writing(self) -> Container[str]:
        """The ids of tasks whose outcome is queued or being written (a live view)."""
        return self._writing

    def submit(self, outcome: Outcome) -> None:
        """Queue an outcome for the next write."""
        self._outcomes.append(outcome)
        self._writing.add(outcome.task_id)
        self._idle.clear()
        self._wake.set()

    def progress_changed(self) -> None:
        """Arm the progress timer (called by the tracker on the first change after a flush)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._progress_interval, self._progress_timer)

    def _progress_timer(self) -> None:
        self._timer = None
        self._progress_due = True
        self._wake.set()

    async def flush(self) -> None:
        """Wait until every outcome submitted so far is committed (or the write loop died)."""
        while self._outcomes or not self._idle.is_set():
            if self._task is None or self._task.done():
                return  # a dead loop commits nothing more: the worker's monitor reports it
            idle = asyncio.ensure_future(self._idle.wait())
            try:
                await asyncio.wait([idle, self._task], return_when=asyncio.FIRST_COMPLETED)
            finally:
                idle.cancel()

    async def stop(self, timeout: float | None = None) -> None:
        """Write what is queued (progress included), then stop; give up after ``timeout`` seconds.

        Giving up (the database stayed away) leaves the unwritten tasks running under this
        worker: once its heartbeat is older than the lease, another worker recovers them.
        """
        try:
            async with asyncio.timeout(timeout):
                await self.flush()
                self._stopping = True
                self._progress_due = True
                self._wake.set()
                if self._task is not None:
                    await asyncio.shield(self._task)
        except TimeoutError:
            logger.warning(
                "could not store %d outcomes before stopping; leaving them to lease recovery",
                len(self._outcomes) + self._in_flight,
            )
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self._outcomes and not self._stopping:
                await self._gather_company()
            self._wake.clear()
            outcomes, self._outcomes = self._outcomes, []
            progress = self._progress.take_dirty() if self._progress_due else []
            self._progress_due = False
            if outcomes or progress:
                await self._write(progress, outcomes)
            if not self._outcomes:
                self._idle.set()
            if self._stopping and not self._outcomes:
                return

    async def _gather_company(self) -> None:
        """Wait up to ``linger`` for more outcomes if more are expected now (see ``LINGER``).

        Asked once: in a stream of tasks added one by one, the next one is often not added yet
        when an outcome arrives, but it will be within the linger.
        """
        if not self._expecting_more():
            return
        deadline = asyncio.get_running_loop().time() + self._linger
        while len(self._outcomes) < LINGER_ENOUGH and not self._stopping:
            self._wake.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._wake.wait()
            except TimeoutError:
                return

    async def _write(self, progress: list[tuple[str, float]], outcomes: list[Outcome]) -> None:
        self._in_flight = len(outcomes)
        try:
            stored, progress = await self._store(progress, outcomes)
        except _REFUSED as exc:
            # A value in the batch can never be stored: retrying the batch would stall this
            # worker's writes for good. Store the rest, and failures in place of the refused.
            logger.warning(
                "the database refused a value among %d outcomes (%s); storing them in parts",
                len(outcomes),
                brief(exc),
            )
            stored = await self._isolate(outcomes, exc)
            if progress:
                try:
                    progress = (await self._store(progress, [])).progress
                except _REFUSED as refused:
                    progress = []
                    logger.error("the database refused progress values (%s); dropped them", brief(refused))
        self._in_flight = 0
        if len(stored) < len(outcomes):
            _log_dropped(outcomes, stored)
        if progress and self._on_progress_committed is not None:
            self._on_progress_committed(progress)
        if stored:
            self._on_committed(stored)
        self._writing.difference_update(outcome.task_id for outcome in outcomes)

    async def _store(self, progress: list[tuple[str, float]], outcomes: list[Outcome]) -> store.Written:
        """Write one batch; retry while the database is away, raise only what it refuses."""
        delay = self._retry_interval
        while True:
            try:
                return await self._db.run(store.write_batch, self._worker_id, progress, outcomes)
            except _REFUSED:
                raise
            except Exception as exc:
                logger.warning(
                    "could not store %d outcomes (%s); retrying in %.1fs", len(outcomes), brief(exc), delay
                )
                await asyncio.sleep(delay)
                # Back off while the database stays away, up to a few poll intervals.
                delay = min(delay * 2, self._retry_interval * 8)

    async def _isolate(self, outcomes: list[Outcome], exc: Exception) -> list[Outcome]:
        """Store ``outcomes``, which the database refused with ``exc``, apart from the refused ones.

        Halves the batch until each refused outcome stands alone, then stores a failure that
        says why in its place (see ``storable.unstorable``): about 2·log2(n) writes for one bad
        outcome among n, and only when there is one.
        """
        if len(outcomes) == 1:
            (outcome,) = outcomes
            logger.error(
                "the database refused the outcome of task %s (%s); storing it as failed",
                outcome.task_id,
                brief(exc),
            )
            try:
                return (await self._store([], [unstorable(outcome, exc)])).outcomes
            except _REFUSED:  # unstorable() makes every text storable: not expected
                logger.exception("could not store the failure of task %s either", outcome.task_id)
                return []
        half = len(outcomes) // 2
        stored: list[Outcome] = []
        for part in (outcomes[:half], outcomes[half:]):
            try:
                stored += (await self._store([], part)).outcomes
            except _REFUSED as refused:
                stored += await self._isolate(part, refused)
        return stored


# What the database raises when it refuses a value rather than fails: DataError (NUL in text or
# JSON, a string longer than its column), IntegrityError, and ValueError from the driver before
# anything is sent (text it cannot encode, such as a lone surrogate; psycopg2's NUL check).
# Anything else (OperationalError, InterfaceError: the database is away) is retried.
_REFUSED = (DataError, IntegrityError, ValueError)


def _log_dropped(outcomes: Sequence[Outcome], stored: Sequence[Outcome]) -> None:
    """Warn about each outcome the fence turned away: another run or a cancel owns its row now."""
    kept = {(outcome.task_id, outcome.attempt) for outcome in stored}
    for outcome in outcomes:
        if (outcome.task_id, outcome.attempt) not in kept:
            logger.warning(
                "outcome of task %s not stored: its row is no longer this worker's attempt %d "
                "(lease lost or cancelled) status=%s",
                outcome.task_id,
                outcome.attempt,
                outcome.status.value,
            )
