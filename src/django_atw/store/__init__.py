"""Every query, transaction and lock on task and worker rows.

The engine, the admin, the API and the module functions call these; nothing else reads or
writes tasks with SQL. All functions are synchronous (Django's ORM and transactions are);
async callers run them in a thread. The modules split by concern:

- ``tasks``: add, cancel, release, retention;
- ``claims``: claim a batch, write a batch of outcomes (the worker's hot path);
- ``workers``: register, heartbeat, stop, lease recovery, pruning;
- ``reads``: task reads for the Python API, pages and health for the HTTP API, event rows;
- ``schedules``: schedule rows, the unique tick insert, code-schedule sync;
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
    TaskHistory,
)
from ._vendor import CANCEL_CHANNEL, FINISHED, TASK_ADDED_CHANNEL
from .claims import claim_batch, write_batch
from .reads import (
    EVENT_FIELDS,
    changed_since,
    event_rows,
    finished_among,
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
    add_tasks,
    announce_added,
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
    "CANCELLED_PENDING",
    "CANCEL_CHANNEL",
    "CANCEL_REQUESTED",
    "DELETE_BATCH",
    "EVENT_FIELDS",
    "FINISHED",
    "NOT_CANCELLABLE",
    "PRUNE_BATCH",
    "TASK_ADDED_CHANNEL",
    "WORKER_DIED_ERROR_TYPE",
    "ClaimedTask",
    "FailedAttempt",
    "Health",
    "NewTask",
    "Outcome",
    "PageFilters",
    "Reaped",
    "ScheduleState",
    "TaskHistory",
    "add_tasks",
    "advance",
    "announce_added",
    "cancel",
    "cancel_requested_among",
    "changed_since",
    "claim_batch",
    "claim_ticks",
    "count_finished_before",
    "count_pending",
    "delete_finished_before",
    "delete_finished_chunk",
    "event_rows",
    "finished_among",
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
    "watch_states",
    "write_batch",
]
