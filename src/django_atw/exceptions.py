"""Exceptions raised by django_atw.

    AtwError
     +-- ConfigurationError (ImproperlyConfigured)   the ATW setting is invalid
     +-- QueueFullError                               max_queue_size pending tasks already
     +-- InvalidCacheKeyError (ValueError)            a cache key function gave an unusable key
     +-- ScheduleError (ValueError)                   a schedule's cron, zone or policy is invalid
     +-- TaskError                                    the original library's base class
          +-- TaskDefinitionError (ValueError)        a task cannot be stored as given
          |    +-- TaskArgumentError (TypeError)      an argument or option is not acceptable
          |    +-- DuplicateTaskIdError               the custom task_id is taken
          +-- TaskExecutionError                      the task raised; futures raise this
          +-- TaskTimeoutError                        the task ran past its timeout
          +-- TaskCancellationError (CancelledError)  the task was cancelled

Futures of failed tasks raise a ``TaskError`` subclass carrying the stored error message,
so a task that ran in another process fails the same way as one that ran here.
"""

from __future__ import annotations

import asyncio
import enum

from django.core.exceptions import ImproperlyConfigured


class AtwError(Exception):
    """Base class of every django_atw error; never raised directly."""


class ConfigurationError(AtwError, ImproperlyConfigured):
    """Raised when ``settings.ATW`` holds an invalid value."""


class QueueFullError(AtwError):
    """Raised by ``add_task`` when the worker's ``max_queue_size`` pending tasks are waiting."""


class ErrorCategory(enum.StrEnum):
    """What kind of failure a ``TaskError`` is: the original library's categories."""

    TASK_DEFINITION = "task_definition"
    TASK_EXECUTION = "task_execution"
    TIMEOUT = "timeout"
    CANCELLATION = "cancellation"
    RESOURCE = "resource"
    VALIDATION = "validation"
    INTERNAL = "internal"
    UNKNOWN = "unknown"


class TaskError(AtwError):
    """A task could not be defined, or it did not complete."""

    #: The original library's classification of this error.
    category: ErrorCategory = ErrorCategory.UNKNOWN

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.task_id = task_id

    def __str__(self) -> str:
        return self.message


class TaskDefinitionError(TaskError, ValueError):
    """Raised when a task cannot be stored: unknown function, bad option, taken id."""

    category = ErrorCategory.TASK_DEFINITION


class TaskArgumentError(TaskDefinitionError, TypeError):
    """Raised when an argument is not a JSON value, or an option has the wrong type.

    ``path`` locates the refused value: the argument's name (``args``, ``kwargs``, ``metadata``,
    ``task_id``, ``priority``, ...), then the keys and indexes inside it; empty when no single
    argument is at fault.
    """

    category = ErrorCategory.VALIDATION

    def __init__(self, message: str, *, path: tuple[str | int, ...] = (), task_id: str | None = None) -> None:
        super().__init__(message, task_id=task_id)
        self.path = path


class DuplicateTaskIdError(TaskDefinitionError):
    """Raised when ``add_task(task_id=...)`` names an id that is already stored."""


class TaskExecutionError(TaskError):
    """The task raised; the original exception is chained when it ran in this process."""

    category = ErrorCategory.TASK_EXECUTION


class TaskTimeoutError(TaskError):
    """The task ran longer than its timeout."""

    category = ErrorCategory.TIMEOUT


class TaskCancellationError(TaskError, asyncio.CancelledError):
    """The task was cancelled.

    Both a ``TaskError`` and an ``asyncio.CancelledError``, so ``except asyncio.CancelledError``
    (as the original's README shows) and ``except TaskError`` both catch it.
    """

    category = ErrorCategory.CANCELLATION


class InvalidCacheKeyError(AtwError, ValueError):
    """Raised when a cache key function returns a non-string, or a key fails validation."""


class ScheduleError(AtwError, ValueError):
    """Raised when a schedule is declared with an invalid cron string, time zone or policy."""
