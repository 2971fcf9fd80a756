"""A real Daphne process takes bad frames, oversized frames, too many subscriptions and
connection churn on its task socket, and keeps answering HTTP and new sockets afterwards."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from django_atw.realtime import protocol
from tests.live.conftest import SOCKET_PATH
from tests.live.rawsocket import BINARY, TEXT, RawSocket
from tests.live.test_servers import http

pytestmark = pytest.mark.django_db(transaction=True)

BAD_FRAMES: list[tuple[int, bytes]] = [
    (TEXT, b"not json"),
    (TEXT, b"{"),
    (BINARY, b"\x00\x01binary"),
    (BINARY, json.dumps({"action": "subscribe", "list": True}).encode()),
    (TEXT, b"null"),
    (TEXT, b'"subscribe"'),
    (TEXT, b"[]"),
    (TEXT, b"{}"),
    (TEXT, b'{"action": 5}'),
    (TEXT, b'{"action": "subscribe", "tasks": "abc"}'),
    (TEXT, b'{"action": "subscribe", "tasks": [1, 2]}'),
    (TEXT, b'{"action": "subscribe", "tasks": [""]}'),
    (TEXT, b'{"action": "subscribe", "list": {"limit": "9"}}'),
    (TEXT, b'{"action": "subscribe", "list": {"bogus": 1}}'),
    (TEXT, b'{"action": "unsubscribe", "list": false}'),
    (TEXT, b'{"action": "cancel", "task": null}'),
    (TEXT, b'{"action": "cancel", "task": {"id": "x"}}'),
    (TEXT, b"[" * 50_000 + b"]" * 50_000),  # nesting deeper than json's recursion allows
    (TEXT, b'{"action": "subscribe", "tasks": ["x"], "ref": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"),
]


async def still_serving(port: int, cookie: dict[str, str], task_id: str) -> None:
    """HTTP answers, and a fresh socket subscribes and gets its snapshot."""
    status, _ = await sync_to_async(http)("GET", f"http://127.0.0.1:{port}/test-relayed/")
    assert status == 200
    sock = await RawSocket.open(port, SOCKET_PATH, cookie)
    sock.send_json({"action": "subscribe", "tasks": [task_id]})
    reply = await sock.receive_json()
    assert (reply["type"], [t["id"] for t in reply["tasks"]]) == ("snapshot", [task_id])
    await sock.close()


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(example_server):
    port, setup = await example_server(1)
    cookie = {"Cookie": f"sessionid={setup['session']}"}
    sock = await RawSocket.open(port, SOCKET_PATH, cookie)
    for opcode, payload in BAD_FRAMES:
        sock.send_frame(opcode, payload)
        reply: dict[str, Any] = await sock.receive_json()
        assert reply["type"] == "error", (payload[:60], reply)
    sock.send_json({"action": "subscribe", "tasks": setup["ids"]})
    assert (await sock.receive_json())["type"] == "snapshot"
    await sock.close()
    await still_serving(port, cookie, setup["ids"][0])


@pytest.mark.parametrize(
    "payload",
    [
        json.dumps({"action": "subscribe", "tasks": ["x" * (2 << 20)]}).encode(),  # over Daphne's 1 MiB
        b"\xff\xfe",  # a text frame that is not UTF-8
    ],
    ids=["oversized", "not-utf-8"],
)
async def test_a_frame_the_websocket_protocol_refuses_closes_only_its_socket(example_server, payload):
    port, setup = await example_server(1)
    cookie = {"Cookie": f"sessionid={setup['session']}"}
    sock = await RawSocket.open(port, SOCKET_PATH, cookie)
    sock.send_frame(TEXT, payload)
    # Daphne fails the connection (1009 too big, 1007 bad data); the client may see only the
    # dropped connection (1006) when the server closes while the frame is still arriving.
    assert await sock.close_code() in {1006, 1007, 1009}
    await sock.close()
    await still_serving(port, cookie, setup["ids"][0])


async def test_the_subscription_cap_holds_on_a_real_server(example_server):
    port, setup = await example_server(protocol.MAX_SUBSCRIPTIONS + 1)
    cookie = {"Cookie": f"sessionid={setup['session']}"}
    ids = setup["ids"]
    sock = await RawSocket.open(port, SOCKET_PATH, cookie)
    for start in range(0, protocol.MAX_SUBSCRIPTIONS, protocol.MAX_TASKS_PER_REQUEST):
        sock.send_json({"action": "subscribe", "tasks": ids[start : start + protocol.MAX_TASKS_PER_REQUEST]})
        assert (await sock.receive_json())["type"] == "snapshot"
    sock.send_json({"action": "subscribe", "tasks": ids[-1:]})
    refused = await sock.receive_json()
    assert (refused["type"], refused["code"]) == ("error", "too_many_subscriptions")
    # Still open: making room lets the last one in.
    sock.send_json({"action": "unsubscribe", "tasks": ids[:1]})
    sock.send_json({"action": "subscribe", "tasks": ids[-1:]})
    assert (await sock.receive_json())["type"] == "snapshot"
    await sock.close()
    await still_serving(port, cookie, ids[0])


async def test_connection_churn_leaves_the_server_answering(example_server):
    port, setup = await example_server(1)
    cookie = {"Cookie": f"sessionid={setup['session']}"}
    task_id = setup["ids"][0]

    async def one(n: int) -> None:
        sock = await RawSocket.open(port, SOCKET_PATH, cookie if n % 4 else {})
        if n % 4 == 0:  # anonymous: accepted, then closed with 4401
            assert await sock.close_code() == protocol.CLOSE_ANONYMOUS
        elif n % 4 == 1:  # subscribes, then vanishes without a close frame
            sock.send_json(
                {"action": "subscribe", "tasks": [task_id], "list": None}
                if n % 8 == 1
                else {"action": "subscribe", "list": True}
            )
            sock.writer.close()
            return
        elif n % 4 == 2:
            sock.send_json({"action": "subscribe", "tasks": [task_id]})
            assert (await sock.receive_json())["type"] in {"snapshot", "error"}
        await sock.close()

    # 400 sockets, 20 at a time. Not wider: Daphne aborts (a TCP reset) any handshake that has
    # not finished within 5 s, and the handshakes share one database thread; 50 at a time on a
    # loaded 2-core CI machine crossed that once. Churn, not a handshake stampede, is the test.
    for start in range(0, 400, 20):
        await asyncio.gather(*(one(n) for n in range(start, start + 20)))
    # A few that give up halfway through the handshake.
    for _ in range(20):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {SOCKET_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n".encode())
        writer.close()
    await still_serving(port, cookie, task_id)
