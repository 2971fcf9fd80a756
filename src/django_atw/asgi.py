"""Run the worker inside the ASGI server: one wrapper for ``asgi.py``, the same under every server.

``with_worker(app)`` answers the ASGI lifespan protocol: at ``lifespan.startup`` it starts
the process's embedded engine (a worker when ``ATW["EMBEDDED_WORKER"]``, and the event relay
when a channel layer is configured); at ``lifespan.shutdown`` it stops it, giving running
tasks ``ATW["SHUTDOWN_TIMEOUT"]`` seconds before returning them to pending.

uvicorn and hypercorn send lifespan events. Daphne (also behind ``manage.py runserver``) sends
none, so under Daphne the wrapper sends itself the same events from Twisted's reactor: startup
once the reactor runs, shutdown from a "before shutdown" trigger, which Twisted awaits on
SIGTERM/SIGINT. Servers that do neither start the engine at the first connection.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from . import exit_release
from .conf import get_settings

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Any
Send = Any


class EmbeddedEngine:
    """The worker and relay of one server process; starting twice on one loop does nothing."""

    def __init__(self) -> None:
        self.worker: Any = None
        self.relay: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def started(self) -> bool:
        return self._loop is not None

    async def start(self, via: str) -> bool:
        """Start the worker and relay on the running loop; return False if already started."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return False
        self._loop = loop
        from .engine.worker import AsyncTaskWorker
        from .realtime.layer import get_layer
        from .realtime.relay import Relay

        conf = get_settings()
        try:
            if conf.EMBEDDED_WORKER:
                self.worker = AsyncTaskWorker.from_settings()
                await self.worker.start()
            layer = get_layer()
            if layer is not None and conf.RELAY_INTERVAL is not None:
                self.relay = Relay(layer, conf.RELAY_INTERVAL)
                self.relay.start()
        except BaseException:
            await self.stop(via)
            raise
        logger.info(
            "embedded engine started via %s: worker %s, relay %s",
            via,
            self.worker.worker_id if self.worker is not None else "off (EMBEDDED_WORKER is False)",
            "on" if self.relay is not None else "off",
        )
        return True

    async def stop(self, via: str) -> None:
        """Stop the worker (running tasks get the grace period) and the relay."""
        if self._loop is None:
            return
        worker, relay = self.worker, self.relay
        self.worker = self.relay = None
        self._loop = None
        if worker is not None:
            await worker.stop(timeout=get_settings().SHUTDOWN_TIMEOUT)
        if relay is not None:
            await relay.stop()
        logger.info("embedded engine stopped via %s", via)


engine = EmbeddedEngine()


class WithWorker:
    """ASGI wrapper that runs ``engine`` for as long as the server runs; see the module doc."""

    def __init__(self, app: Any, embedded: EmbeddedEngine | None = None) -> None:
        self.app = app
        self.engine = embedded if embedded is not None else engine
        self.lifespan_seen = False
        self._emulated: _EmulatedLifespan | None = None
        _schedule_under_daphne(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if not self.lifespan_seen and not self.engine.started:
            # A server that sends no lifespan events and is not Daphne: start at first use.
            await self.engine.start(f"first {scope['type']} connection")
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.lifespan_seen = True
                try:
                    await self.engine.start("lifespan")
                except Exception as exc:
                    logger.exception("embedded engine failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.engine.stop("lifespan")
                except Exception as exc:
                    logger.exception("embedded engine failed to stop cleanly")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- Daphne: lifespan sent from the reactor ---

    def _reactor_started(self) -> None:
        if self.lifespan_seen:
            return
        self._emulated = _EmulatedLifespan(self)
        self._emulated.start()

    def _reactor_stopping(self) -> Any:
        if self._emulated is None:
            return None
        from twisted.internet import defer

        return defer.Deferred.fromFuture(asyncio.ensure_future(self._emulated.shutdown()))


class _EmulatedLifespan:
    """Drive an app's lifespan protocol the way uvicorn does, for a server that does not."""

    def __init__(self, app: WithWorker) -> None:
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.ensure_future(app(scope, self._inbox.get, self._outbox.put))
        self._startup: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._startup = asyncio.ensure_future(self.startup())

    async def startup(self) -> None:
        await self._inbox.put({"type": "lifespan.startup"})
        reply = await self._outbox.get()
        if reply["type"] != "lifespan.startup.complete":
            logger.error("application startup failed under Daphne: %s", reply.get("message", ""))

    async def shutdown(self) -> None:
        if self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._outbox.get()
        await self._task


def _schedule_under_daphne(app: WithWorker) -> None:
    """Under Daphne, send the lifespan events from the reactor's start and shutdown.

    Only if Daphne's asyncio reactor is installed and not yet running (Daphne imports the
    application before it runs the reactor). Importing ``twisted.internet.reactor`` here
    would install Twisted's default reactor instead, so it is only looked up.
    """
    reactor: Any = sys.modules.get("twisted.internet.reactor")
    if reactor is None or getattr(reactor, "running", False) or not _is_asyncio_reactor(reactor):
        return

    def started() -> None:
        # callWhenRunning fires just before the asyncio loop runs: start from inside it.
        reactor.callLater(0, app._reactor_started)

    reactor.callWhenRunning(started)
    reactor.addSystemEventTrigger("before", "shutdown", app._reactor_stopping)
    exit_release.register(app.engine)


def _is_asyncio_reactor(reactor: object) -> bool:
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    return isinstance(reactor, AsyncioSelectorReactor)


def with_worker(app: Any) -> WithWorker:
    """Wrap an ASGI application so that the server process runs a worker (see the module doc)."""
    return WithWorker(app)


def websocket_application() -> Any:
    """The WebSocket side of live progress: ``/ws/atw/tasks/`` with sessions, auth and origin checks."""
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter
    from channels.security.websocket import AllowedHostsOriginValidator

    from .realtime.routing import websocket_urlpatterns

    return AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
