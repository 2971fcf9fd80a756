"""Module-level reads and cancels for code without a running worker: views, the shell, commands.

Each sync function has an async twin prefixed ``a`` (Django's convention). Adding tasks
(``enqueue``, ``enqueue_many``) lives in ``adding.py``, the one add path.
"""

from __future__ import annotations

from datetime import timedelta

from asgiref.sync import sync_to_async

from . import store, wakeup
from .status import TaskInfo, TaskStatus


def get_task_info(task_id: str) -> TaskInfo | None:
    """Return a task's stored state, or None if unknown."""
    return store.get_task(task_id)


def check_list_filters(
    status: TaskStatus | str | None, limit: int | None, older_than: timedelta | None
) -> TaskStatus | None:
    """Validate ``get_all_tasks`` filters, naming the bad one; return the status as an enum."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int or None, got {limit!r}.")
    if older_than is not None and not isinstance(older_than, timedelta):
        raise ValueError(f"older_than must be a timedelta or None, got {older_than!r}.")
    if status is None:
        return None
    try:
        return TaskStatus(status)
    except ValueError:
        choices = ", ".join(s.value for s in TaskStatus)
        raise ValueError(f"status must be one of {choices}, got {status!r}.") from None


def get_all_tasks(
    status: TaskStatus | str | None = None,
    limit: int | None = None,
    older_than: timedelta | None = None,
) -> list[TaskInfo]:
    """Return the ``limit`` newest tasks, of ``status``, created before ``now - older_than``."""
    return store.list_tasks(check_list_filters(status, limit, older_than), limit, older_than)


def cancel_task(task_id: str) -> bool:
    """Cancel a pending task at once or ask a running task's worker to cancel it.

    Returns False for an unknown or finished task. A worker in this process is told at once,
    one in another process by NOTIFY (PostgreSQL) or the channel layer, else at its next poll.
    """
    outcome, _owner = store.cancel(task_id)
    if outcome == store.CANCEL_REQUESTED:
        wakeup.notify_cancel(task_id)
        wakeup.broadcast(cancel=task_id)
    return outcome != store.NOT_CANCELLABLE


aget_task_info = sync_to_async(get_task_info)
aget_task_info.__doc__ = "Async version of ``get_task_info``."
aget_all_tasks = sync_to_async(get_all_tasks)
aget_all_tasks.__doc__ = "Async version of ``get_all_tasks``."
acancel_task = sync_to_async(cancel_task)
acancel_task.__doc__ = "Async version of ``cancel_task``."
