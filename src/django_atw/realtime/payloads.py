"""What a task event carries: the protocol's task object and the channel-layer message.

Payloads are small: the protocol's task fields, ``result`` only when its JSON fits in
``MAX_RESULT_BYTES``. Snapshots (read by the consumer) and events (sent by the publisher
and the relay) are built here alike, so a client sees one shape whatever sent it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..status import TaskStatus
from .groups import BATCH_TYPE, EVENT_TYPE

# Results larger than this (as JSON) are left out of events and snapshots; the page fetches
# them another way if it needs them.
MAX_RESULT_BYTES = 4096


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def task_payload(row: dict[str, Any]) -> dict[str, Any]:
    """Return the protocol's ``<task>`` object for a row of ``store.EVENT_FIELDS``."""
    status = str(row["status"])
    payload: dict[str, Any] = {
        "id": row["id"],
        "task_type": row["task_type"],
        "queue": row["queue"],
        "status": status,
        "progress": float(row["progress"]),
        "created_at": _iso(row["created_at"]),
        "started_at": _iso(row["started_at"]),
        "completed_at": _iso(row["completed_at"]),
        "error": row["error"] or None,
        "from_cache": bool(row["from_cache"]),
        "attempts": int(row["attempts"]),
        "max_attempts": int(row["max_attempts"]),
        "run_after": _iso(row["run_after"]),
    }
    if status == TaskStatus.COMPLETED.value:
        result = row["result"]
        if not row.get("result_truncated") and len(json.dumps(result)) <= MAX_RESULT_BYTES:
            payload["result"] = result
        else:
            payload["result_truncated"] = True
    return payload


def event_message(row: dict[str, Any]) -> dict[str, Any]:
    """Return the channel-layer message for a row: the payload plus what consumers filter on."""
    owner = row["created_by_id"]
    return {
        "type": EVENT_TYPE,
        "task": task_payload(row),
        "owner": str(owner) if owner is not None else None,
        # Orders events and snapshots of one task: a consumer drops anything older than
        # what it already sent.
        "version": row["updated_at"].timestamp(),
    }


def batch_message(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Return one channel-layer message carrying many ``event_message``s (for the list group)."""
    return {"type": BATCH_TYPE, "events": events}
