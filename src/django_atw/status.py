"""Task states and the read-only snapshot handed to user code."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import StrEnum
from typing import Any


class TaskStatus(StrEnum):
    """Where a task is in its life; compares equal to its string value."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    # Enum hashes members by name; hash like the string instead, so that a member and its
    # value are interchangeable in sets and dict keys as they already are in comparisons.
    __hash__ = str.__hash__

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TaskInfo:
    """A snapshot of one task, as stored (with live progress overlaid for local tasks).

    The first ten fields are the original library's ``TaskInfo``; the rest are django_atw's.
    """

    id: str
    status: TaskStatus
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    result: Any = None
    error: str | None = None
    progress: float = 0.0
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    from_cache: bool = False
    task_type: str = ""
    queue: str = "default"
    priority: int = 0
    args: list[Any] = dataclasses.field(default_factory=list)
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    error_type: str = ""
    attempts: int = 0
    timeout: float | None = None
    worker_id: str | None = None
    cancel_requested: bool = False
    max_attempts: int = 3
    run_after: datetime | None = None

    def is_terminal_state(self) -> bool:
        """Return True once the task is completed, failed or cancelled."""
        return self.status.is_terminal

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or None while not finished."""
        if self.started_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-ready values (datetimes as ISO 8601 strings)."""
        out = dataclasses.asdict(self)
        out["status"] = self.status.value
        for name in ("created_at", "started_at", "completed_at", "run_after"):
            value = out[name]
            out[name] = value.isoformat() if value is not None else None
        return out
