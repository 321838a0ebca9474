"""The MQTT v5 subscriber of ingest: a persistent session, a shared subscription, acknowledgements on demand.

Why not paho-mqtt or aiomqtt here: aiomqtt does not let the application decide
when a QoS 1 message is acknowledged, and paho-mqtt (which does, with
``manual_ack``) spent more time per MQTT v5 message building property objects
than ingest spends decoding and storing it (docs/performance.md). This client
implements the small part of MQTT v5 that a subscriber needs, on asyncio
streams, parsing packets in bulk from large reads. The tests run it against the
real Mosquitto and publish with paho-mqtt.

Each connection has a generation number: acknowledgements for messages of an
earlier connection are not sent, because the broker redelivers those messages
on the new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import time
from collections.abc import Callable

from ingest.errors import BrokerUnavailable

log = logging.getLogger(__name__)

OnMessage = Callable[[int, int, str, bytes], None]
"""(generation, packet id or 0 for QoS 0, topic, payload)"""

_READ_CHUNK = 256 * 1024

CONNACK_REASONS = {
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x9F: "connection rate exceeded",
}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    keepalive: int,
    session_expiry_s: int,
    receive_maximum: int,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    flags = 0  # clean start off: resume the session
    payload = _string(client_id)
    if username is not None:
        flags |= 0x80
        payload += _string(username)
    if password is not None:
        flags |= 0x40
        payload += _string(password)
    props = b"\x11" + struct.pack("!I", session_expiry_s) + b"\x21" + struct.pack("!H", receive_maximum)
    body = _string("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive) + varint(len(props)) + props + payload
    return _packet(0x10, body)


def subscribe_packet(packet_id: int, filters: list[str], qos: int = 1) -> bytes:
    body = struct.pack("!H", packet_id) + b"\x00" + b"".join(_string(f) + bytes([qos]) for f in filters)
    return _packet(0x82, body)


def _read_varint(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(value, position after it), or None when the buffer ends first."""
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            return None
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise BrokerUnavailable("the broker sent a malformed packet length")


class MqttLink:
    """One MQTT v5 connection with a persistent session, manual QoS 1 acknowledgements and flow control."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        subscriptions: list[str],
        on_message: OnMessage,
        *,
        receive_maximum: int,
        session_expiry_s: int,
        keepalive: int = 30,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.subscriptions = subscriptions
        self.receive_maximum = min(receive_maximum, 65_535)
        self.session_expiry_s = session_expiry_s
        self.keepalive = keepalive
        self.username, self.password, self.tls = username, password, tls
        self.generation = 0
        self.received = 0
        self.lost = asyncio.Event()
        self._on_message = on_message
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reading = asyncio.Event()
        self._reading.set()
        self._acks = bytearray()
        self._last_heard = 0.0
        self._last_ping = 0.0
        self._subscribed: asyncio.Future[None] | None = None

    # -- connection ---------------------------------------------------------------------------------

    async def connect(self, answer_within: float = 10.0) -> bool:
        """Connect, resume or create the session and subscribe; returns whether the session was resumed."""
        await self._close()
        self.lost.clear()
        self._acks.clear()
        try:
            async with asyncio.timeout(answer_within):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.tls, limit=_READ_CHUNK * 4
                )
                writer.write(
                    connect_packet(
                        self.client_id,
                        keepalive=self.keepalive,
                        session_expiry_s=self.session_expiry_s,
                        receive_maximum=self.receive_maximum,
                        username=self.username,
                        password=self.password,
                    )
                )
                await writer.drain()
                first = await reader.readexactly(2)
                length = first[1]
                if first[0] != 0x20 or length < 2 or length > 127:
                    writer.close()
                    raise BrokerUnavailable(
                        f"the broker at {self.host}:{self.port} did not answer CONNECT with an MQTT v5 CONNACK"
                    )
                body = await reader.readexactly(length)
        except TimeoutError:
            raise BrokerUnavailable(
                f"the MQTT broker at {self.host}:{self.port} did not answer in {answer_within} s"
            ) from None
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            raise BrokerUnavailable(f"cannot reach the MQTT broker at {self.host}:{self.port}: {exc}") from exc
        session_present, reason = bool(body[0] & 1), body[1]
        if reason >= 0x80:
            writer.close()
            account = f"account {self.username!r}" if self.username else "no account (anonymous)"
            hint = ""
            if reason in (0x86, 0x87):
                hint = "; check the broker account (lykta devices provision, docs/security.md)"
            raise BrokerUnavailable(
                f"the MQTT broker refused the connection with {account}: "
                f"{CONNACK_REASONS.get(reason, hex(reason))}{hint}"
            )
        self._reader, self._writer = reader, writer
        self.generation += 1
        self._last_heard = self._last_ping = time.monotonic()
        self._subscribed = asyncio.get_running_loop().create_future()
        self._tasks = [asyncio.create_task(self._read_loop(self.generation), name="mqtt-read")]
        writer.write(subscribe_packet(1, self.subscriptions))
        try:
            async with asyncio.timeout(answer_within):
                await self._subscribed
        except TimeoutError:
            await self._close()
            raise BrokerUnavailable("the MQTT broker did not acknowledge the subscription") from None
        return session_present

    async def _close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    def _lose(self, why: str) -> None:
        if not self.lost.is_set():
            log.warning("MQTT connection lost: %s", why)
        self.generation += 1
        self.lost.set()
        if self._subscribed is not None and not self._subscribed.done():
            self._subscribed.set_exception(BrokerUnavailable(f"the MQTT broker closed the connection: {why}"))
        if self._writer is not None:
            self._writer.close()

    async def disconnect(self) -> None:
        """Send the pending acknowledgements, then a normal DISCONNECT; the session stays on the broker."""
        if self._writer is not None and not self.lost.is_set():
            self.flush_acks()
            with contextlib.suppress(OSError):
                self._writer.write(b"\xe0\x00")
                await self._writer.drain()
        await self._close()

    # -- receiving ----------------------------------------------------------------------------------

    async def _read_loop(self, generation: int) -> None:
        reader = self._reader
        if reader is None:
            return
        buf = bytearray()
        try:
            while True:
                await self._reading.wait()
                chunk = await reader.read(_READ_CHUNK)
                if not chunk:
                    self._lose("the broker closed the connection")
                    return
                self._last_heard = time.monotonic()
                buf += chunk
                used = self._parse(buf, generation)
                if used:
                    del buf[:used]
        except (OSError, BrokerUnavailable) as exc:
            self._lose(str(exc) or type(exc).__name__)

    def _parse(self, buf: bytearray, generation: int) -> int:
        """Handle every complete packet in ``buf``; returns the bytes consumed."""
        pos, end = 0, len(buf)
        on_message = self._on_message
        while pos + 2 <= end:
            header = buf[pos]
            if buf[pos + 1] < 0x80:
                length, start = buf[pos + 1], pos + 2
            else:
                parsed = _read_varint(buf, pos + 1)
                if parsed is None:
                    break
                length, start = parsed
            stop = start + length
            if stop > end:
                break
            kind = header >> 4
            if kind == 3:  # PUBLISH
                qos = (header >> 1) & 3
                topic_len = (buf[start] << 8) | buf[start + 1]
                p = start + 2 + topic_len
                try:
                    topic = buf[start + 2 : p].decode()
                except UnicodeDecodeError:
                    topic = buf[start + 2 : p].decode(errors="replace")
                mid = 0
                if qos:
                    mid = (buf[p] << 8) | buf[p + 1]
                    p += 2
                if buf[p] < 0x80:
                    p += 1 + buf[p]
                else:
                    props = _read_varint(buf, p)
                    if props is None:
                        raise BrokerUnavailable("the broker sent a malformed PUBLISH")
                    p = props[1] + props[0]
                self.received += 1
                on_message(generation, mid, topic, bytes(buf[p:stop]))
            elif kind == 9:  # SUBACK
                codes = bytes(buf[start + 2 : stop])
                props_len = codes[0] if codes else 0
                granted = codes[1 + props_len :]
                future = self._subscribed
                if future is not None and not future.done():
                    bad = [c for c in granted if c >= 0x80]
                    if bad:
                        future.set_exception(
                            BrokerUnavailable(f"the MQTT broker refused the subscription (reason 0x{bad[0]:02x})")
                        )
                    else:
                        future.set_result(None)
            elif kind == 14:  # DISCONNECT from the broker
                reason = buf[start] if length else 0
                raise BrokerUnavailable(f"the broker disconnected us (reason 0x{reason:02x})")
            # PINGRESP (13) and anything else: nothing to do
            pos = stop
        return pos

    # -- acknowledgements and flow control ----------------------------------------------------------

    def ack(self, generation: int, mid: int) -> bool:
        """Queue a PUBACK; False (not sent) when the message came on an earlier connection."""
        if mid == 0 or generation != self.generation or self._writer is None or self.lost.is_set():
            return False
        self._acks += b"\x40\x02" + mid.to_bytes(2, "big")
        return True

    def flush_acks(self) -> None:
        if self._acks and self._writer is not None and not self.lost.is_set():
            self._writer.write(bytes(self._acks))
        self._acks.clear()

    def pause(self) -> None:
        """Stop reading from the broker: TCP back-pressure, the broker keeps the rest queued."""
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    def misc(self) -> None:
        """Keepalive; call about once a second."""
        if self._writer is None or self.lost.is_set():
            return
        now = time.monotonic()
        if self._reading.is_set() and now - self._last_heard > self.keepalive * 1.5:
            self._lose(f"no packet from the broker for {now - self._last_heard:.0f} s")
            return
        if now - self._last_ping >= self.keepalive / 2:
            self._last_ping = now
            with contextlib.suppress(OSError):
                self._writer.write(b"\xc0\x00")  # PINGREQ
