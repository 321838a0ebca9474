"""paho-mqtt driven by the asyncio event loop, with acknowledgements sent only when ingest says so.

paho's manual acknowledgement (``manual_ack=True``) is what aiomqtt does not
expose; its external-loop hooks (``on_socket_open``, ``loop_read``, ...) let one
asyncio program own the socket. Each connection has a generation number:
acknowledgements for messages of an earlier connection are not sent, because
the broker redelivers those messages on the new connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.errors import BrokerUnavailable

log = logging.getLogger(__name__)

OnMessage = Callable[[int, int, str, bytes], None]
"""(generation, mid, topic, payload)"""


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
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.subscriptions = subscriptions
        self.receive_maximum = receive_maximum
        self.session_expiry_s = session_expiry_s
        self.keepalive = keepalive
        self.generation = 0
        self.received = 0
        self._on_message = on_message
        self._loop = asyncio.get_running_loop()
        self._paused = False
        self._sock: Any = None
        self._connected: asyncio.Future[bool] | None = None
        self._subscribed: asyncio.Future[None] | None = None
        self.lost = asyncio.Event()
        self._client = self._new_client()

    def _new_client(self) -> paho.Client:
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5, manual_ack=True
        )
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_subscribe = self._handle_subscribe
        client.on_message = self._handle_message
        return client

    # -- connection ---------------------------------------------------------------------------------

    async def connect(self, answer_within: float = 10.0) -> bool:
        """Connect, resume or create the session and subscribe; returns whether the session was resumed."""
        self.lost.clear()
        self._connected = self._loop.create_future()
        self._subscribed = self._loop.create_future()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        try:
            self._client.connect(self.host, self.port, keepalive=self.keepalive, clean_start=False, properties=props)
        except OSError as exc:
            raise BrokerUnavailable(f"cannot reach the MQTT broker at {self.host}:{self.port}: {exc}") from exc
        try:
            async with asyncio.timeout(answer_within):
                session_present = await self._connected
                await self._subscribed
        except TimeoutError:
            self._client.disconnect()
            raise BrokerUnavailable(
                f"the MQTT broker at {self.host}:{self.port} did not answer in {answer_within} s"
            ) from None
        return session_present

    def _handle_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        future = self._connected
        if reason.is_failure:
            if future and not future.done():
                future.set_exception(BrokerUnavailable(f"the MQTT broker refused the connection: {reason}"))
            return
        self.generation += 1
        client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in self.subscriptions])
        if future and not future.done():
            future.set_result(bool(flags.session_present))

    def _handle_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: list[ReasonCode], properties: Properties | None
    ) -> None:
        future = self._subscribed
        if future is None or future.done():
            return
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            future.set_exception(BrokerUnavailable(f"the MQTT broker refused the subscription: {', '.join(failed)}"))
        else:
            future.set_result(None)

    def _handle_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.generation += 1
        self.lost.set()
        for future in (self._connected, self._subscribed):
            if future and not future.done():
                future.set_exception(BrokerUnavailable(f"the MQTT broker closed the connection: {reason}"))

    async def disconnect(self) -> None:
        """Send what is queued (acknowledgements first), then a normal DISCONNECT; the session stays."""
        for _ in range(200):
            if not self._client.want_write() or self._sock is None:
                break
            self._client.loop_write()
            await asyncio.sleep(0.01)
        self._client.disconnect()
        for _ in range(100):
            if self._sock is None:
                break
            self._client.loop_write()
            self._client.loop_read()
            await asyncio.sleep(0.01)

    # -- messages and acknowledgements -------------------------------------------------------------

    def _handle_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.received += 1
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", errors="replace")
        self._on_message(self.generation, message.mid if message.qos else 0, topic, bytes(message.payload))

    def ack(self, generation: int, mid: int) -> bool:
        """Acknowledge a QoS 1 message; False (not sent) when it came on an earlier connection."""
        if mid == 0 or generation != self.generation or self._sock is None:
            return False
        return self._client.ack(mid, 1) == MQTTErrorCode.MQTT_ERR_SUCCESS

    def pause(self) -> None:
        """Stop reading from the broker (TCP back-pressure); keepalive continues once resumed."""
        if not self._paused and self._sock is not None:
            self._loop.remove_reader(self._sock)
        self._paused = True

    def resume(self) -> None:
        if self._paused and self._sock is not None:
            self._loop.add_reader(self._sock, self._readable)
        self._paused = False

    def misc(self) -> None:
        """Keepalive; call about once a second."""
        if self._sock is not None:
            self._client.loop_misc()

    # -- socket hooks --------------------------------------------------------------------------------

    def _readable(self) -> None:
        for _ in range(512):
            before = self.received
            rc = self._client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is None or self.received == before:
                break

    def _socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._sock = sock
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        if not self._paused:
            self._loop.add_reader(sock, self._readable)

    def _socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._sock = None
        self.lost.set()

    def _register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.add_writer(sock, self._client.loop_write)

    def _unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.remove_writer(sock)
