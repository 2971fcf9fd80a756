"""The WebSocket consumer of live progress: subscribe to tasks or to a task list, cancel a task.

Protocol (JSON text frames; an optional ``"ref"`` in a request is echoed in its reply):

- ``{"action": "subscribe", "tasks": [ids]}`` -> ``snapshot`` of those tasks, then ``task`` events.
- ``{"action": "subscribe", "list": {"status", "task_type", "queue", "mine", "limit"}}``
  -> ``snapshot`` of the newest matching tasks, then ``task`` events of any matching task.
- ``{"action": "unsubscribe", "tasks": [ids]}`` / ``{"action": "unsubscribe", "list": true}``.
- ``{"action": "cancel", "task": id}`` -> ``{"type": "cancel", "task": id, "cancelled": bool}``.

Bad requests get an ``error`` frame and the socket stays open. Anonymous users are closed
with 4401, inactive ones with 4403. A user sees the tasks they own, or every task with the
``view_taskrecord`` permission; cancelling needs ownership or ``change_taskrecord``.
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import ImproperlyConfigured

from . import events, store
from .shortcuts import acancel_task
from .status import TaskStatus

CLOSE_ANONYMOUS = 4401
CLOSE_FORBIDDEN = 4403
MAX_TASKS_PER_REQUEST = 200
MAX_LIST_LIMIT = 200
DEFAULT_LIST_LIMIT = 50
# Versions remembered per socket (to drop events older than what was sent); a list
# subscription on a busy site would otherwise grow this without end.
MAX_VERSIONS = 10_000
_LIST_KEYS = frozenset({"status", "task_type", "queue", "mine", "limit"})
_STATUSES = frozenset(status.value for status in TaskStatus)


class BadRequest(Exception):
    """A request the protocol does not allow; becomes an ``error`` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TaskConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """One browser page's socket: its task and list subscriptions and its cancel requests."""

    async def connect(self) -> None:
        if self.channel_layer is None:
            raise ImproperlyConfigured(
                "django_atw's task socket needs a channel layer: set CHANNEL_LAYERS (the in-memory "
                "layer for one process, channels_redis for several; see docs/live.md)."
            )
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_ANONYMOUS)
            return
        if not user.is_active:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.user_key = str(user.pk)
        self.can_view, self.can_change = await database_sync_to_async(_permissions)(user)
        self.tasks: set[str] = set()
        self.list_filter: dict[str, Any] | None = None
        self.versions: dict[str, float] = {}
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for task_id in getattr(self, "tasks", ()):
            await self.channel_layer.group_discard(events.task_group(task_id), self.channel_name)
        if getattr(self, "list_filter", None) is not None:
            await self.channel_layer.group_discard(events.LIST_GROUP, self.channel_name)

    # --- requests ---

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Decode a frame here, so that malformed JSON is answered instead of closing the socket."""
        if text_data is None:
            await self._error("bad_json", "Send JSON text frames, not binary ones.", None)
            return
        try:
            content = json.loads(text_data)
        except ValueError as exc:
            await self._error("bad_json", f"The frame is not valid JSON: {exc}.", None)
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        ref = content.get("ref") if isinstance(content, dict) else None
        try:
            if not isinstance(content, dict):
                raise BadRequest("bad_request", "A request is a JSON object with an 'action' key.")
            action = content.get("action")
            if action == "subscribe":
                await self._subscribe(content, ref)
            elif action == "unsubscribe":
                await self._unsubscribe(content)
            elif action == "cancel":
                await self._cancel(content, ref)
            else:
                raise BadRequest(
                    "unknown_action",
                    f"Unknown action {action!r}; expected 'subscribe', 'unsubscribe' or 'cancel'.",
                )
        except BadRequest as exc:
            await self._error(exc.code, exc.message, ref)

    async def _subscribe(self, content: dict[str, Any], ref: Any) -> None:
        if ("tasks" in content) == ("list" in content):
            raise BadRequest("bad_request", "subscribe takes either 'tasks' (a list of ids) or 'list'.")
        if "tasks" in content:
            await self._subscribe_tasks(_task_ids(content["tasks"]), ref)
        else:
            await self._subscribe_list(self._list_filter(content["list"]), ref)

    async def _subscribe_tasks(self, task_ids: list[str], ref: Any) -> None:
        # Join the groups before reading, so no change between the read and the join is lost;
        # an event older than the snapshot is dropped by its version.
        fresh = [task_id for task_id in task_ids if task_id not in self.tasks]
        for task_id in fresh:
            await self.channel_layer.group_add(events.task_group(task_id), self.channel_name)
        rows = {row["id"]: row for row in await database_sync_to_async(store.event_rows)(task_ids)}
        unknown = [task_id for task_id in task_ids if task_id not in rows]
        forbidden = [task_id for task_id in rows if not self._may_see(rows[task_id]["created_by_id"])]
        for task_id in unknown + forbidden:
            rows.pop(task_id, None)
            if task_id in fresh:
                await self.channel_layer.group_discard(events.task_group(task_id), self.channel_name)
        self.tasks.update(rows)
        if unknown:
            await self._error("unknown_task", f"No task with id {', '.join(unknown)}.", ref)
        if forbidden:
            await self._error("forbidden", f"You may not see task {', '.join(forbidden)}.", ref)
        await self._snapshot([rows[task_id] for task_id in task_ids if task_id in rows], False, ref)

    async def _subscribe_list(self, criteria: dict[str, Any], ref: Any) -> None:
        if self.list_filter is None:
            await self.channel_layer.group_add(events.LIST_GROUP, self.channel_name)
        self.list_filter = criteria
        rows = await database_sync_to_async(store.newest_event_rows)(
            status=criteria["status"],
            task_type=criteria["task_type"],
            queue=criteria["queue"],
            owner_id=self.scope["user"].pk if criteria["mine"] else None,
            limit=criteria["limit"],
        )
        await self._snapshot(rows, True, ref)

    def _list_filter(self, raw: Any) -> dict[str, Any]:
        if raw is True:
            raw = {}
        if not isinstance(raw, dict):
            raise BadRequest(
                "bad_request", '\'list\' must be an object of filters, e.g. {"status": "running"}.'
            )
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
            # Without the view permission a user's list holds only their own tasks.
            "mine": mine or not self.can_view,
            "limit": limit,
        }

    async def _unsubscribe(self, content: dict[str, Any]) -> None:
        if ("tasks" in content) == ("list" in content):
            raise BadRequest(
                "bad_request", "unsubscribe takes either 'tasks' (a list of ids) or 'list': true."
            )
        if "tasks" in content:
            for task_id in _task_ids(content["tasks"]):
                if task_id in self.tasks:
                    self.tasks.discard(task_id)
                    await self.channel_layer.group_discard(events.task_group(task_id), self.channel_name)
        elif content["list"] is not True:
            raise BadRequest("bad_request", f"'list' must be true to unsubscribe, got {content['list']!r}.")
        elif self.list_filter is not None:
            self.list_filter = None
            await self.channel_layer.group_discard(events.LIST_GROUP, self.channel_name)

    async def _cancel(self, content: dict[str, Any], ref: Any) -> None:
        task_id = content.get("task")
        if not isinstance(task_id, str) or not task_id:
            raise BadRequest("bad_request", f"'task' must be a task id string, got {task_id!r}.")
        rows = await database_sync_to_async(store.event_rows)([task_id])
        if not rows:
            raise BadRequest("unknown_task", f"No task with id {task_id}.")
        owner = rows[0]["created_by_id"]
        if not (self.can_change or (owner is not None and str(owner) == self.user_key)):
            raise BadRequest("forbidden", f"You may not cancel task {task_id}.")
        cancelled = await acancel_task(task_id)
        reply: dict[str, Any] = {"type": "cancel", "task": task_id, "cancelled": cancelled}
        if ref is not None:
            reply["ref"] = ref
        await self.send_json(reply)
        if cancelled:
            # A pending task is cancelled here, not by a worker: nobody else announces it.
            await events.publish_tasks([task_id], self.channel_layer)

    # --- events ---

    async def atw_task(self, event: dict[str, Any]) -> None:
        """A task changed (sent to its task group and to the list group)."""
        task = event["task"]
        task_id = task["id"]
        if task_id not in self.tasks and not self._list_wants(task, event["owner"]):
            return
        version = event["version"]
        if version <= self.versions.get(task_id, float("-inf")):
            return  # already sent (through the other group, or in a newer snapshot)
        self._remember(task_id, version)
        await self.send_json({"type": "task", "task": task})

    def _list_wants(self, task: dict[str, Any], owner: str | None) -> bool:
        criteria = self.list_filter
        if criteria is None:
            return False
        if task["id"] in self.versions:
            # Already on the client's list: it hears of the task leaving the filter too
            # (a "running" list sees the completion), so no row stays stale.
            return True
        if criteria["mine"] and owner != self.user_key:
            return False
        return all(
            criteria[key] is None or task[key] == criteria[key] for key in ("status", "task_type", "queue")
        )

    # --- replies ---

    def _may_see(self, owner: Any) -> bool:
        return self.can_view or (owner is not None and str(owner) == self.user_key)

    async def _snapshot(self, rows: list[dict[str, Any]], is_list: bool, ref: Any) -> None:
        for row in rows:
            self._remember(row["id"], row["updated_at"].timestamp())
        frame: dict[str, Any] = {
            "type": "snapshot",
            "tasks": [events.task_payload(row) for row in rows],
            "list": is_list,
        }
        if ref is not None:
            frame["ref"] = ref
        await self.send_json(frame)

    async def _error(self, code: str, message: str, ref: Any) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if ref is not None:
            frame["ref"] = ref
        await self.send_json(frame)

    def _remember(self, task_id: str, version: float) -> None:
        versions = self.versions
        versions.pop(task_id, None)
        versions[task_id] = version
        if len(versions) > MAX_VERSIONS:
            for stale in list(versions)[: MAX_VERSIONS // 2]:
                del versions[stale]


def _permissions(user: Any) -> tuple[bool, bool]:
    return user.has_perm("django_atw.view_taskrecord"), user.has_perm("django_atw.change_taskrecord")


def _task_ids(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(item, str) and item for item in raw):
        raise BadRequest("bad_request", f"'tasks' must be a list of task id strings, got {raw!r}.")
    if len(raw) > MAX_TASKS_PER_REQUEST:
        raise BadRequest(
            "bad_request", f"At most {MAX_TASKS_PER_REQUEST} task ids per request, got {len(raw)}."
        )
    return list(dict.fromkeys(raw))
