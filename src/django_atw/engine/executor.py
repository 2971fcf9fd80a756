"""Run one claimed task: find its function, pass progress, apply its timeout, record the outcome."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import inspect
import json
import logging
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from django.utils import timezone

from .. import registry
from ..cache.task_keys import cached_result_json
from ..conf import get_settings
from ..jsonvalues import MAX_JSON_DEPTH, json_depth
from ..status import TaskStatus
from ..values import ClaimedTask, Outcome
from .futures import TIMEOUT_ERROR_TYPE
from .storable import json_problem, storable_error_type, storable_text

if TYPE_CHECKING:
    from .caching import ResultCache

logger = logging.getLogger(__name__)

# Stored tracebacks are for people reading the admin; the head and the tail say what matters.
MAX_TRACEBACK_CHARS = 20_000


@dataclasses.dataclass(frozen=True, slots=True)
class TaskRun:
    """Which run of which task the current coroutine is: set by the executor around the call."""

    task_id: str
    task_type: str
    attempt: int
    worker_id: str


# Each task runs in its own asyncio task, so this is per task: a task function (or a wrapper
# such as the django.tasks backend's) reads its own id and attempt here, without the executor
# passing arguments the function never asked for.
current_run: contextvars.ContextVar[TaskRun | None] = contextvars.ContextVar("atw_current_run", default=None)


class ProgressCallback(Protocol):
    """What a task receives as ``progress_callback``: call it with a fraction in 0..1."""

    def __call__(self, progress: float, /) -> None: ...


class ProgressTracker:
    """Progress values of running tasks: in memory at once, written to the database later.

    ``report`` is on the task's hot path, so it does a dict store and, the first time a value
    changes after a flush, arms one timer; the writer stores the latest values when it fires.
    """

    def __init__(self, on_dirty: Callable[[], None]) -> None:
        self.values: dict[str, float] = {}
        self._dirty: dict[str, float] = {}
        self._on_dirty = on_dirty

    def callback_for(self, task_id: str) -> ProgressCallback:
        values, dirty, on_dirty = self.values, self._dirty, self._on_dirty

        def progress_callback(progress: float, /) -> None:
            value = float(progress)
            if not 0.0 <= value <= 1.0:
                if value != value:  # NaN
                    raise ValueError("progress_callback takes a number between 0.0 and 1.0, got nan.")
                value = 0.0 if value < 0.0 else 1.0
            values[task_id] = value
            if not dirty:
                on_dirty()
            dirty[task_id] = value

        return progress_callback

    def take_dirty(self) -> list[tuple[str, float]]:
        """Return and forget the values changed since the last call."""
        # Cleared in place: the callbacks hold this very dict.
        items = list(self._dirty.items())
        self._dirty.clear()
        return items

    def forget(self, task_id: str) -> float:
        """Drop a finished task, returning its last progress (its outcome carries it)."""
        self._dirty.pop(task_id, None)
        return self.values.pop(task_id, 0.0)


@functools.cache
def accepts_progress(func: Callable[..., Any]) -> bool:
    """Return True if ``func`` takes ``progress_callback`` by name or through ``**kwargs``."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        or (p.name == "progress_callback" and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        for p in params
    )


def _failure(
    task_id: str, progress: float, exc: BaseException | None, message: str, error_type: str
) -> Outcome:
    """A failed outcome; its texts are made storable (an exception's message may hold anything)."""
    trace = ""
    if exc is not None:
        trace = "".join(traceback.format_exception(exc))
        if len(trace) > MAX_TRACEBACK_CHARS:
            half = MAX_TRACEBACK_CHARS // 2
            trace = trace[:half] + "\n[...]\n" + trace[-half:]
    return Outcome(
        task_id=task_id,
        status=TaskStatus.FAILED,
        progress=progress,
        error=storable_text(message),
        error_type=storable_error_type(error_type),
        traceback=storable_text(trace),
        completed_at=timezone.now(),
        exception=exc,
    )


class TaskExecutor:
    """Execute claimed tasks; ``asyncio.CancelledError`` propagates to the caller, who knows why."""

    def __init__(
        self,
        default_timeout: float | None,
        progress: ProgressTracker,
        cache: ResultCache | None = None,
        worker_id: str = "",
    ) -> None:
        self.default_timeout = default_timeout
        self.progress = progress
        self.cache = cache
        self.worker_id = worker_id

    async def execute(self, claim: ClaimedTask) -> Outcome:
        """Run ``claim`` and return its outcome (completed or failed).

        With a cache key, a cached result or the result of an equal task already running
        completes it without calling the function (``from_cache``); a fresh result is cached.
        """
        cache = self.cache
        if cache is None or not cache.applies(claim):
            return await self._execute(claim)
        cache.begin(claim)
        succeeded, result = False, None
        # The task's timeout covers waiting for an equal running task it joined, too: a join
        # must never outlast the timeout the caller set.
        timeout = self._timeout(claim)
        deadline = asyncio.get_running_loop().time() + timeout if timeout is not None else None
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    hit, value = await cache.lookup(claim)
            except TimeoutError as exc:
                assert timeout is not None
                message = f"Task timed out after {timeout:g} seconds (waiting for an equal running task)"
                return _failure(claim.id, 0.0, exc, message, TIMEOUT_ERROR_TYPE)
            outcome = _from_cache(claim, value) if hit else None
            if outcome is None:
                outcome = await self._execute(claim, deadline)
                if outcome.status is TaskStatus.COMPLETED and outcome.result_json is not None:
                    value = json.loads(outcome.result_json)
                    await cache.store(claim, value)
            if outcome.status is TaskStatus.COMPLETED:
                succeeded, result = True, value
            return outcome
        finally:
            cache.end(claim, succeeded, result)

    def _timeout(self, claim: ClaimedTask) -> float | None:
        return claim.timeout if claim.timeout is not None else self.default_timeout

    async def _execute(self, claim: ClaimedTask, deadline: float | None = None) -> Outcome:
        func = registry.resolve(claim.task_type)
        if func is None:
            return _failure(
                claim.id,
                0.0,
                None,
                f"Task type {claim.task_type!r} is not registered in this worker process. Make sure the "
                "module defining it is imported here (an installed app's tasks.py is imported at start-up).",
                "TaskDefinitionError",
            )
        kwargs = claim.kwargs
        if accepts_progress(func):
            kwargs = {**kwargs, "progress_callback": self.progress.callback_for(claim.id)}
        timeout = self._timeout(claim)
        if timeout is not None and deadline is None:
            deadline = asyncio.get_running_loop().time() + timeout
        run = current_run.set(TaskRun(claim.id, claim.task_type, claim.attempts, self.worker_id))
        try:
            async with asyncio.timeout_at(deadline) as scope:
                result = await func(*claim.args, **kwargs)
        except TimeoutError as exc:
            progress = self.progress.values.get(claim.id, 0.0)
            if timeout is not None and scope.expired():
                return _failure(
                    claim.id, progress, exc, f"Task timed out after {timeout:g} seconds", TIMEOUT_ERROR_TYPE
                )
            return _failure(claim.id, progress, exc, str(exc) or "TimeoutError", _qualname(exc))
        except Exception as exc:
            progress = self.progress.values.get(claim.id, 0.0)
            return _failure(claim.id, progress, exc, str(exc) or type(exc).__name__, _qualname(exc))
        finally:
            current_run.reset(run)
        try:
            # None (most tasks return nothing) skips the encoder.
            result_json = "null" if result is None else json.dumps(result, allow_nan=False)
        except RecursionError:  # nested about a thousand deep: far past the limit below
            result_json = ""
        except (TypeError, ValueError) as exc:
            progress = self.progress.values.get(claim.id, 0.0)
            return _failure(
                claim.id,
                progress,
                exc,
                f"The task returned a {type(result).__name__}, which cannot be stored as JSON ({exc}). "
                "Return str, int, float, bool, None, lists or dicts.",
                "TaskResultError",
            )
        if _too_deep(result, result_json):
            return _failure(
                claim.id,
                self.progress.values.get(claim.id, 0.0),
                None,
                f"The task's result is nested {json_depth(result)} levels deep; at most "
                f"{MAX_JSON_DEPTH} levels are stored. Return a flatter structure.",
                "TaskResultError",
            )
        limit = get_settings().MAX_RESULT_BYTES
        if len(result_json) > limit:  # ensure_ascii: one character is one byte
            return _failure(
                claim.id,
                self.progress.values.get(claim.id, 0.0),
                None,
                f"The task's result takes {len(result_json):,} bytes as JSON; at most "
                f"ATW['MAX_RESULT_BYTES'] = {limit:,} are stored. Store large data elsewhere (a file, "
                "object storage, a model) and return a reference to it.",
                "TaskResultError",
            )
        problem = json_problem(result_json)
        if problem is not None:
            return _failure(
                claim.id,
                self.progress.values.get(claim.id, 0.0),
                None,
                f"The task's result contains {problem}, which the database cannot store. Return text "
                "without NUL characters or unpaired surrogates: strip them, or encode binary data "
                "(for example as base64).",
                "TaskResultError",
            )
        return Outcome(
            task_id=claim.id,
            status=TaskStatus.COMPLETED,
            progress=1.0,
            result_json=result_json,
            completed_at=timezone.now(),
        )


def _too_deep(result: Any, result_json: str) -> bool:
    """Whether ``result`` nests deeper than ``MAX_JSON_DEPTH`` (``result_json`` "": too deep to encode).

    Nesting needs brackets: a result whose JSON holds at most ``MAX_JSON_DEPTH`` of them (most
    results) is cleared by two string scans; only others are walked, and the walk stops at the limit.
    """
    if not result_json:
        return True
    if result_json.count("[") + result_json.count("{") <= MAX_JSON_DEPTH:
        return False
    return json_depth(result, stop_after=MAX_JSON_DEPTH) > MAX_JSON_DEPTH


def _from_cache(claim: ClaimedTask, value: Any) -> Outcome | None:
    """The outcome of a task completed from the cache; None if the value is not JSON (run it)."""
    result_json = cached_result_json(value)
    if result_json is None:
        return None
    return Outcome(
        task_id=claim.id,
        status=TaskStatus.COMPLETED,
        progress=1.0,
        result_json=result_json,
        completed_at=timezone.now(),
        from_cache=True,
    )


def _qualname(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
