"""A minimal MQTT 3.1.1 publisher on asyncio streams, for load generation.

Field devices are small clients that publish; so is this. It encodes PUBLISH
packets itself and writes them in large chunks, so one Python process can
publish tens of thousands of QoS 1 messages per second, leaving the cores to the
broker, ingest and the database it is meant to load. At most ``window``
messages wait for their PUBACK at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Iterable
from contextlib import asynccontextmanager

from lykta.errors import LyktaError


class WireError(LyktaError):
    """The broker refused the connection or broke the protocol."""


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _string(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def connect_packet(
    client_id: str,
    keepalive: int = 60,
    will: tuple[str, bytes, int, bool] | None = None,
    login: tuple[str, str] | None = None,
) -> bytes:
    flags = 0x02  # clean session
    payload = _string(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _string(topic) + _string(message)
    if login is not None:
        flags |= 0xC0  # user name and password
        payload += _string(login[0]) + _string(login[1])
    body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: bytes, payload: bytes, qos: int, packet_id: int, retain: bool = False) -> bytes:
    """``topic`` is the length-prefixed topic (see :func:`_string`), cached by callers."""
    header = 0x30 | (qos << 1) | (1 if retain else 0)
    ident = struct.pack("!H", packet_id) if qos else b""
    return bytes([header]) + _remaining_length(len(topic) + len(ident) + len(payload)) + topic + ident + payload


class Publisher:
    """One connection publishing at QoS 0 or 1 with a bounded window of unacknowledged messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, window: int) -> None:
        self._reader = reader
        self._writer = writer
        self._window = min(window, 60_000)
        self._outstanding: set[int] = set()
        self._room = asyncio.Event()
        self._room.set()
        self._next_id = 1
        self._buffer = bytearray()
        self._topics: dict[str, bytes] = {}
        self.acked = 0
        self._acks = asyncio.create_task(self._read_acks())

    async def _read_acks(self) -> None:
        reader = self._reader
        while True:
            head = await reader.readexactly(2)
            kind, length = head[0], head[1]
            if length & 0x80:
                multiplier, length = 128, length & 0x7F
                while True:
                    byte = (await reader.readexactly(1))[0]
                    length += (byte & 0x7F) * multiplier
                    multiplier *= 128
                    if not byte & 0x80:
                        break
            body = await reader.readexactly(length) if length else b""
            if kind >> 4 == 4:  # PUBACK
                packet_id = struct.unpack("!H", body[:2])[0]
                if packet_id in self._outstanding:
                    self._outstanding.discard(packet_id)
                    self.acked += 1
                    if len(self._outstanding) < self._window:
                        self._room.set()

    def _topic(self, topic: str) -> bytes:
        cached = self._topics.get(topic)
        if cached is None:
            cached = self._topics[topic] = _string(topic)
        return cached

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if qos:
            while len(self._outstanding) >= self._window:
                await self._flush()
                self._room.clear()
                await self._wait_for(self._room.wait())
            packet_id = self._next_id
            while packet_id in self._outstanding:
                packet_id = packet_id % 65535 + 1
            self._next_id = packet_id % 65535 + 1
            self._outstanding.add(packet_id)
        else:
            packet_id = 0
        self._buffer += publish_packet(self._topic(topic), payload, qos, packet_id, retain)
        if len(self._buffer) >= 256 * 1024:
            await self._flush()

    async def flush(self) -> None:
        """Send what is buffered now (publish() buffers up to 256 KiB)."""
        await self._flush()

    async def _flush(self) -> None:
        if self._buffer:
            self._writer.write(bytes(self._buffer))
            self._buffer.clear()
        await self._wait_for(self._writer.drain())

    async def _wait_for(self, awaitable: Awaitable[object]) -> None:
        waiter = asyncio.ensure_future(awaitable)
        await asyncio.wait({waiter, self._acks}, return_when=asyncio.FIRST_COMPLETED)
        if self._acks.done():
            waiter.cancel()
            exc = self._acks.exception()
            raise WireError(f"the broker closed the connection: {exc!r}")

    async def settle(self) -> None:
        """Send what is buffered and wait until every QoS 1 message is acknowledged."""
        await self._flush()
        while self._outstanding:
            self._room.clear()
            if len(self._outstanding) < self._window:
                await asyncio.sleep(0.005)
            else:
                await self._wait_for(self._room.wait())

    def abort(self) -> None:
        """Cut the connection without DISCONNECT, as a device losing its link does: the broker sends the Will."""
        self._acks.cancel()
        self._writer.transport.abort()

    async def close(self) -> None:
        await self.settle()
        self._writer.write(b"\xe0\x00")  # DISCONNECT
        await self._writer.drain()
        self._acks.cancel()
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


_REFUSALS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


async def connect(
    host: str,
    port: int,
    client_id: str,
    window: int = 20_000,
    will: tuple[str, bytes, int, bool] | None = None,
    *,
    login: tuple[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> Publisher:
    """Connect (over TLS when ``tls`` is given, with a user name and password when ``login`` is)."""
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        writer.write(connect_packet(client_id, will=will, login=login))
        await writer.drain()
        connack = await reader.readexactly(4)
    except (OSError, asyncio.IncompleteReadError) as exc:  # ssl.SSLError is an OSError
        raise WireError(f"cannot publish to the MQTT broker at {host}:{port}: {exc}") from exc
    if connack[0] != 0x20 or connack[3] != 0:
        writer.close()
        reason = _REFUSALS.get(connack[3], "refused")
        raise WireError(f"the broker refused {client_id!r}: CONNACK return code {connack[3]} ({reason})")
    return Publisher(reader, writer, window)


@asynccontextmanager
async def connection(
    host: str,
    port: int,
    client_id: str,
    window: int = 20_000,
    will: tuple[str, bytes, int, bool] | None = None,
    *,
    login: tuple[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[Publisher]:
    publisher = await connect(host, port, client_id, window, will, login=login, tls=tls)
    try:
        yield publisher
    finally:
        await publisher.close()


async def publish_all(
    host: str, port: int, client_id: str, messages: Iterable[tuple[str, bytes]], *, qos: int = 1, window: int = 20_000
) -> int:
    count = 0
    async with connection(host, port, client_id, window) as pub:
        for topic, payload in messages:
            await pub.publish(topic, payload, qos)
            count += 1
    return count
