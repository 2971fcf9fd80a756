"""Every channel-layer group name and message type of django_atw, and nothing else.

Task events go to two groups: ``atw.task.<id>`` (clients watching that task, one event per
message) and ``atw.tasks`` (clients watching a task list, many events per message; each
filters by its own criteria and permissions). Wake-ups of workers in other processes go to
``atw.wakeup``. No other module spells a group name: this is where they change, and where a
custom task id is made safe.
"""

from __future__ import annotations

import hashlib
import re

# --- task events (realtime.publisher, realtime.relay -> realtime.consumers) ---

LIST_GROUP = "atw.tasks"
TASK_GROUP_PREFIX = "atw.task."
# The consumer method that receives events: Channels maps "atw.task" to ``atw_task``.
EVENT_TYPE = "atw.task"
# Many events in one message (``{"type": ..., "events": [event, ...]}``), as the list group
# gets them: one send per batch of changes, handled by ``atw_task_batch``.
BATCH_TYPE = "atw.task.batch"
# Not sent through the layer: what a task socket hands itself to join its groups again after
# the layer failed (``TaskConsumer.atw_rejoin``).
REJOIN_TYPE = "atw.rejoin"

# --- worker wake-ups (django_atw.wakeup, for databases without NOTIFY) ---

# The group every worker joins when wake-ups travel over the channel layer, and the message
# types sent to it (Channels maps "atw.wakeup" to a handler name; none is needed).
WAKEUP_GROUP = "atw.wakeup"
TASKS_ADDED = "atw.wakeup.added"
CANCEL_REQUESTED = "atw.wakeup.cancel"

# Channels accepts group names of ASCII letters, digits, hyphens, underscores and periods,
# shorter than 100 characters; other task ids get a digest instead.
_GROUP_SAFE = re.compile(r"[A-Za-z0-9._-]{1,80}")


def task_group(task_id: str) -> str:
    """Return the channel-layer group of one task's events."""
    if _GROUP_SAFE.fullmatch(task_id):
        return TASK_GROUP_PREFIX + task_id
    return TASK_GROUP_PREFIX + "h" + hashlib.sha256(task_id.encode()).hexdigest()[:40]


__all__ = [
    "BATCH_TYPE",
    "CANCEL_REQUESTED",
    "EVENT_TYPE",
    "LIST_GROUP",
    "REJOIN_TYPE",
    "TASKS_ADDED",
    "TASK_GROUP_PREFIX",
    "WAKEUP_GROUP",
    "task_group",
]
