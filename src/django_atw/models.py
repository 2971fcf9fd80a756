"""Task records and worker processes: the database is the queue.

Only ``store.py`` queries these tables for the engine; the admin reads them through the ORM.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.timezone import now as _now

from .status import TaskStatus

STATUS_CHOICES = [(status.value, status.name.title()) for status in TaskStatus]


def new_task_id() -> str:
    return str(uuid.uuid4())


class WorkerProcess(models.Model):
    """One running engine (an embedded worker or an ``atw_worker`` process)."""

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.PositiveIntegerField()
    tasks_running = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    last_heartbeat = models.DateTimeField()
    stopping = models.BooleanField(default=False)
    # Set on a clean exit, or by another worker that found this one's lease expired; rows
    # stopped long ago are pruned.
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "worker process"
        verbose_name_plural = "worker processes"
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid}"


class TaskRecord(models.Model):
    """One task: what to run, where it is in its life, and how it ended."""

    id = models.CharField(primary_key=True, max_length=255, default=new_task_id, editable=False)
    task_type = models.CharField(max_length=255)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    priority = models.IntegerField(default=0, help_text="Lower runs first; FIFO within a priority.")
    queue = models.CharField(max_length=100, default="default")
    status = models.CharField(max_length=16, choices=STATUS_CHOICES, default=TaskStatus.PENDING.value)
    progress = models.FloatField(default=0.0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    error_type = models.CharField(max_length=255, blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    # One entry per failed attempt, oldest first (appended where a failure or a dead worker's
    # recovery is stored): {"attempt", "worker_id", "started_at", "finished_at", "error_type",
    # "error", "traceback"}. error/error_type/traceback above are always the latest run's.
    attempt_log = models.JSONField(default=list, blank=True, help_text="Failed attempts, oldest first.")
    timeout = models.FloatField(null=True, blank=True, help_text="Seconds; empty means no timeout.")
    use_cache = models.BooleanField(null=True, blank=True)
    cache_ttl = models.PositiveIntegerField(null=True, blank=True)
    cache_key = models.CharField(max_length=255, blank=True, default="")
    from_cache = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0, help_text="Runs started so far, this one included.")
    max_attempts = models.PositiveIntegerField(default=3, help_text="Runs allowed before the task fails.")
    run_after = models.DateTimeField(
        null=True, blank=True, help_text="Not claimed before this time (a delay or a retry's backoff)."
    )
    cancel_requested = models.BooleanField(default=False)
    # No database constraint: worker rows are kept or pruned independently of the tasks they ran,
    # and a SET NULL cascade over thousands of finished tasks must never block a worker's exit.
    worker = models.ForeignKey(
        WorkerProcess,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="tasks",
        db_index=False,
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # see atw_task_owner_idx: only rows that have an owner are indexed
    )
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "task"
        ordering = ["-created_at"]
        # Every index costs each claim and each completion a write (a status change is never a
        # HOT update), so there are only those that a hot query or a listing needs. Measured with
        # benchmarks/bench.py: dropping four unneeded ones raised the PostgreSQL drain rate ~20%.
        indexes = [
            # The claim query: pending rows of a queue in (priority, created_at) order.
            models.Index(
                fields=["queue", "priority", "created_at"],
                condition=models.Q(status="pending"),
                name="atw_task_claim_idx",
            ),
            # Running rows by worker: releasing, reaping and cancel checks.
            models.Index(
                fields=["worker", "status"],
                condition=models.Q(status="running"),
                name="atw_task_running_idx",
            ),
            # The admin's default listing and get_all_tasks (newest first).
            models.Index(fields=["-created_at"], name="atw_task_created_idx"),
            # "My tasks": only tasks enqueued on behalf of a user have an owner.
            models.Index(
                fields=["created_by", "-created_at"],
                condition=models.Q(created_by__isnull=False),
                name="atw_task_owner_idx",
            ),
            # Retention cleanup: finished rows by completion time.
            models.Index(fields=["completed_at"], name="atw_task_completed_idx"),
            # Result cache joining: the running task with a given cache key.
            models.Index(
                fields=["cache_key", "started_at"],
                condition=models.Q(status="running") & ~models.Q(cache_key=""),
                name="atw_task_cache_key_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_type} {self.id}"


class CacheEntry(models.Model):
    """One cached task result (msgpack bytes), for the database cache backend.

    Expiry is by ``expires_at``; when the cache is full the entry read least recently
    (``last_accessed``) goes first. Only ``django_atw.cache.backends.database`` queries it.
    """

    key = models.CharField(primary_key=True, max_length=255)
    value = models.BinaryField()
    size = models.PositiveIntegerField(help_text="Serialized size in bytes.")
    task_type = models.CharField(max_length=255, blank=True, default="")
    task_id = models.CharField(
        max_length=255, blank=True, default="", help_text="Entry id of the task that stored it."
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_accessed = models.DateTimeField()
    hits = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "cache entry"
        verbose_name_plural = "cache entries"
        ordering = ["-last_accessed"]
        indexes = [
            # LRU eviction takes the least recently read first.
            models.Index(fields=["last_accessed"], name="atw_cache_lru_idx"),
            # Cleanup deletes expired rows in batches.
            models.Index(fields=["expires_at"], name="atw_cache_expiry_idx"),
            models.Index(fields=["task_id"], name="atw_cache_task_idx"),
        ]

    def __str__(self) -> str:
        return self.key


class CacheTaskKey(models.Model):
    """Which cache key a task's entry id maps to (``get_by_task_id``); pruned once stale."""

    entry_id = models.CharField(primary_key=True, max_length=255)
    key = models.CharField(max_length=255, db_index=True)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "cache task mapping"

    def __str__(self) -> str:
        return f"{self.entry_id} -> {self.key}"


class ApiToken(models.Model):
    """A bearer token for the HTTP API, stored as its SHA-256 digest, never in clear.

    The token itself is shown once, when ``manage.py atw_token create`` makes it; ``prefix``
    (its first characters) is what the admin and ``atw_token list`` show to tell tokens apart.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="atw_tokens")
    name = models.CharField(max_length=100, blank=True, default="", help_text="What the token is for.")
    prefix = models.CharField(max_length=16, db_index=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


MISSED_CHOICES = [
    ("once", "Run once for all missed ticks"),
    ("all", "Run each missed tick (up to max catch-up)"),
    ("skip", "Skip missed ticks"),
]


class Schedule(models.Model):
    """A cron schedule: each tick adds one task, whichever worker gets there first.

    Rows come from the admin, or from code (``@task(schedule=...)``, ``periodic(...)``), synced
    when a worker starts; of those only ``enabled`` is edited here. ``handled_until`` is the
    scheduler's mark: every tick up to it has been enqueued or dropped by the missed policy.
    """

    name = models.CharField(max_length=200, unique=True)
    task_type = models.CharField(max_length=255)
    cron = models.CharField(
        max_length=100, help_text="minute hour day month weekday [second], e.g. '*/5 * * * *' or '@daily'."
    )
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA zone the cron is read in.")
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    missed = models.CharField(
        max_length=8,
        choices=MISSED_CHOICES,
        default="once",
        help_text="What to do with ticks missed while no worker ran (older than a minute).",
    )
    max_catch_up = models.PositiveIntegerField(default=100, help_text="Most missed ticks run with 'all'.")
    from_code = models.BooleanField(default=False, editable=False)
    handled_until = models.DateTimeField(default=_now, editable=False)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_task_id = models.CharField(max_length=255, blank=True, default="", editable=False)
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ScheduleTick(models.Model):
    """One tick of one schedule, and the task it added: the unique row that makes it run once.

    Every worker inserts ticks with ON CONFLICT DO NOTHING in the same transaction as the task;
    only the insert that wins adds the task.
    """

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="ticks")
    tick = models.DateTimeField()
    task_id = models.CharField(max_length=255)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["schedule", "tick"], name="atw_schedule_tick_unique")]
        indexes = [models.Index(fields=["tick"], name="atw_schedule_tick_idx")]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.tick:%Y-%m-%d %H:%M:%S}"


class OperationsDashboard(TaskRecord):
    """No table of its own: the admin's entry for the live operations dashboard.

    A proxy so that the admin lists an "Operations dashboard" link beside the tasks; its admin
    page (``admin.dashboard``) shows stats, not rows. It has no permissions of its own: the
    dashboard needs staff status and ``view_taskrecord``.
    """

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = "operations dashboard"
        verbose_name_plural = "operations dashboard"
