"""Wake workers when a task is added or a cancel is requested: in this process and across.

In-process: ``notify`` and ``notify_cancel`` call the listening workers' callbacks on their
loops, from any thread. Across processes, ``notify_processes`` is called once added tasks are
committed: on PostgreSQL it hands the queue names to the process's ``notifier.NOTIFIER``, whose thread
NOTIFYs each queue once per burst of adds on a connection of its own (a NOTIFY inside every
adding transaction would serialize their commits on the server's notification lock). Released
tasks and cancel requests NOTIFY in their own statements. Each worker's ``PostgresListener``
LISTENs on its own connection. On SQLite, when a channel layer that crosses processes (Redis)
is configured, ``broadcast``/``abroadcast`` send a message to the group ``WAKEUP_GROUP``
(named in ``realtime.groups``) and each worker's ``ChannelLayerListener`` receives it; without
one, they ring the ``doorbell`` (a Unix datagram per worker on the same machine) and each
worker's ``DoorbellListener`` reads it. Polling at the worker's poll interval stays the
fallback: a lost wake-up only delays a task, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connections

from . import doorbell
from .logs import brief
from .notifier import NOTIFIER
from .realtime.groups import CANCEL_REQUESTED, TASKS_ADDED, WAKEUP_GROUP
from .store import CANCEL_CHANNEL, TASK_ADDED_CHANNEL

logger = logging.getLogger(__name__)

# Reconnect delays of a listener whose connection dropped: start small (a restart is quick),
# double up to the cap so a long outage does not flood the logs or the server.
RECONNECT_DELAY = 0.5
MAX_RECONNECT_DELAY = 10.0
# Seconds a broadcast may take before it is given up (the layer is down: polling covers it).
BROADCAST_TIMEOUT = 1.0
# Seconds between re-joins of the group: channels_redis forgets a membership after a day.
GROUP_REFRESH = 3600.0
# Connection parameters Django passes to psycopg that only make sense for its own cursors.
_DJANGO_ONLY_PARAMS = ("context", "cursor_factory", "prepare_threshold", "server_side_binding", "pool")


class _Listener:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        queues: frozenset[str],
        wake: Callable[[], None],
        cancel: Callable[[str], object],
    ) -> None:
        self.loop = loop
        self.queues = queues
        self.wake = wake
        self.cancel = cancel


_lock = threading.Lock()
_listeners: weakref.WeakKeyDictionary[object, _Listener] = weakref.WeakKeyDictionary()


def listen(
    owner: object, queues: Iterable[str], wake: Callable[[], None], cancel: Callable[[str], object]
) -> None:
    """On the running loop, call ``wake`` when a task is added to one of ``queues``, and
    ``cancel(task_id)`` when a cancel is requested for a running task."""
    with _lock:
        _listeners[owner] = _Listener(asyncio.get_running_loop(), frozenset(queues), wake, cancel)


def unlisten(owner: object) -> None:
    with _lock:
        _listeners.pop(owner, None)


def notify(queues: Iterable[str]) -> None:
    """Tell local workers serving any of ``queues`` that tasks were added."""
    added = set(queues)
    for listener in _snapshot():
        if listener.queues & added:
            _call(listener.loop, listener.wake)


def notify_cancel(task_id: str) -> None:
    """Tell local workers that ``task_id`` should be cancelled if it runs there."""
    for listener in _snapshot():
        _call(listener.loop, listener.cancel, task_id)


def _snapshot() -> list[_Listener]:
    with _lock:
        return list(_listeners.values())


def _call(loop: asyncio.AbstractEventLoop, func: Callable[..., object], *args: object) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        func(*args)
    elif not loop.is_closed():
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(func, *args)


def notify_processes(queues: Iterable[str]) -> None:
    """Tell workers in other processes that tasks were added to ``queues``; call after the commit.

    PostgreSQL: a NOTIFY from the notifier's thread (this call only hands the names over);
    elsewhere the channel layer, if one crosses processes, else the SQLite doorbell. Never raises
    for a failed send.
    """
    if connections["default"].vendor == "postgresql":
        NOTIFIER.send(queues)
    else:
        broadcast(queues=queues)


class _ReconnectingListener:
    """One asyncio task that listens for wake-ups and cancels, and reconnects with backoff.

    Subclasses implement ``_session``: connect, subscribe, call ``ready()``, then deliver
    messages until the connection fails (raise) or listening has no purpose (return). After a
    reconnect the worker is woken once, since messages sent meanwhile are lost.
    """

    def __init__(
        self,
        name: str,
        queues: Iterable[str],
        wake: Callable[[], None],
        cancel: Callable[[str], object],
    ) -> None:
        self._name = name
        self._queues = frozenset(queues)
        self._wake = wake
        self._cancel = cancel
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"atw-listen-{self._name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _session(self, ready: Callable[[], None]) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        delay = RECONNECT_DELAY
        lost = False

        def ready() -> None:
            nonlocal delay
            if lost:
                logger.info("wake-up listener reconnected worker=%s", self._name)
                self._wake()  # messages sent while disconnected are lost
            delay = RECONNECT_DELAY
            self.connected.set()

        while True:
            try:
                await self._session(ready)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                lost = True
                self.connected.clear()
                logger.warning(
                    "wake-up listener lost its connection (%s); polling meanwhile, retrying in %.1fs",
                    brief(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)


class PostgresListener(_ReconnectingListener):
    """LISTEN for added tasks and cancel requests on a dedicated psycopg async connection.

    ``wake`` is called when tasks were added to one of ``queues`` (by any process, on commit),
    ``cancel(task_id)`` when a cancel was requested.
    """

    def __init__(
        self,
        name: str,
        queues: Iterable[str],
        wake: Callable[[], None],
        cancel: Callable[[str], object],
        alias: str = "default",
    ) -> None:
        super().__init__(name, queues, wake, cancel)
        self._alias = alias

    @staticmethod
    def available(alias: str = "default") -> bool:
        """True when the database is PostgreSQL (and psycopg 3 is importable)."""
        if connections[alias].vendor != "postgresql":
            return False
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return False
        return True

    def _params(self) -> dict[str, Any]:
        params = dict(connections[self._alias].get_connection_params())
        for name in _DJANGO_ONLY_PARAMS:
            params.pop(name, None)
        return params

    async def _session(self, ready: Callable[[], None]) -> None:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(**self._params(), autocommit=True)
        async with conn:
            await conn.execute(f"LISTEN {TASK_ADDED_CHANNEL}")
            await conn.execute(f"LISTEN {CANCEL_CHANNEL}")
            ready()
            async for note in conn.notifies():
                if note.channel == TASK_ADDED_CHANNEL:
                    if note.payload in self._queues:
                        self._wake()
                elif note.channel == CANCEL_CHANNEL:
                    self._cancel(note.payload)
        raise ConnectionError("the LISTEN connection closed")


def remote_layer() -> Any:
    """Return the default channel layer if it reaches other processes and the database is not
    PostgreSQL (which wakes them with NOTIFY); else None."""
    if connections["default"].vendor == "postgresql":
        return None
    try:
        from channels.layers import InMemoryChannelLayer, get_channel_layer
    except ImportError:
        return None
    layer = get_channel_layer()
    if layer is None or isinstance(layer, InMemoryChannelLayer):
        return None
    return layer


async def abroadcast(*, queues: Iterable[str] = (), cancel: str | None = None) -> None:
    """Tell workers in other processes, over the channel layer, about added tasks or a cancel.

    Where ``remote_layer`` is None, rings the doorbell instead (SQLite; nothing on PostgreSQL,
    whose statements NOTIFY). Never raises: the task is stored already and the workers'
    polling finds it; a failure is logged.
    """
    layer = remote_layer()
    if layer is None:
        doorbell.ring(queues=queues, cancel=cancel)  # SQLite without a layer: same machine
        return
    if cancel is not None:
        message: dict[str, Any] = {"type": CANCEL_REQUESTED, "task_id": cancel}
    else:
        message = {"type": TASKS_ADDED, "queues": sorted(set(queues))}
        if not message["queues"]:
            return
    try:
        async with asyncio.timeout(BROADCAST_TIMEOUT):
            await layer.group_send(WAKEUP_GROUP, message)
    except Exception as exc:
        logger.warning("could not send a wake-up over the channel layer (%s); workers will poll", brief(exc))


def broadcast(*, queues: Iterable[str] = (), cancel: str | None = None) -> None:
    """Sync version of ``abroadcast`` (for ``enqueue`` and ``cancel_task`` in sync code)."""
    if remote_layer() is not None:
        async_to_sync(abroadcast)(queues=list(queues), cancel=cancel)
    else:
        doorbell.ring(queues=queues, cancel=cancel)


class ChannelLayerListener(_ReconnectingListener):
    """Receive wake-ups from the channel layer on the worker's loop (databases without NOTIFY).

    Joins ``WAKEUP_GROUP`` with a channel of its own; a failure (Redis restarting) rejoins.
    """

    async def _session(self, ready: Callable[[], None]) -> None:
        layer = remote_layer()
        if layer is None:
            return
        channel = await layer.new_channel()
        try:
            await layer.group_add(WAKEUP_GROUP, channel)
            ready()
            await self._receive(layer, channel)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(BROADCAST_TIMEOUT):
                    await layer.group_discard(WAKEUP_GROUP, channel)
            raise

    async def _receive(self, layer: Any, channel: str) -> None:
        loop = asyncio.get_running_loop()
        refresh_at = loop.time() + GROUP_REFRESH
        while True:
            try:
                async with asyncio.timeout(max(0.0, refresh_at - loop.time())):
                    message = await layer.receive(channel)
            except TimeoutError:
                await layer.group_add(WAKEUP_GROUP, channel)
                refresh_at = loop.time() + GROUP_REFRESH
                continue
            if message.get("type") == TASKS_ADDED:
                if self._queues.intersection(message.get("queues", ())):
                    self._wake()
            elif message.get("type") == CANCEL_REQUESTED:
                self._cancel(str(message.get("task_id")))


class DoorbellListener(_ReconnectingListener):
    """Receive rings on this worker's doorbell socket (SQLite without a channel layer).

    See ``doorbell``: processes on the same machine send a datagram per added batch or cancel.
    """

    def __init__(
        self,
        name: str,
        queues: Iterable[str],
        wake: Callable[[], None],
        cancel: Callable[[str], object],
        where: Path,
    ) -> None:
        super().__init__(name, queues, wake, cancel)
        self._where = where

    async def _session(self, ready: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        sock = doorbell.bind(self._where)
        closed = loop.create_future()
        try:
            loop.add_reader(sock.fileno(), self._read, sock)
            ready()
            await closed  # rings arrive through the reader until the worker stops
        finally:
            loop.remove_reader(sock.fileno())
            doorbell.unbind(sock)

    def _read(self, sock: socket.socket) -> None:
        woken = False
        while True:
            try:
                datagram = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            queues, cancels = doorbell.parse(datagram)
            woken = woken or bool(self._queues & queues)
            for task_id in cancels:
                self._cancel(task_id)
        if woken:
            self._wake()


# The cross-process listener a worker runs, by database and settings.
Listener = PostgresListener | ChannelLayerListener | DoorbellListener


def local_worker_count() -> int:
    """Return how many workers run in this process (the health endpoint reports it)."""
    return len(_snapshot())
