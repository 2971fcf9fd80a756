"""Every query, transaction and lock on task and worker rows.

The engine, the admin, the API and the module functions call these; nothing else reads or
writes tasks with SQL. All functions are synchronous (Django's ORM and transactions are);
async callers run them in a thread. The modules split by concern:

- ``tasks``: add, cancel, release, retention;
- ``claims``: claim a batch, write a batch of outcomes (the worker's hot path);
- ``workers``: register, heartbeat, stop, lease recovery, pruning;
- ``reads``: task reads for the Python API, pages and health for the HTTP API, event rows;
- ``schedules``: schedule rows, the unique tick insert, code-schedule sync;
- ``maintenance``: the task table's dead rows and the workers' VACUUM and ANALYZE of it (PostgreSQL);
- ``_vendor``: the one SQLite/PostgreSQL switch.

Callers use the names re-exported here (``store.claim_batch``), never the submodules.
"""

from ..values import (
    ClaimedTask,
    FailedAttempt,
    Health,
    NewTask,
    Outcome,
    PageFilters,
    Reaped,
    ScheduleState,
    TableStats,
    TaskHistory,
    Vacuumed,
)
from ._vendor import CANCEL_CHANNEL, FINISHED, TASK_ADDED_CHANNEL
from .claims import Written, claim_batch, write_batch
from .inserts import add_tasks, announce_added
from .maintenance import (
    ANALYZE_MIN,
    ANALYZE_SCALE,
    VACUUM_LOCK,
    VACUUM_MIN_DEAD,
    VACUUM_SCALE,
    analyze_due,
    backend_pid,
    cancel_backend,
    due_work,
    maintenance_due,
    table_stats,
    vacuum_due,
    vacuum_if_due,
)
from .reads import (
    EVENT_FIELDS,
    changed_since,
    event_rows,
    finished_among,
    finished_ids_among,
    get_task,
    get_task_history,
    get_tasks,
    get_visible_task,
    list_tasks,
    list_tasks_page,
    newest_event_rows,
    read_health,
    watch_states,
)
from .schedules import advance, claim_ticks, get_schedule, list_schedules, prune_ticks, sync_code_schedules
from .tasks import (
    CANCEL_REQUESTED,
    CANCELLED_PENDING,
    DELETE_BATCH,
    NOT_CANCELLABLE,
    cancel,
    cancel_requested_among,
    count_finished_before,
    count_pending,
    delete_finished_before,
    delete_finished_chunk,
    first_running_with_cache_key,
    queue_depths,
    release,
)
from .workers import (
    PRUNE_BATCH,
    WORKER_DIED_ERROR_TYPE,
    heartbeat,
    list_workers,
    mark_worker_stopped,
    prune_workers,
    reap_stale_workers,
    register_worker,
)

__all__ = [
    "ANALYZE_MIN",
    "ANALYZE_SCALE",
    "CANCELLED_PENDING",
    "CANCEL_CHANNEL",
    "CANCEL_REQUESTED",
    "DELETE_BATCH",
    "EVENT_FIELDS",
    "FINISHED",
    "NOT_CANCELLABLE",
    "PRUNE_BATCH",
    "TASK_ADDED_CHANNEL",
    "VACUUM_LOCK",
    "VACUUM_MIN_DEAD",
    "VACUUM_SCALE",
    "WORKER_DIED_ERROR_TYPE",
    "ClaimedTask",
    "FailedAttempt",
    "Health",
    "NewTask",
    "Outcome",
    "PageFilters",
    "Reaped",
    "ScheduleState",
    "TableStats",
    "TaskHistory",
    "Vacuumed",
    "Written",
    "add_tasks",
    "advance",
    "analyze_due",
    "announce_added",
    "backend_pid",
    "cancel",
    "cancel_backend",
    "cancel_requested_among",
    "changed_since",
    "claim_batch",
    "claim_ticks",
    "count_finished_before",
    "count_pending",
    "delete_finished_before",
    "delete_finished_chunk",
    "due_work",
    "event_rows",
    "finished_among",
    "finished_ids_among",
    "first_running_with_cache_key",
    "get_schedule",
    "get_task",
    "get_task_history",
    "get_tasks",
    "get_visible_task",
    "heartbeat",
    "list_schedules",
    "list_tasks",
    "list_tasks_page",
    "list_workers",
    "maintenance_due",
    "mark_worker_stopped",
    "newest_event_rows",
    "prune_ticks",
    "prune_workers",
    "queue_depths",
    "read_health",
    "reap_stale_workers",
    "register_worker",
    "release",
    "sync_code_schedules",
    "table_stats",
    "vacuum_due",
    "vacuum_if_due",
    "watch_states",
    "write_batch",
]
