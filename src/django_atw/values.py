"""Plain values passed between the add path, the store and the engine: no ORM, no I/O.

They live apart from ``store`` so the engine and the realtime publisher can name them without
importing any query.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from .status import TaskInfo, TaskStatus

# Runs a task gets unless its @task(max_attempts=) says otherwise: one try and two retries.
DEFAULT_MAX_ATTEMPTS = 3


@dataclasses.dataclass(slots=True)
class NewTask:
    """A validated task, ready for ``store.add_tasks``."""

    id: str | None
    task_type: str
    args: list[Any]
    kwargs: dict[str, Any]
    metadata: dict[str, Any]
    priority: int
    queue: str
    timeout: float | None
    use_cache: bool | None
    cache_ttl: int | None
    created_by_id: int | None = None
    created_at: datetime | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    run_after: datetime | None = None
    # Set by a running worker that starts the task itself as soon as it is stored (see
    # AsyncTaskWorker._insert): the row is inserted already claimed by that worker.
    claimed_by: str | None = None
    # The result cache's key, computed when the task is added (empty: the cache is not used).
    cache_key: str = ""
    # A result found in the cache when the task was added (JSON text): the row is inserted
    # already completed from the cache, never claimed or run (see engine/caching.py).
    cached_result_json: str | None = None

    def as_claim(self, task_id: str) -> ClaimedTask:
        """The claim of a task its own worker stored as claimed; arguments as a claim reads them."""
        args, kwargs = json.loads(json.dumps([self.args, self.kwargs]))
        return ClaimedTask(
            task_id,
            self.task_type,
            args,
            kwargs,
            self.timeout,
            self.priority,
            None,
            1,
            self.max_attempts,
            cache_key=self.cache_key,
            cache_ttl=self.cache_ttl,
        )


@dataclasses.dataclass(slots=True)
class ClaimedTask:
    """What a worker needs to run one claimed task."""

    id: str
    task_type: str
    args: list[Any]
    kwargs: dict[str, Any]
    timeout: float | None
    priority: int
    created_at: Any
    attempts: int
    max_attempts: int = 3
    # The result cache's key stored when the task was added ("": no caching) and its TTL.
    cache_key: str = ""
    cache_ttl: int | None = None


@dataclasses.dataclass(slots=True)
class Outcome:
    """How one run of a task ended, ready to be written.

    ``status`` PENDING means a retry: the task goes back to the queue, not before ``run_after``.
    ``attempt`` is the claim's attempt number; the write applies only while the row is still in
    that attempt (0: unchecked), so a run whose lease expired never overwrites a later one.
    """

    task_id: str
    status: TaskStatus
    progress: float
    result_json: str | None = None
    error: str = ""
    error_type: str = ""
    traceback: str = ""
    completed_at: datetime | None = None
    attempt: int = 0
    run_after: datetime | None = None
    from_cache: bool = False
    # The exception raised in this process, chained onto the future's error (never stored).
    exception: BaseException | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Reaped:
    """What lease recovery did: workers found dead, tasks returned to pending, failed, cancelled."""

    workers: list[str]
    requeued: list[str]
    failed: list[str]
    # Tasks whose cancel had been requested: stored cancelled, never returned to the queue.
    cancelled: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class PageFilters:
    """What a task listing may be narrowed by; None leaves a filter out."""

    status: TaskStatus | None = None
    task_type: str | None = None
    queue: str | None = None
    created_before: datetime | None = None
    owner_id: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Health:
    """What the health endpoint reports from the database."""

    workers_alive: int
    # The live workers' max_workers summed: how many tasks they can run at once.
    worker_slots: int
    pending: int
    running: int


@dataclasses.dataclass(frozen=True, slots=True)
class FailedAttempt:
    """One run of a task that failed: raised, timed out, or died with its worker."""

    attempt: int
    worker_id: str
    started_at: datetime | None
    finished_at: datetime | None
    error_type: str
    error: str
    traceback: str


@dataclasses.dataclass(frozen=True, slots=True)
class TaskHistory:
    """A task's stored state with the latest traceback and every failed attempt, oldest first."""

    info: TaskInfo
    traceback: str
    failed_attempts: list[FailedAttempt]


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleState:
    """One schedule as the scheduler reads it each pass (a ``Schedule`` row without the ORM)."""

    id: int
    name: str
    task_type: str
    cron: str
    timezone: str
    args: list[Any]
    kwargs: dict[str, Any]
    enabled: bool
    missed: str
    max_catch_up: int
    from_code: bool
    handled_until: datetime
    last_run_at: datetime | None
    next_run_at: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class TableStats:
    """The task table's row counts, vacuums and analyzes from PostgreSQL's statistics
    (``pg_stat_user_tables``)."""

    live: int
    dead: int
    # Seconds since the table's last vacuum, manual or automatic, ended (the server's clock);
    # None if it never had one.
    since_vacuum: float | None
    # Manual vacuums so far (VACUUM statements that ran to the end; autovacuum not counted).
    vacuums: int
    # Rows inserted, updated or deleted since the planner's statistics were last gathered.
    modified: int
    # Whether the table was ever analyzed (ANALYZE or autovacuum's), and manual analyzes so far.
    analyzed: bool
    analyzes: int
    # Whether this connection's role may VACUUM and ANALYZE the table: it owns it (or belongs
    # to the role that does), owns the database, or is a superuser. Otherwise PostgreSQL skips
    # the table with only a warning to the client.
    maintainable: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Vacuumed:
    """What a worker did to the task table: VACUUM, ANALYZE or both, dead rows before and after."""

    vacuumed: bool
    analyzed: bool
    dead_before: int
    dead_after: int
    seconds: float
