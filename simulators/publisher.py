"""An MQTT v5 publisher on asyncio streams, for simulated devices and load generation.

Field devices are small clients that publish; so is this. It writes PUBLISH packets (encoded by the one MQTT
codec, :mod:`floor.mqtt_wire`) in large chunks, so one Python process can publish tens of thousands of QoS 1
messages per second, leaving the cores to the broker, ingest and the database it is meant to load. At most
``window`` messages (and never more than the broker's Receive Maximum) wait for their PUBACK at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from floor import mqtt_wire as wire
from floor.errors import LyktaError

_READ_CHUNK = 64 * 1024


class WireError(LyktaError):
    """The broker refused the connection or broke the protocol."""


Will = wire.Will


class Publisher:
    """One connection publishing at QoS 0 or 1 with a bounded window of unacknowledged messages."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, window: int, connack: wire.Connack
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._window = max(1, min(window, 60_000, connack.receive_maximum))
        self._max_packet = connack.maximum_packet_size or wire.MAX_VARINT
        self._outstanding: set[int] = set()
        self._room = asyncio.Event()
        self._room.set()
        self._next_id = 1
        self._buffer = bytearray()
        self._topics: dict[str, bytes] = {}
        self.acked = 0
        self.refused: dict[int, int] = {}
        """PUBACK reason codes of 0x80 and above (the broker did not take the message), and how often."""
        self._acks = asyncio.create_task(self._read_acks())

    async def _read_acks(self) -> None:
        reader = self._reader
        buf = bytearray()
        while True:
            chunk = await reader.read(_READ_CHUNK)
            if not chunk:
                raise WireError("the broker closed the connection")
            buf += chunk
            pos, end = 0, len(buf)
            while (framed := wire.frame(buf, pos, end)) is not None:
                start, stop = framed
                kind = buf[pos] >> 4
                if kind == wire.PUBACK:
                    packet_id, reason = wire.parse_ack(buf[start:stop])
                    if reason >= 0x80:
                        self.refused[reason] = self.refused.get(reason, 0) + 1
                    if packet_id in self._outstanding:
                        self._outstanding.discard(packet_id)
                        self.acked += 1
                        if len(self._outstanding) < self._window:
                            self._room.set()
                elif kind == wire.DISCONNECT:
                    reason, why = wire.parse_disconnect(buf[start:stop])
                    raise WireError(
                        f"the broker disconnected: {wire.reason_text(reason)}" + (f" ({why})" if why else "")
                    )
                pos = stop
            del buf[:pos]

    def _topic(self, topic: str) -> bytes:
        cached = self._topics.get(topic)
        if cached is None:
            cached = self._topics[topic] = wire.string(topic)
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
        else:
            packet_id = 0
        data = wire.publish_packet(self._topic(topic), payload, qos, packet_id, retain)
        if len(data) > self._max_packet:
            raise WireError(f"a message of {len(data)} bytes is larger than the broker accepts ({self._max_packet})")
        if qos:
            self._outstanding.add(packet_id)
        self._buffer += data
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
        self._writer.write(wire.DISCONNECT_PACKET)
        await self._writer.drain()
        self._acks.cancel()
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


async def connect(
    host: str,
    port: int,
    client_id: str,
    window: int = 20_000,
    will: Will | None = None,
    *,
    login: tuple[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
    keepalive: int = 60,
) -> Publisher:
    """Connect with a clean start (over TLS when ``tls`` is given, with a user name and password when ``login``
    is)."""
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        writer.write(
            wire.connect_packet(
                client_id,
                keepalive=keepalive,
                clean_start=True,
                will=will,
                username=login[0] if login else None,
                password=login[1] if login else None,
            )
        )
        await writer.drain()
        connack = await wire.read_connack(reader)
    except (OSError, asyncio.IncompleteReadError) as exc:  # ssl.SSLError is an OSError
        raise WireError(f"cannot publish to the MQTT broker at {host}:{port}: {exc}") from exc
    except wire.MalformedPacket as exc:
        writer.close()
        raise WireError(f"the broker at {host}:{port} did not answer with an MQTT v5 CONNACK: {exc}") from None
    if connack.reason >= 0x80:
        writer.close()
        raise WireError(f"the broker refused {client_id!r}: CONNACK {wire.reason_text(connack.reason)}")
    return Publisher(reader, writer, window, connack)


@asynccontextmanager
async def connection(host: str, port: int, client_id: str, **options: Any) -> AsyncIterator[Publisher]:
    """:func:`connect` (with the same ``options``) for the length of a ``with`` block, closed cleanly after it."""
    publisher = await connect(host, port, client_id, **options)
    try:
        yield publisher
    finally:
        await publisher.close()


async def publish_all(
    host: str, port: int, client_id: str, messages: Iterable[tuple[str, bytes]], *, qos: int = 1, window: int = 20_000
) -> int:
    count = 0
    async with connection(host, port, client_id, window=window) as pub:
        for topic, payload in messages:
            await pub.publish(topic, payload, qos)
            count += 1
    return count
