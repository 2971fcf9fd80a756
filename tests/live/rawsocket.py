"""A minimal WebSocket client over asyncio streams, for tests against a real server.

No WebSocket library is a dependency, and the tests need frames no well-behaved library sends
(binary, oversized, cut off): this speaks just enough RFC 6455 for them. Client frames are
masked; server frames are read unfragmented (the server under test never fragments).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
from typing import Any

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class Refused(Exception):
    """The server answered the handshake with an HTTP status, not 101."""

    def __init__(self, status: int) -> None:
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status


class Closed(Exception):
    """The server closed the socket (``code`` from its close frame, 1006 without one)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"closed with code {code}")
        self.code = code


class RawSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, path: str, headers: dict[str, str] | None = None) -> RawSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Origin: http://127.0.0.1:{port}",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            writer.close()
            raise Refused(status)
        return cls(reader, writer)

    def send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.writer.write(header + mask + masked)

    def send_text(self, text: str) -> None:
        self.send_frame(TEXT, text.encode())

    def send_json(self, value: Any) -> None:
        self.send_text(json.dumps(value))

    async def receive(self) -> tuple[int, bytes]:
        """The next data frame as (opcode, payload); answers pings; raises Closed at a close."""
        while True:
            try:
                first, second = await self.reader.readexactly(2)
                size = second & 0x7F
                if size == 126:
                    (size,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif size == 127:
                    (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
                payload = await self.reader.readexactly(size)
            except (asyncio.IncompleteReadError, ConnectionError):
                raise Closed(1006) from None
            opcode = first & 0x0F
            if opcode == CLOSE:
                raise Closed(struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005)
            if opcode == PING:
                self.send_frame(PONG, payload)
                continue
            if opcode != PONG:
                return opcode, payload

    async def receive_json(self, timeout: float = 10) -> Any:
        async with asyncio.timeout(timeout):
            opcode, payload = await self.receive()
        assert opcode == TEXT, (opcode, payload[:200])
        return json.loads(payload)

    async def close_code(self, timeout: float = 10) -> int:
        """Read until the server closes; return its close code."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await self.receive()
                except Closed as closed:
                    return closed.code

    async def close(self) -> None:
        if not self.writer.is_closing():
            with contextlib.suppress(ConnectionError):
                self.send_frame(CLOSE, struct.pack("!H", 1000))
                await self.writer.drain()
            self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
