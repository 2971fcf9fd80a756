"""``with_worker``'s lifespan handling, driven in process with ApplicationCommunicator."""

from __future__ import annotations

import pytest
from channels.testing import ApplicationCommunicator
from django.test import override_settings

from django_atw.asgi import EmbeddedEngine, WithWorker
from tests.live.conftest import IN_MEMORY

pytestmark = pytest.mark.django_db(transaction=True)

LIFESPAN = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}


async def inner_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def startup(app) -> ApplicationCommunicator:
    comm = ApplicationCommunicator(app, dict(LIFESPAN))
    await comm.send_input({"type": "lifespan.startup"})
    assert await comm.receive_output(timeout=10) == {"type": "lifespan.startup.complete"}
    return comm


async def shutdown(comm: ApplicationCommunicator) -> None:
    await comm.send_input({"type": "lifespan.shutdown"})
    assert await comm.receive_output(timeout=10) == {"type": "lifespan.shutdown.complete"}
    await comm.wait()


async def test_startup_runs_the_worker_once_and_shutdown_stops_it():
    engine = EmbeddedEngine()
    first = await startup(WithWorker(inner_app, engine))
    worker = engine.worker
    assert worker is not None and worker.running
    # A second wrapper (or a second startup) on the same loop keeps the running engine.
    second = await startup(WithWorker(inner_app, engine))
    assert engine.worker is worker
    await shutdown(first)
    assert not worker.running and engine.worker is None
    await shutdown(second)


async def test_embedded_worker_false_runs_only_the_relay():
    engine = EmbeddedEngine()
    with override_settings(ATW={"EMBEDDED_WORKER": False}, CHANNEL_LAYERS=IN_MEMORY):
        comm = await startup(WithWorker(inner_app, engine))
        assert engine.worker is None and engine.relay is not None
        await shutdown(comm)
    assert engine.relay is None


async def test_without_lifespan_the_first_request_starts_the_engine():
    engine = EmbeddedEngine()
    app = WithWorker(inner_app, engine)
    comm = ApplicationCommunicator(app, {"type": "http", "method": "GET", "path": "/", "headers": []})
    await comm.send_input({"type": "http.request", "body": b""})
    assert (await comm.receive_output(timeout=10))["status"] == 204
    assert engine.worker is not None and engine.worker.running
    await engine.stop("test")
    assert engine.worker is None
