"""The task socket's protocol: parse and validate requests, build reply frames.

Pure functions with no socket state; ``realtime.consumers.TaskConsumer`` calls them.

Requests (JSON text frames; an optional ``"ref"`` in a request is echoed in its reply):

- ``{"action": "subscribe", "tasks": [ids]}`` -> ``snapshot`` of those tasks, then ``task`` events.
- ``{"action": "subscribe", "list": {"status", "task_type", "queue", "mine", "limit"}}``
  -> ``snapshot`` of the newest matching tasks, then ``task`` events of any matching task.
- ``{"action": "unsubscribe", "tasks": [ids]}`` / ``{"action": "unsubscribe", "list": true}``.
- ``{"action": "cancel", "task": id}`` -> ``{"type": "cancel", "task": id, "cancelled": bool}``.

Events: ``{"type": "task", "task": ...}``, or ``{"type": "tasks", "tasks": [...]}`` for several
changes published together. Bad requests get an ``error`` frame and the socket stays open.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

from ..status import TaskStatus

CLOSE_ANONYMOUS = 4401
CLOSE_FORBIDDEN = 4403
MAX_TASKS_PER_REQUEST = 200
# Tasks one socket may watch at once. Each is a channel-layer group membership (and, with the
# in-memory layer, a group every send scans), so a socket cannot be made to hold thousands;
# a page showing more than this many tasks individually should use a list subscription.
MAX_SUBSCRIPTIONS = 1_000
MAX_LIST_LIMIT = 200
# live.js sends a list subscription's filters as its ref: room for long task types and queues.
MAX_REF_LENGTH = 1_000
DEFAULT_LIST_LIMIT = 50
ACTIONS = ("subscribe", "unsubscribe", "cancel")
_LIST_KEYS = frozenset({"status", "task_type", "queue", "mine", "limit"})
_STATUSES = frozenset(status.value for status in TaskStatus)


class BadRequest(Exception):
    """A request the protocol does not allow; becomes an ``error`` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ListFilter(TypedDict):
    """A list subscription's criteria (None matches anything)."""

    status: str | None
    task_type: str | None
    queue: str | None
    mine: bool
    limit: int


# --- requests ---


def decode(text_data: str | None) -> Any:
    """Return a text frame's JSON; malformed JSON is a bad request, not a reason to close."""
    if text_data is None:
        raise BadRequest("bad_json", "Send JSON text frames, not binary ones.")
    try:
        return json.loads(text_data)
    except ValueError as exc:
        raise BadRequest("bad_json", f"The frame is not valid JSON: {exc}.") from exc
    except RecursionError as exc:  # nesting deeper than the parser's recursion limit
        raise BadRequest("bad_json", "The frame's JSON is nested too deeply.") from exc


def request_ref(content: Any) -> Any:
    """Return the request's ``ref``, to echo in every reply to it (None when absent).

    Only a string of at most ``MAX_REF_LENGTH`` characters or a number is echoed: a ref is a
    label, and echoing any JSON would let a request make its reply as large or as deeply
    nested as it likes.
    """
    ref = content.get("ref") if isinstance(content, dict) else None
    if isinstance(ref, str) and len(ref) <= MAX_REF_LENGTH:
        return ref
    if isinstance(ref, int | float) and not isinstance(ref, bool):
        return ref
    return None


def action(content: Any) -> str:
    """Return the request's action, one of ``ACTIONS``."""
    if not isinstance(content, dict):
        raise BadRequest("bad_request", "A request is a JSON object with an 'action' key.")
    name = content.get("action")
    if name not in ACTIONS:
        raise BadRequest(
            "unknown_action",
            f"Unknown action {name!r}; expected 'subscribe', 'unsubscribe' or 'cancel'.",
        )
    return str(name)


def parse_subscribe(content: dict[str, Any], *, can_view: bool) -> list[str] | ListFilter:
    """Return the task ids to subscribe to, or the criteria of a list subscription."""
    if ("tasks" in content) == ("list" in content):
        raise BadRequest("bad_request", "subscribe takes either 'tasks' (a list of ids) or 'list'.")
    if "tasks" in content:
        return task_ids(content["tasks"])
    return list_filter(content["list"], can_view=can_view)


def parse_unsubscribe(content: dict[str, Any]) -> list[str] | None:
    """Return the task ids to unsubscribe from, or None for the list subscription."""
    if ("tasks" in content) == ("list" in content):
        raise BadRequest("bad_request", "unsubscribe takes either 'tasks' (a list of ids) or 'list': true.")
    if "tasks" in content:
        return task_ids(content["tasks"])
    if content["list"] is not True:
        raise BadRequest("bad_request", f"'list' must be true to unsubscribe, got {content['list']!r}.")
    return None


def check_room(held: int, adding: int) -> None:
    """Refuse a subscription that would take a socket past ``MAX_SUBSCRIPTIONS`` tasks."""
    if held + adding > MAX_SUBSCRIPTIONS:
        raise BadRequest(
            "too_many_subscriptions",
            f"A socket watches at most {MAX_SUBSCRIPTIONS} tasks; it watches {held} and asked for "
            f"{adding} more. Unsubscribe from some first, or subscribe to a list.",
        )


def parse_cancel(content: dict[str, Any]) -> str:
    """Return the id of the task to cancel."""
    task_id = content.get("task")
    if not isinstance(task_id, str) or not task_id:
        raise BadRequest("bad_request", f"'task' must be a task id string, got {task_id!r}.")
    return task_id


def task_ids(raw: Any) -> list[str]:
    """Return a request's task ids, without duplicates, in their order."""
    if not isinstance(raw, list) or not all(isinstance(item, str) and item for item in raw):
        raise BadRequest("bad_request", f"'tasks' must be a list of task id strings, got {raw!r}.")
    if len(raw) > MAX_TASKS_PER_REQUEST:
        raise BadRequest(
            "bad_request", f"At most {MAX_TASKS_PER_REQUEST} task ids per request, got {len(raw)}."
        )
    return list(dict.fromkeys(raw))


def list_filter(raw: Any, *, can_view: bool) -> ListFilter:
    """Return a list subscription's criteria; ``true`` means no filter.

    Without the view permission (``can_view`` False) a user's list holds only their own tasks.
    """
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise BadRequest("bad_request", '\'list\' must be an object of filters, e.g. {"status": "running"}.')
    extra = set(raw) - _LIST_KEYS
    if extra:
        raise BadRequest(
            "bad_request", f"Unknown list filter {sorted(extra)}; expected some of {sorted(_LIST_KEYS)}."
        )
    status = raw.get("status")
    if status is not None and status not in _STATUSES:
        raise BadRequest("bad_request", f"'status' must be one of {sorted(_STATUSES)}, got {status!r}.")
    for key in ("task_type", "queue"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise BadRequest("bad_request", f"'{key}' must be a string, got {raw[key]!r}.")
    mine = raw.get("mine", False)
    if not isinstance(mine, bool):
        raise BadRequest("bad_request", f"'mine' must be true or false, got {mine!r}.")
    limit = raw.get("limit", DEFAULT_LIST_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise BadRequest(
            "bad_request", f"'limit' must be an integer from 1 to {MAX_LIST_LIMIT}, got {limit!r}."
        )
    return {
        "status": status,
        "task_type": raw.get("task_type"),
        "queue": raw.get("queue"),
        "mine": mine or not can_view,
        "limit": limit,
    }


def list_matches(criteria: ListFilter, task: dict[str, Any], owner: str | None, user_key: str) -> bool:
    """True when an event's task (owned by ``owner``) meets a list subscription's criteria."""
    if criteria["mine"] and owner != user_key:
        return False
    return (
        (criteria["status"] is None or task["status"] == criteria["status"])
        and (criteria["task_type"] is None or task["task_type"] == criteria["task_type"])
        and (criteria["queue"] is None or task["queue"] == criteria["queue"])
    )


# --- replies ---


def _with_ref(frame: dict[str, Any], ref: Any) -> dict[str, Any]:
    if ref is not None:
        frame["ref"] = ref
    return frame


def error_frame(code: str, message: str, ref: Any) -> dict[str, Any]:
    return _with_ref({"type": "error", "code": code, "message": message}, ref)


def snapshot_frame(tasks: list[dict[str, Any]], is_list: bool, ref: Any) -> dict[str, Any]:
    return _with_ref({"type": "snapshot", "tasks": tasks, "list": is_list}, ref)


def cancel_frame(task_id: str, cancelled: bool, ref: Any) -> dict[str, Any]:
    return _with_ref({"type": "cancel", "task": task_id, "cancelled": cancelled}, ref)


def task_frame(task: dict[str, Any]) -> dict[str, Any]:
    return {"type": "task", "task": task}


def resync_frame() -> dict[str, Any]:
    """Events may have been lost (the channel layer failed): subscribe again for snapshots."""
    return {"type": "resync"}


def tasks_frame(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Several task events in one frame (a batch of changes published together)."""
    return {"type": "tasks", "tasks": tasks}
