"""WebSockets (RFC 6455) on the HTTP address: the handshake and the framing, for gRPC-web calls that stream.

Browsers open at most six HTTP/1.1 connections to a host, and a streaming call holds one for as long as it
lasts; WebSockets are counted apart (docs/grpc-web.md). Only what a server needs is here: masked client frames,
fragments, ping, pong and close, unmasked binary messages out, and a bound on every message before it is read.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import struct
from collections.abc import AsyncIterator

# RFC 6455 section 1.3: the key's accept value is sha1(key + GUID), in base64.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
NORMAL_CLOSURE, PROTOCOL_ERROR, MESSAGE_TOO_BIG = 1000, 1002, 1009
# Control frames carry at most 125 bytes (section 5.5).
MAX_CONTROL_PAYLOAD = 125
# How long a closing server waits for the client's close frame before it closes the connection anyway.
CLOSE_TIMEOUT = 2.0


def accept_key(key: str) -> str | None:
    """The Sec-WebSocket-Accept answer to a Sec-WebSocket-Key, or None if the key is not 16 bytes in base64."""
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        valid = False
    if not valid:
        return None
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


class Closed(Exception):
    """The client closed the WebSocket, or broke the protocol and was sent a close frame."""


class MessageTooBig(Exception):
    """A client message over the bound of the `receive` that met it; its payload was not read."""


class WebSocket:
    """The server's end of a WebSocket, once the handshake was answered."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._closing = False

    async def receive(self, limit: int, timeout: float) -> bytes:
        """The next message (text or binary), whole; answers pings on the way.

        Raises MessageTooBig before reading a message of more than `limit` bytes, Closed when the client closes.
        """
        return await asyncio.wait_for(self._receive(limit), timeout)

    async def send(self, message: bytes) -> None:
        """Sends one binary message."""
        self._write(BINARY, message)
        await self._writer.drain()

    async def send_all(self, messages: AsyncIterator[bytes]) -> bool:
        """Sends each message as it comes; returns False, having stopped early, if the client closed first."""
        sending = asyncio.ensure_future(self._send_each(messages))
        watching = asyncio.ensure_future(self._until_closed())
        try:
            await asyncio.wait((sending, watching), return_when=asyncio.FIRST_COMPLETED)
            if not sending.done():
                return False
            await sending
            return True
        finally:
            for task in (sending, watching):
                task.cancel()
            await asyncio.gather(sending, watching, return_exceptions=True)

    async def close(self, code: int, reason: str = "") -> None:
        """Sends a close frame, then waits briefly for the client's (section 7.1.1: the server closes TCP first)."""
        if not self._closing:
            self._closing = True
            self._write(CLOSE, struct.pack(">H", code) + reason.encode()[: MAX_CONTROL_PAYLOAD - 2])
            await self._writer.drain()
        with contextlib.suppress(Closed, MessageTooBig, TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            while True:
                await self.receive(0, CLOSE_TIMEOUT)

    async def _send_each(self, messages: AsyncIterator[bytes]) -> None:
        async for message in messages:
            await self.send(message)

    async def _until_closed(self) -> None:
        """Reads until the client closes: after its request, a client has nothing more to say."""
        with contextlib.suppress(Closed, MessageTooBig, ConnectionError, asyncio.IncompleteReadError):
            await self._receive(0)

    async def _receive(self, limit: int) -> bytes:
        message = bytearray()
        kind = None  # the opcode of the message being gathered from fragments
        while True:
            head = await self._reader.readexactly(2)
            final, opcode, masked, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", await self._reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack(">Q", await self._reader.readexactly(8))
            if head[0] & 0x70 or not masked:
                await self._refuse("frames from a client are masked and use no extensions")
            if opcode >= CLOSE:
                if not final or length > MAX_CONTROL_PAYLOAD:
                    await self._refuse("control frames are single and at most 125 bytes")
                payload = await self._payload(length)
                if opcode == CLOSE:
                    await self._answer_close(payload)
                    raise Closed
                if opcode == PING:
                    self._write(PONG, payload)
                    await self._writer.drain()
                elif opcode != PONG:
                    await self._refuse(f"unknown control opcode {opcode:#x}")
                continue
            if opcode not in (CONTINUATION, TEXT, BINARY) or (opcode == CONTINUATION) != (kind is not None):
                await self._refuse(f"unexpected opcode {opcode:#x}")
            kind = kind if kind is not None else opcode
            if len(message) + length > limit:
                raise MessageTooBig(f"the message is over {limit} bytes")
            message += await self._payload(length)
            if final:
                return bytes(message)

    async def _payload(self, length: int) -> bytes:
        mask = await self._reader.readexactly(4)
        data = await self._reader.readexactly(length)
        # Unmasking byte by byte would cost a second per megabyte; as one big integer it is one XOR.
        repeated = (mask * (length // 4 + 1))[:length]
        return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")

    async def _answer_close(self, payload: bytes) -> None:
        if not self._closing:
            self._closing = True
            self._write(CLOSE, payload[:2])
            await self._writer.drain()

    async def _refuse(self, reason: str) -> None:
        """Closes with a protocol error; the message is not read any further."""
        if not self._closing:
            self._closing = True
            self._write(CLOSE, struct.pack(">H", PROTOCOL_ERROR) + reason.encode()[: MAX_CONTROL_PAYLOAD - 2])
            await self._writer.drain()
        raise Closed

    def _write(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            head = struct.pack(">BB", 0x80 | opcode, length)
        elif length < 1 << 16:
            head = struct.pack(">BBH", 0x80 | opcode, 126, length)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 127, length)
        self._writer.write(head + payload)
