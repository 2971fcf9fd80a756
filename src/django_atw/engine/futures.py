"""Futures that resolve when tasks finish, here or in another process."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Container, Sequence
from typing import Any

from ..exceptions import TaskCancellationError, TaskError, TaskExecutionError, TaskTimeoutError
from ..status import TaskInfo, TaskStatus
from ..values import Outcome

# error_type values the engine stores for its own outcomes.
TIMEOUT_ERROR_TYPE = "TaskTimeoutError"
CANCEL_ERROR_TYPE = "TaskCancellationError"
# Results of tasks that completed here, or from the cache when added, kept for a first
# get_task_future without a database read (a loop of add_task calls followed by one
# wait_for_tasks finds most tasks done already); the oldest are forgotten past this many, and
# results longer than KEPT_RESULT_CHARS of JSON are read from the database instead.
KEPT_RESULTS = 10_000
KEPT_RESULT_CHARS = 1024


def error_for(task_id: str, status: TaskStatus, error: str | None, error_type: str) -> TaskError:
    """Build the exception a future raises for a task that failed or was cancelled."""
    message = error or f"Task {status.value}"
    if status is TaskStatus.CANCELLED:
        return TaskCancellationError(message, task_id=task_id)
    if error_type == TIMEOUT_ERROR_TYPE:
        return TaskTimeoutError(message, task_id=task_id)
    return TaskExecutionError(message, task_id=task_id)


class TaskFutureManager:
    """One shared future per awaited task, resolved after the task's outcome is committed.

    Futures are only created when asked for, so tasks nobody awaits cost nothing here.
    """

    def __init__(self) -> None:
        # Ordered by when each was last checked for an outcome stored elsewhere (next_to_check).
        self._futures: OrderedDict[str, asyncio.Future[Any]] = OrderedDict()
        self._kept: OrderedDict[str, str] = OrderedDict()

    def get(self, task_id: str) -> asyncio.Future[Any]:
        """Return the pending future for ``task_id``, creating it if needed."""
        kept = self._kept.pop(task_id, None)
        if kept is not None:
            done = asyncio.get_running_loop().create_future()
            done.set_result(json.loads(kept))  # a fresh copy of the result
            return done
        future = self._futures.get(task_id)
        if future is None or future.cancelled():
            future = asyncio.get_running_loop().create_future()
            self._futures[task_id] = future
        return future

    def watched(self) -> list[str]:
        """Return the ids of tasks whose futures are still pending."""
        return [task_id for task_id, future in self._futures.items() if not future.done()]

    def __len__(self) -> int:
        return len(self._futures)

    def next_to_check(self, count: int, skip: Container[str]) -> list[str]:
        """Return up to ``count`` watched ids not in ``skip``, those checked longest ago first.

        Each call moves what it returns (and what it skipped) to the back, so successive calls
        go round all watched ids; a call costs what it returns plus the skipped ids (tasks
        running here), never the whole watch list. Futures given up on are forgotten on the way.
        """
        picked: list[str] = []
        passed: list[str] = []
        given_up: list[str] = []
        for task_id, future in self._futures.items():
            if len(picked) >= count:
                break
            if future.done():
                given_up.append(task_id)
            elif task_id in skip:
                passed.append(task_id)
            else:
                picked.append(task_id)
        for task_id in given_up:
            del self._futures[task_id]
        for task_id in (*passed, *picked):
            self._futures.move_to_end(task_id)
        return picked

    def waiting(self, task_id: str) -> bool:
        """True while someone's future for ``task_id`` is still pending."""
        future = self._futures.get(task_id)
        return future is not None and not future.done()

    def has(self, task_id: str) -> bool:
        return task_id in self._futures or task_id in self._kept

    def completed_at_add(self, task_id: str, result_json: str) -> None:
        """Resolve a task stored completed when it was added; keep its result for a later ``get``.

        The caller asks for the future only after ``add_task`` returns, so without this a
        task that never ran would still cost a database read to await.
        """
        self.set_result(task_id, json.loads(result_json))
        self._keep(task_id, result_json)

    def _keep(self, task_id: str, result_json: str) -> None:
        if len(result_json) > KEPT_RESULT_CHARS:
            return
        self._kept[task_id] = result_json
        while len(self._kept) > KEPT_RESULTS:
            self._kept.popitem(last=False)

    def set_result(self, task_id: str, result: Any) -> None:
        future = self._futures.pop(task_id, None)
        if future is not None and not future.done():
            future.set_result(result)

    def set_exception(self, task_id: str, exc: BaseException) -> None:
        future = self._futures.pop(task_id, None)
        if future is not None and not future.done():
            _set_exception(future, exc)

    def resolve_from_info(self, info: TaskInfo) -> None:
        """Resolve a future from a finished task's stored state."""
        if info.status is TaskStatus.COMPLETED:
            self.set_result(info.id, info.result)
        elif info.status.is_terminal:
            self.set_exception(info.id, error_for(info.id, info.status, info.error, info.error_type))

    async def futures_for(
        self,
        task_ids: Sequence[str],
        read: Callable[[list[str]], Awaitable[tuple[list[str], dict[str, TaskInfo]]]],
    ) -> list[asyncio.Future[Any]]:
        """Return futures for ``task_ids`` in order; ``read`` looks up the tasks not watched yet.

        ``read`` returns the ids that do not exist and the stored state of those finished (see
        ``store.watch_states``). Futures are registered before the read, so an outcome committed
        in between still resolves them; a task already finished resolves at once. Raises
        ``KeyError`` for an unknown id.
        """
        fresh = [task_id for task_id in dict.fromkeys(task_ids) if not self.has(task_id)]
        futures = [self.get(task_id) for task_id in task_ids]
        if fresh:
            missing, finished = await read(fresh)
            for task_id in missing:
                self.set_exception(task_id, KeyError(task_id))
            if missing:
                raise KeyError(f"Task {missing[0]} not found")
            for info in finished.values():
                self.resolve_from_info(info)
        return futures

    def resolve_committed(self, outcomes: Sequence[Outcome]) -> None:
        """Resolve the futures of outcomes just committed (a retry resolves nothing yet).

        A completed task nobody awaits yet keeps its result for a later ``get`` (see
        ``KEPT_RESULTS``); a failed one is read from the database when asked for.
        """
        for outcome in outcomes:
            if outcome.status is TaskStatus.PENDING:
                continue  # a retry: the future resolves when a later attempt ends
            if outcome.task_id not in self._futures:
                if outcome.status is TaskStatus.COMPLETED:
                    self._keep(outcome.task_id, outcome.result_json or "null")
                continue
            if outcome.status is TaskStatus.COMPLETED:
                result = json.loads(outcome.result_json) if outcome.result_json is not None else None
                self.set_result(outcome.task_id, result)
            else:
                exc = error_for(outcome.task_id, outcome.status, outcome.error, outcome.error_type)
                exc.__cause__ = outcome.exception
                self.set_exception(outcome.task_id, exc)

    def cancel_all(self) -> None:
        """Cancel every pending future (the worker is stopping; the tasks stay stored)."""
        futures, self._futures = self._futures, OrderedDict()
        self._kept.clear()
        for future in futures.values():
            future.cancel()


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    future.set_exception(exc)
    # Marked retrieved at once: nobody may await it, and asyncio would log it when collected.
    # (A done callback per future did this before: one more loop callback for every task awaited.)
    future.exception()


async def wait_all(futures: Sequence[asyncio.Future[Any]], timeout: float | None) -> None:
    """Wait until every future is done, without raising what they hold; ``TimeoutError`` after
    ``timeout`` seconds (the futures stay usable).

    One at a time: outcomes commit in batches, so most futures are done by the time their turn
    comes, and only the others cost a wake-up. ``asyncio.wait`` on the whole list put a callback
    on every future (20,000 of them for a 20,000-task wait, each run by the loop).
    """
    try:
        async with asyncio.timeout(timeout):
            for future in futures:
                if not future.done():
                    await asyncio.wait((future,))
    except TimeoutError:
        pending = sum(1 for future in futures if not future.done())
        raise TimeoutError(f"{pending} of {len(futures)} tasks did not finish within {timeout} s") from None


async def wait_first(futures: Sequence[asyncio.Future[Any]], timeout: float | None) -> int:
    """Wait for the first future to be done and return its index; ``TimeoutError`` after ``timeout``."""
    done, _ = await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if not done:
        raise TimeoutError(f"none of {len(futures)} tasks finished within {timeout} s")
    return next(index for index, future in enumerate(futures) if future in done)
