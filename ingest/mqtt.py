"""The MQTT v5 subscriber of ingest: a persistent session, a plain subscription, acknowledgements on demand.

Why not paho-mqtt or aiomqtt here: aiomqtt does not let the application decide
when a QoS 1 message is acknowledged, and paho-mqtt (which does, with
``manual_ack``) spent more time per MQTT v5 message building property objects
than ingest spends decoding and storing it (docs/performance.md). This client
implements the small part of MQTT v5 that a subscriber needs, on asyncio
streams, parsing packets in bulk from large reads. The tests run it against the
real Mosquitto and publish with paho-mqtt.

Each connection has a generation number: acknowledgements for messages of an
earlier connection are not sent (their packet ids mean nothing on the new
connection); ingest still commits those messages, because a broker that crashed
before saving them does not deliver them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import zlib
from collections.abc import Callable

from floor import mqtt_wire as wire
from ingest.errors import BrokerUnavailable

log = logging.getLogger(__name__)

OnMessage = Callable[[int, int, str, bytes], None]
"""(generation, packet id or 0 for QoS 0, topic, payload)"""

_READ_CHUNK = 256 * 1024

MAX_PACKET_SIZE = 16 * 1024 * 1024
"""The Maximum Packet Size ingest announces: above every broker limit lykta configures (4 MiB), so that a payload
over the telemetry contract's limit still arrives and becomes a dead letter instead of being dropped by the broker."""


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
        unsubscribe: list[str] | None = None,
        partition: tuple[int, int] = (1, 1),
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.subscriptions = subscriptions
        self.unsubscribe = unsubscribe or []
        """filters this client no longer wants (an earlier version's subscription kept in its session)"""
        self.partition, self.partitions = partition
        """this client stores partition k of N; messages of other partitions are acknowledged as they arrive"""
        self.foreign = 0
        """messages of other partitions acknowledged at once"""
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
        self.connack: wire.Connack | None = None

    # -- connection ---------------------------------------------------------------------------------

    async def connect(self, answer_within: float = 10.0) -> bool:
        """Connect, resume or create the session and subscribe; returns whether the session was resumed."""
        await self._close()
        self.lost.clear()
        self._acks.clear()
        self._reading.set()  # a new connection reads (at least its CONNACK and SUBACK); the caller may pause again
        reader, writer, connack = await self._handshake(
            answer_within,
            clean_start=False,
            session_expiry_s=self.session_expiry_s,  # resume the session
        )
        self.connack = connack
        if connack.server_keep_alive is not None:  # the broker's value wins [3.2.2.3.14]
            self.keepalive = connack.server_keep_alive
        if connack.assigned_client_id:
            self.client_id = connack.assigned_client_id
        self._reader, self._writer = reader, writer
        self.generation += 1
        self._last_heard = self._last_ping = time.monotonic()
        self._subscribed = asyncio.get_running_loop().create_future()
        self._tasks = [asyncio.create_task(self._read_loop(self.generation), name="mqtt-read")]
        if self.subscriptions:
            writer.write(wire.subscribe_packet(1, self.subscriptions))
        else:  # a session being drained: it only receives what already waits in it
            self._subscribed.set_result(None)
        try:
            async with asyncio.timeout(answer_within):
                await self._subscribed
        except TimeoutError:
            await self._close()
            raise BrokerUnavailable("the MQTT broker did not acknowledge the subscription") from None
        if self.unsubscribe:  # after the new subscription holds, so that no message falls between the two
            writer.write(wire.unsubscribe_packet(2, self.unsubscribe))
        return connack.session_present

    async def end_session(self, answer_within: float = 10.0) -> None:
        """Remove this client id's session from the broker: a clean start with a session expiry of 0, then
        DISCONNECT (whatever still waited in the session is discarded; drain it first)."""
        await self._close()
        _, writer, _ = await self._handshake(answer_within, clean_start=True, session_expiry_s=0)
        try:
            writer.write(wire.DISCONNECT_PACKET)
            with contextlib.suppress(OSError):
                await writer.drain()
        finally:
            writer.close()

    async def _handshake(
        self, answer_within: float, *, clean_start: bool, session_expiry_s: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, wire.Connack]:
        """Open the connection, send CONNECT and read the CONNACK; a refusal or silence is BrokerUnavailable."""
        where = f"{self.host}:{self.port}"
        try:
            async with asyncio.timeout(answer_within):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.tls, limit=_READ_CHUNK * 4
                )
                writer.write(
                    wire.connect_packet(
                        self.client_id,
                        keepalive=self.keepalive,
                        clean_start=clean_start,
                        session_expiry_s=session_expiry_s,
                        receive_maximum=self.receive_maximum,
                        maximum_packet_size=MAX_PACKET_SIZE,
                        username=self.username,
                        password=self.password,
                    )
                )
                await writer.drain()
                connack = await wire.read_connack(reader)
        except TimeoutError:
            raise BrokerUnavailable(f"the MQTT broker at {where} did not answer in {answer_within} s") from None
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            raise BrokerUnavailable(f"cannot reach the MQTT broker at {where}: {exc}") from exc
        except wire.MalformedPacket as exc:
            writer.close()
            raise BrokerUnavailable(
                f"the broker at {where} did not answer CONNECT with an MQTT v5 CONNACK: {exc}"
            ) from None
        if connack.reason >= 0x80:
            writer.close()
            account = f"account {self.username!r}" if self.username else "no account (anonymous)"
            hint = ""
            if connack.reason in (0x86, 0x87):
                hint = "; check the broker account (lykta devices provision, docs/security.md)"
            raise BrokerUnavailable(
                f"the MQTT broker refused the connection with {account}: {wire.reason_text(connack.reason)}{hint}"
            )
        return reader, writer, connack

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
                self._writer.write(wire.DISCONNECT_PACKET)
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
                subscribing = self._subscribed is not None and not self._subscribed.done()
                if not subscribing:  # never paused before the SUBACK: it may come behind redelivered messages
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
                self.flush_acks()  # what the receiver acknowledged at once (messages of another partition)
        except wire.MalformedPacket as exc:
            log.error("the MQTT broker sent a malformed packet (%s); closing the connection to reconnect", exc)  # noqa: TRY400
            self._lose(f"malformed packet: {exc}")
        except (OSError, BrokerUnavailable) as exc:
            self._lose(str(exc) or type(exc).__name__)
        except Exception as exc:  # the read task must never die silently: end the connection, reconnect
            log.exception("the MQTT read task failed; closing the connection to reconnect")
            self._lose(f"{type(exc).__name__}: {exc}")

    def _parse(self, buf: bytearray, generation: int) -> int:
        """Handle every complete packet in ``buf``; returns the bytes consumed."""
        pos, end = 0, len(buf)
        on_message = self._on_message
        frame, parse_publish, puback = wire.frame, wire.parse_publish, wire.puback_packet
        partition, partitions = self.partition, self.partitions
        while True:
            framed = frame(buf, pos, end, MAX_PACKET_SIZE)
            if framed is None:
                return pos
            start, stop = framed
            header = buf[pos]
            kind = header >> 4
            if kind == wire.PUBLISH:
                topic, mid, p = parse_publish(buf, header, start, stop)
                if partitions > 1 and partition_of(topic, partitions) != partition:
                    self.foreign += 1
                    if mid:
                        self._acks += puback(mid)  # sent after this read; another process stores it
                else:
                    self.received += 1
                    on_message(generation, mid, topic, bytes(buf[p:stop]))
            elif kind == wire.SUBACK:
                _, granted = wire.parse_suback(buf[start:stop])
                future = self._subscribed
                if future is not None and not future.done():
                    bad = [c for c in granted if c >= 0x80]
                    if bad:
                        future.set_exception(
                            BrokerUnavailable(f"the MQTT broker refused the subscription: {wire.reason_text(bad[0])}")
                        )
                    else:
                        future.set_result(None)
            elif kind == wire.DISCONNECT:
                reason, why = wire.parse_disconnect(buf[start:stop])
                raise BrokerUnavailable(
                    f"the broker disconnected us: {wire.reason_text(reason)}" + (f" ({why})" if why else "")
                )
            elif kind not in (wire.PINGRESP, wire.PUBACK, wire.UNSUBACK):
                raise wire.MalformedPacket(f"packet type {kind} is not one a broker sends to a subscriber")
            pos = stop

    # -- acknowledgements and flow control ----------------------------------------------------------

    def ack(self, generation: int, mid: int) -> bool:
        """Queue a PUBACK; False (not sent) when the message came on an earlier connection."""
        if mid == 0 or generation != self.generation or self._writer is None or self.lost.is_set():
            return False
        self._acks += wire.puback_packet(mid)
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
                self._writer.write(wire.PINGREQ_PACKET)


def partition_of(topic: str, partitions: int) -> int:
    """Which of ``partitions`` ingest processes (1-based) stores a message: by a stable hash of its device id, the
    fourth topic segment; a topic without one goes to the first (its dead letter is written once)."""
    parts = topic.split("/", 4)
    if len(parts) < 5:
        return 1
    return zlib.crc32(parts[3].encode("utf-8", "replace")) % partitions + 1
