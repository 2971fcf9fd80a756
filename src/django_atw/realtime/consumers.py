"""The WebSocket consumer of live progress: one socket's subscriptions and event delivery.

The requests and replies are described in ``realtime.protocol``, which parses them. Anonymous
users are accepted and closed at once with 4401, inactive ones with 4403. A user sees the tasks
they own, or every task with the ``view_taskrecord`` permission; cancelling needs ownership or
``change_taskrecord``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import ImproperlyConfigured

from .. import store
from ..shortcuts import acancel_task
from . import protocol
from .groups import LIST_GROUP, REJOIN_TYPE, task_group
from .layer import SEND_TIMEOUT
from .payloads import task_payload
from .protocol import BadRequest, ListFilter
from .publisher import publish_tasks

logger = logging.getLogger(__name__)

# Seconds between attempts to join the layer again after it failed (a Redis restart), doubling
# up to the maximum: a few sockets per process retrying every few seconds cost Redis nothing.
REJOIN_FIRST_DELAY = 0.5
REJOIN_MAX_DELAY = 5.0

# Versions remembered per socket (to drop events older than what was sent); a list
# subscription on a busy site would otherwise grow this without end.
MAX_VERSIONS = 10_000


class TaskConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """One browser page's socket: its task and list subscriptions and its cancel requests."""

    async def connect(self) -> None:
        if self.channel_layer is None:
            raise ImproperlyConfigured(
                "django_atw's task socket needs a channel layer: set CHANNEL_LAYERS (the in-memory "
                "layer for one process, channels_redis for several; see docs/live.md)."
            )
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            # Accept, then close with the code: a close before accepting becomes an HTTP 403 at
            # the handshake, which a browser reports as 1006 (like a network failure), so
            # live.js could not tell "signed out" from "server down" and would retry forever.
            await self.accept()
            anonymous = user is None or not user.is_authenticated
            await self.close(code=protocol.CLOSE_ANONYMOUS if anonymous else protocol.CLOSE_FORBIDDEN)
            return
        self.user_key = str(user.pk)
        self.can_view, self.can_change = await database_sync_to_async(_permissions)(user)
        self.tasks: set[str] = set()
        self.list_filter: ListFilter | None = None
        self.versions: dict[str, float] = {}
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for task_id in getattr(self, "tasks", ()):
            await self._group(self.channel_layer.group_discard, task_group(task_id))
        if getattr(self, "list_filter", None) is not None:
            await self._group(self.channel_layer.group_discard, LIST_GROUP)

    # --- the channel layer, surviving its outages ---
    #
    # Channels' ``AsyncConsumer.__call__`` sets ``channel_receive`` to the layer's receive for
    # this socket's channel and awaits it in a loop; an exception there (Redis restarted: the
    # connection is closed) would end the consumer and close the socket abnormally. The
    # property keeps the layer's receive and hands Channels a wrapper that turns a failure into
    # bounded retries: once the layer answers again, the socket joins its groups again (a
    # restarted Redis lost them) and tells the client to resubscribe, for a fresh snapshot of
    # what changed meanwhile.

    @property
    def channel_receive(self) -> Callable[[], Awaitable[dict[str, Any]]]:
        return self._receive_from_layer

    @channel_receive.setter
    def channel_receive(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._layer_receive = receive
        self._rejoin_delay: float | None = None  # None: joined; else seconds until the next try

    async def _receive_from_layer(self) -> dict[str, Any]:
        if self._rejoin_delay is not None:
            await asyncio.sleep(self._rejoin_delay)
            return {"type": REJOIN_TYPE}
        try:
            message: dict[str, Any] = await self._layer_receive()
        except Exception as exc:
            self._layer_lost(exc)
            return await self._receive_from_layer()
        return message

    def _layer_lost(self, exc: BaseException) -> None:
        if self._rejoin_delay is None:
            logger.warning(
                "task socket lost the channel layer (%s: %s); rejoining when it answers",
                type(exc).__name__,
                str(exc)[:200],
            )
            self._rejoin_delay = REJOIN_FIRST_DELAY

    async def atw_rejoin(self, event: dict[str, Any]) -> None:
        """Join the socket's groups again after a layer outage; then ask for a resubscribe."""
        groups = [task_group(task_id) for task_id in getattr(self, "tasks", ())]
        if getattr(self, "list_filter", None) is not None:
            groups.append(LIST_GROUP)
        try:
            for group in groups:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await self.channel_layer.group_add(group, self.channel_name)
        except Exception:
            self._rejoin_delay = min(REJOIN_MAX_DELAY, 2 * (self._rejoin_delay or REJOIN_FIRST_DELAY))
            return
        self._rejoin_delay = None
        logger.info("task socket joined the channel layer again (%d groups)", len(groups))
        await self.send_json(protocol.resync_frame())

    async def _group(self, operation: Callable[[str, str], Awaitable[None]], group: str) -> None:
        """``group_add`` or ``group_discard``, bounded; a failure is a lost layer, not an error
        for the client: the snapshot comes from the database, and the socket rejoins."""
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await operation(group, self.channel_name)
        except Exception as exc:
            self._layer_lost(exc)

    # --- requests ---

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Decode a frame here, so that malformed JSON is answered instead of closing the socket."""
        try:
            content = protocol.decode(text_data)
        except BadRequest as exc:
            await self.send_json(protocol.error_frame(exc.code, exc.message, None))
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        ref = protocol.request_ref(content)
        try:
            action = protocol.action(content)
            if action == "subscribe":
                target = protocol.parse_subscribe(content, can_view=self.can_view)
                if isinstance(target, list):
                    await self._subscribe_tasks(target, ref)
                else:
                    await self._subscribe_list(target, ref)
            elif action == "unsubscribe":
                await self._unsubscribe(protocol.parse_unsubscribe(content))
            else:
                await self._cancel(protocol.parse_cancel(content), ref)
        except BadRequest as exc:
            await self.send_json(protocol.error_frame(exc.code, exc.message, ref))

    async def _subscribe_tasks(self, task_ids: list[str], ref: Any) -> None:
        # Join the groups before reading, so no change between the read and the join is lost;
        # an event older than the snapshot is dropped by its version.
        fresh = [task_id for task_id in task_ids if task_id not in self.tasks]
        protocol.check_room(len(self.tasks), len(fresh))
        for task_id in fresh:
            await self._group(self.channel_layer.group_add, task_group(task_id))
        rows = {row["id"]: row for row in await database_sync_to_async(store.event_rows)(task_ids)}
        unknown = [task_id for task_id in task_ids if task_id not in rows]
        forbidden = [task_id for task_id in rows if not self._may_see(rows[task_id]["created_by_id"])]
        for task_id in unknown + forbidden:
            rows.pop(task_id, None)
            if task_id in fresh:
                await self._group(self.channel_layer.group_discard, task_group(task_id))
        self.tasks.update(rows)
        if unknown:
            await self.send_json(
                protocol.error_frame("unknown_task", f"No task with id {', '.join(unknown)}.", ref)
            )
        if forbidden:
            await self.send_json(
                protocol.error_frame("forbidden", f"You may not see task {', '.join(forbidden)}.", ref)
            )
        await self._snapshot([rows[task_id] for task_id in task_ids if task_id in rows], False, ref)

    async def _subscribe_list(self, criteria: ListFilter, ref: Any) -> None:
        if self.list_filter is None:
            await self._group(self.channel_layer.group_add, LIST_GROUP)
        self.list_filter = criteria
        rows = await database_sync_to_async(store.newest_event_rows)(
            status=criteria["status"],
            task_type=criteria["task_type"],
            queue=criteria["queue"],
            owner_id=self.scope["user"].pk if criteria["mine"] else None,
            limit=criteria["limit"],
        )
        await self._snapshot(rows, True, ref)

    async def _unsubscribe(self, task_ids: list[str] | None) -> None:
        if task_ids is not None:
            for task_id in task_ids:
                if task_id in self.tasks:
                    self.tasks.discard(task_id)
                    await self._group(self.channel_layer.group_discard, task_group(task_id))
        elif self.list_filter is not None:
            self.list_filter = None
            await self._group(self.channel_layer.group_discard, LIST_GROUP)

    async def _cancel(self, task_id: str, ref: Any) -> None:
        rows = await database_sync_to_async(store.event_rows)([task_id])
        if not rows:
            raise BadRequest("unknown_task", f"No task with id {task_id}.")
        owner = rows[0]["created_by_id"]
        if not (self.can_change or (owner is not None and str(owner) == self.user_key)):
            raise BadRequest("forbidden", f"You may not cancel task {task_id}.")
        cancelled = await acancel_task(task_id)
        await self.send_json(protocol.cancel_frame(task_id, cancelled, ref))
        if cancelled:
            # A pending task is cancelled here, not by a worker: nobody else announces it.
            await publish_tasks([task_id], self.channel_layer)

    # --- events ---

    async def atw_task(self, event: dict[str, Any]) -> None:
        """A task changed (one event, sent to its task group)."""
        task = self._wanted(event)
        if task is not None:
            await self.send_json(protocol.task_frame(task))

    async def atw_task_batch(self, event: dict[str, Any]) -> None:
        """Tasks changed (many events in one message, sent to the list group)."""
        tasks = [task for task in map(self._wanted, event["events"]) if task is not None]
        if len(tasks) == 1:
            await self.send_json(protocol.task_frame(tasks[0]))
        elif tasks:
            await self.send_json(protocol.tasks_frame(tasks))

    def _wanted(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The event's task if this socket should send it (and remember it sent), else None."""
        task: dict[str, Any] = event["task"]
        task_id = task["id"]
        if task_id not in self.tasks and not self._list_wants(task, event["owner"]):
            return None
        version = event["version"]
        if version <= self.versions.get(task_id, float("-inf")):
            return None  # already sent (through the other group, or in a newer snapshot)
        self._remember(task_id, version)
        return task

    def _list_wants(self, task: dict[str, Any], owner: str | None) -> bool:
        if self.list_filter is None:
            return False
        if task["id"] in self.versions:
            # Already on the client's list: it hears of the task leaving the filter too
            # (a "running" list sees the completion), so no row stays stale.
            return True
        return protocol.list_matches(self.list_filter, task, owner, self.user_key)

    # --- replies ---

    def _may_see(self, owner: Any) -> bool:
        return self.can_view or (owner is not None and str(owner) == self.user_key)

    async def _snapshot(self, rows: list[dict[str, Any]], is_list: bool, ref: Any) -> None:
        for row in rows:
            self._remember(row["id"], row["updated_at"].timestamp())
        await self.send_json(protocol.snapshot_frame([task_payload(row) for row in rows], is_list, ref))

    def _remember(self, task_id: str, version: float) -> None:
        versions = self.versions
        versions.pop(task_id, None)
        versions[task_id] = version
        if len(versions) > MAX_VERSIONS:
            for stale in list(versions)[: MAX_VERSIONS // 2]:
                del versions[stale]


def _permissions(user: Any) -> tuple[bool, bool]:
    return user.has_perm("django_atw.view_taskrecord"), user.has_perm("django_atw.change_taskrecord")
