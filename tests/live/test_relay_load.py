"""A web server with the in-memory layer keeps answering while its relay publishes a bulk enqueue
made by another process.

The relay of a real Daphne process (the example project, its in-memory layer) publishes the
10,000 tasks another process adds in one ``enqueue_many``, while sockets watch other tasks (so
the layer holds thousands of groups, as busy pages do). HTTP
requests keep answering throughout: each within a hang guard of a few seconds, none failing.
The figures (p50/p99) come from ``benchmarks/relay_http.py``; this only guards against a freeze.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest
from asgiref.sync import sync_to_async

from tests.helpers.processes import ROOT
from tests.live.conftest import SOCKET_PATH
from tests.live.example_server import server_env
from tests.live.rawsocket import RawSocket
from tests.live.test_servers import http

pytestmark = pytest.mark.django_db(transaction=True)

BULK = 10_000
WATCHED = 2_000  # tasks the sockets watch, each its own group in the layer
HANG_GUARD = 2.0  # seconds one HTTP request may take: a freeze fails it, a slow machine does not

BULK_ENQUEUE = """
import django
django.setup()
import django_atw
django_atw.enqueue_many("demo.count", [{"n": 1}] * %d, queue="parked")
print("enqueued", flush=True)
"""


def timed_get(url: str) -> tuple[float, int, bytes]:
    started = time.monotonic()
    status, body = http("GET", url)
    return time.monotonic() - started, status, body


async def test_http_keeps_answering_while_the_relay_publishes_a_bulk_enqueue_from_elsewhere(example_server):
    port, setup = await example_server(WATCHED)
    cookie = {"Cookie": f"sessionid={setup['session']}"}
    sockets = [await RawSocket.open(port, SOCKET_PATH, cookie) for _ in range(WATCHED // 1000)]
    try:
        ids = setup["ids"]
        for index, sock in enumerate(sockets):
            mine = ids[index * 1000 : (index + 1) * 1000]
            for start in range(0, len(mine), 200):
                sock.send_json({"action": "subscribe", "tasks": mine[start : start + 200]})
                assert (await sock.receive_json())["type"] == "snapshot"

        enqueue = await asyncio.create_subprocess_exec(
            sys.executable, "-c", BULK_ENQUEUE % BULK, cwd=ROOT, env=server_env(), stdout=subprocess.PIPE
        )
        assert enqueue.stdout is not None
        async with asyncio.timeout(120):
            assert await enqueue.stdout.readline() == b"enqueued\n"
        await enqueue.wait()

        # Until the relay has published the whole batch, every request answers within the guard.
        async with asyncio.timeout(120):
            while True:
                took, status, body = await sync_to_async(timed_get)(f"http://127.0.0.1:{port}/test-relayed/")
                assert took < HANG_GUARD, f"a request took {took:.1f}s while the relay worked"
                assert status == 200, (status, body)
                if json.loads(body)["relayed"] >= BULK:
                    break
    finally:
        for sock in sockets:
            await sock.close()
