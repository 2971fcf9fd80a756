"""django-atw: durable asynchronous background tasks for Django.

Names are imported lazily (PEP 562) so that ``import django_atw`` works before Django's
app registry is ready: Django imports this package to find its AppConfig, and a task
module may ``from django_atw import task`` while apps are still loading.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adding import aenqueue, aenqueue_many, enqueue, enqueue_many
    from .cache import AsyncCacheAdapter, compose_key_functions, extract_key_component, key_component
    from .engine.worker import AsyncTaskWorker
    from .exceptions import (
        AtwError,
        ConfigurationError,
        DuplicateTaskIdError,
        ErrorCategory,
        InvalidCacheKeyError,
        QueueFullError,
        ScheduleError,
        TaskArgumentError,
        TaskCancellationError,
        TaskDefinitionError,
        TaskError,
        TaskExecutionError,
        TaskTimeoutError,
    )
    from .registry import get_all_task_types, get_task_function, periodic, register_task, task
    from .shortcuts import (
        acancel_task,
        aget_all_tasks,
        aget_task_info,
        cancel_task,
        get_all_tasks,
        get_task_info,
    )
    from .status import TaskInfo, TaskStatus

_LOCATIONS = {
    "AsyncCacheAdapter": ".cache",
    "AsyncTaskWorker": ".engine.worker",
    "AtwError": ".exceptions",
    "ConfigurationError": ".exceptions",
    "DuplicateTaskIdError": ".exceptions",
    "ErrorCategory": ".exceptions",
    "InvalidCacheKeyError": ".exceptions",
    "QueueFullError": ".exceptions",
    "ScheduleError": ".exceptions",
    "TaskArgumentError": ".exceptions",
    "TaskCancellationError": ".exceptions",
    "TaskDefinitionError": ".exceptions",
    "TaskError": ".exceptions",
    "TaskExecutionError": ".exceptions",
    "TaskInfo": ".status",
    "TaskStatus": ".status",
    "TaskTimeoutError": ".exceptions",
    "acancel_task": ".shortcuts",
    "aenqueue": ".adding",
    "aenqueue_many": ".adding",
    "aget_all_tasks": ".shortcuts",
    "aget_task_info": ".shortcuts",
    "cancel_task": ".shortcuts",
    "compose_key_functions": ".cache",
    "enqueue": ".adding",
    "enqueue_many": ".adding",
    "extract_key_component": ".cache",
    "get_all_task_types": ".registry",
    "get_all_tasks": ".shortcuts",
    "get_task_function": ".registry",
    "get_task_info": ".shortcuts",
    "key_component": ".cache",
    "periodic": ".registry",
    "register_task": ".registry",
    "task": ".registry",
}

__all__ = [
    "AsyncCacheAdapter",
    "AsyncTaskWorker",
    "AtwError",
    "ConfigurationError",
    "DuplicateTaskIdError",
    "ErrorCategory",
    "InvalidCacheKeyError",
    "QueueFullError",
    "ScheduleError",
    "TaskArgumentError",
    "TaskCancellationError",
    "TaskDefinitionError",
    "TaskError",
    "TaskExecutionError",
    "TaskInfo",
    "TaskStatus",
    "TaskTimeoutError",
    "acancel_task",
    "aenqueue",
    "aenqueue_many",
    "aget_all_tasks",
    "aget_task_info",
    "cancel_task",
    "compose_key_functions",
    "enqueue",
    "enqueue_many",
    "extract_key_component",
    "get_all_task_types",
    "get_all_tasks",
    "get_task_function",
    "get_task_info",
    "key_component",
    "periodic",
    "register_task",
    "task",
]


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'django_atw' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
