"""The MQTT v5 wire format: the packets lykta's clients send, and bounds-checked parsing of what brokers send.

One codec for the ingest subscriber and the simulators' publishers. Encoding is a handful of pure functions
returning ``bytes``; parsing never reads past the packet it was given: a packet that is not what MQTT v5 allows
raises :class:`MalformedPacket` (never ``IndexError`` or ``UnicodeDecodeError``), and the client that reads it
closes the connection and reconnects. The hot path (framing and PUBLISH) works on positions in a shared buffer,
so that one large read is parsed without copying.

References are to the OASIS MQTT Version 5.0 standard (2019), section numbers in brackets.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from floor.errors import LyktaError

# Control packet types [2.1.2]
CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # normal disconnection, no properties [3.14.2.1]

MAX_VARINT = 268_435_455  # the largest Variable Byte Integer [1.5.5]

# Property identifiers [2.2.2.2] and how their values are written
SESSION_EXPIRY_INTERVAL = 0x11
ASSIGNED_CLIENT_IDENTIFIER = 0x12
SERVER_KEEP_ALIVE = 0x13
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
MAXIMUM_QOS = 0x24
MAXIMUM_PACKET_SIZE = 0x27

_BYTE, _TWO, _FOUR, _VARINT, _TEXT, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES = {
    0x01: _BYTE,  # payload format indicator
    0x02: _FOUR,  # message expiry interval
    0x03: _TEXT,  # content type
    0x08: _TEXT,  # response topic
    0x09: _BINARY,  # correlation data
    0x0B: _VARINT,  # subscription identifier
    0x11: _FOUR,  # session expiry interval
    0x12: _TEXT,  # assigned client identifier
    0x13: _TWO,  # server keep alive
    0x15: _TEXT,  # authentication method
    0x16: _BINARY,  # authentication data
    0x17: _BYTE,  # request problem information
    0x18: _FOUR,  # will delay interval
    0x19: _BYTE,  # request response information
    0x1A: _TEXT,  # response information
    0x1C: _TEXT,  # server reference
    0x1F: _TEXT,  # reason string
    0x21: _TWO,  # receive maximum
    0x22: _TWO,  # topic alias maximum
    0x23: _TWO,  # topic alias
    0x24: _BYTE,  # maximum QoS
    0x25: _BYTE,  # retain available
    0x26: _PAIR,  # user property
    0x27: _FOUR,  # maximum packet size
    0x28: _BYTE,  # wildcard subscription available
    0x29: _BYTE,  # subscription identifier available
    0x2A: _BYTE,  # shared subscription available
}

REASONS = {
    0x00: "success",
    0x10: "no matching subscribers",
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x90: "topic name invalid",
    0x93: "receive maximum exceeded",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x99: "payload format invalid",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded",
    0xA2: "wildcard subscriptions not supported",
}


def reason_text(code: int) -> str:
    return f"{REASONS.get(code, 'reason')} (0x{code:02x})"


class MalformedPacket(LyktaError):
    """The peer sent bytes that are not a valid MQTT v5 packet."""


# -- encoding ---------------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    """A Variable Byte Integer [1.5.5]."""
    if not 0 <= n <= MAX_VARINT:
        raise ValueError(f"{n} does not fit a Variable Byte Integer")
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def string(value: str | bytes) -> bytes:
    """A UTF-8 Encoded String or Binary Data: two bytes of length, then the bytes [1.5.4, 1.5.6]."""
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) > 65_535:
        raise ValueError("a string or binary value of MQTT holds at most 65,535 bytes")
    return struct.pack("!H", len(raw)) + raw


def packet(first: int, body: bytes) -> bytes:
    """Fixed header (type and flags, remaining length) and the rest."""
    return bytes([first]) + varint(len(body)) + body


@dataclass(frozen=True)
class Will:
    """The message the broker publishes when the client's connection ends without DISCONNECT [3.1.2.5]."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


def connect_packet(
    client_id: str,
    *,
    keepalive: int,
    clean_start: bool,
    session_expiry_s: int = 0,
    receive_maximum: int | None = None,
    maximum_packet_size: int | None = None,
    username: str | None = None,
    password: str | None = None,
    will: Will | None = None,
) -> bytes:
    """CONNECT [3.1]: protocol level 5, the session settings as properties, then the payload fields."""
    flags = 0x02 if clean_start else 0
    props = b""
    if session_expiry_s:
        props += bytes([SESSION_EXPIRY_INTERVAL]) + struct.pack("!I", session_expiry_s)
    if receive_maximum is not None:
        props += bytes([RECEIVE_MAXIMUM]) + struct.pack("!H", max(1, min(receive_maximum, 65_535)))
    if maximum_packet_size is not None:
        props += bytes([MAXIMUM_PACKET_SIZE]) + struct.pack("!I", maximum_packet_size)
    payload = string(client_id)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += b"\x00" + string(will.topic) + string(will.payload)  # no will properties
    if username is not None:
        flags |= 0x80
        payload += string(username)
    if password is not None:
        flags |= 0x40
        payload += string(password)
    body = string("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive) + varint(len(props)) + props + payload
    return packet(0x10, body)


def subscribe_packet(packet_id: int, filters: Sequence[str], qos: int = 1) -> bytes:
    """SUBSCRIBE [3.8] without properties; each filter with its maximum QoS."""
    body = struct.pack("!H", packet_id) + b"\x00" + b"".join(string(f) + bytes([qos]) for f in filters)
    return packet(0x82, body)


def unsubscribe_packet(packet_id: int, filters: Sequence[str]) -> bytes:
    """UNSUBSCRIBE [3.10] without properties."""
    return packet(0xA2, struct.pack("!H", packet_id) + b"\x00" + b"".join(string(f) for f in filters))


def publish_packet(topic: bytes, payload: bytes, qos: int, packet_id: int, retain: bool = False) -> bytes:
    """PUBLISH [3.3] without properties; ``topic`` is already length-prefixed (see :func:`string`)."""
    header = 0x30 | (qos << 1) | (1 if retain else 0)
    ident = struct.pack("!H", packet_id) if qos else b""
    return bytes([header]) + varint(len(topic) + len(ident) + 1 + len(payload)) + topic + ident + b"\x00" + payload


def puback_packet(packet_id: int) -> bytes:
    """PUBACK [3.4] with reason Success, written in its short form."""
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


# -- parsing ----------------------------------------------------------------------------------------


def read_varint(buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """(value, position after it), or None when ``end`` comes first; MalformedPacket past four bytes."""
    value, shift = 0, 0
    while True:
        if pos >= end:
            return None
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise MalformedPacket("a length longer than four bytes")


def frame(buf: bytes | bytearray, pos: int, end: int, max_size: int = MAX_VARINT) -> tuple[int, int] | None:
    """(start, stop) of the body of the packet whose fixed header is at ``pos``; None while it is incomplete.

    MalformedPacket for a bad length, or one whose packet would be larger than ``max_size`` (the Maximum Packet
    Size this side announced: the whole packet, fixed header included [3.1.2.11.4])."""
    if pos + 2 > end:
        return None
    if buf[pos + 1] < 0x80:
        length, start = buf[pos + 1], pos + 2
    else:
        parsed = read_varint(buf, pos + 1, end)
        if parsed is None:
            return None
        length, start = parsed
    if start - pos + length > max_size:
        raise MalformedPacket(f"a packet of {start - pos + length} bytes, larger than the {max_size} allowed")
    stop = start + length
    return None if stop > end else (start, stop)


def _need(pos: int, count: int, stop: int, what: str) -> None:
    if pos + count > stop:
        raise MalformedPacket(f"{what} runs past the end of its packet")


def read_string(buf: bytes | bytearray, pos: int, stop: int, what: str) -> tuple[str, int]:
    _need(pos, 2, stop, what)
    size = (buf[pos] << 8) | buf[pos + 1]
    _need(pos + 2, size, stop, what)
    try:
        return bytes(buf[pos + 2 : pos + 2 + size]).decode(), pos + 2 + size
    except UnicodeDecodeError:
        raise MalformedPacket(f"{what} is not UTF-8") from None


def read_properties(buf: bytes | bytearray, pos: int, stop: int) -> tuple[dict[int, object], int]:
    """The property list at ``pos`` [2.2.2]: {identifier: value} (user properties as a list of pairs)."""
    parsed = read_varint(buf, pos, stop)
    if parsed is None:
        raise MalformedPacket("the property length runs past the end of its packet")
    length, pos = parsed
    end = pos + length
    _need(pos, length, stop, "the properties")
    props: dict[int, object] = {}
    while pos < end:
        ident = buf[pos]
        pos += 1
        kind = _PROPERTY_TYPES.get(ident)
        value: object
        if kind is None:
            raise MalformedPacket(f"unknown property 0x{ident:02x}")
        if kind == _BYTE:
            _need(pos, 1, end, "a property")
            value, pos = buf[pos], pos + 1
        elif kind == _TWO:
            _need(pos, 2, end, "a property")
            value, pos = (buf[pos] << 8) | buf[pos + 1], pos + 2
        elif kind == _FOUR:
            _need(pos, 4, end, "a property")
            value, pos = int.from_bytes(buf[pos : pos + 4], "big"), pos + 4
        elif kind == _VARINT:
            got = read_varint(buf, pos, end)
            if got is None:
                raise MalformedPacket("a property runs past the end of its packet")
            value, pos = got
        elif kind == _TEXT:
            value, pos = read_string(buf, pos, end, "a property")
        elif kind == _BINARY:
            _need(pos, 2, end, "a property")
            size = (buf[pos] << 8) | buf[pos + 1]
            _need(pos + 2, size, end, "a property")
            value, pos = bytes(buf[pos + 2 : pos + 2 + size]), pos + 2 + size
        else:
            key, pos = read_string(buf, pos, end, "a user property")
            val, pos = read_string(buf, pos, end, "a user property")
            pairs = cast("list[tuple[str, str]]", props.setdefault(ident, []))
            pairs.append((key, val))
            continue
        if ident in props:
            raise MalformedPacket(f"property 0x{ident:02x} given twice")
        props[ident] = value
    return props, end


@dataclass(frozen=True)
class Connack:
    """What the broker answered to CONNECT [3.2], with the properties a client must honour."""

    session_present: bool
    reason: int
    server_keep_alive: int | None = None
    maximum_packet_size: int | None = None
    receive_maximum: int = 65_535
    assigned_client_id: str | None = None
    maximum_qos: int = 2
    reason_string: str | None = None


def parse_connack(body: bytes | bytearray) -> Connack:
    """A CONNACK body (after the fixed header). MQTT 3.1.1 CONNACKs (two bytes, no properties) are refused."""
    stop = len(body)
    if stop < 3:
        raise MalformedPacket("a CONNACK without properties: the broker does not speak MQTT v5")
    if body[0] & 0xFE:
        raise MalformedPacket("a CONNACK with reserved flags set")
    props, end = read_properties(body, 2, stop)
    if end != stop:
        raise MalformedPacket("a CONNACK with bytes after its properties")

    def number(ident: int) -> int | None:
        value = props.get(ident)
        return value if isinstance(value, int) else None

    receive = number(RECEIVE_MAXIMUM)
    max_size = number(MAXIMUM_PACKET_SIZE)
    if receive == 0 or max_size == 0:
        raise MalformedPacket("a CONNACK with a Receive Maximum or Maximum Packet Size of 0")
    assigned = props.get(ASSIGNED_CLIENT_IDENTIFIER)
    why = props.get(REASON_STRING)
    qos = number(MAXIMUM_QOS)
    return Connack(
        session_present=bool(body[0] & 1),
        reason=body[1],
        server_keep_alive=number(SERVER_KEEP_ALIVE),
        maximum_packet_size=max_size,
        receive_maximum=65_535 if receive is None else receive,
        assigned_client_id=assigned if isinstance(assigned, str) else None,
        maximum_qos=2 if qos is None else qos,
        reason_string=why if isinstance(why, str) else None,
    )


def parse_publish(buf: bytes | bytearray, header: int, start: int, stop: int) -> tuple[str, int, int]:
    """(topic, packet id or 0 at QoS 0, where the payload starts) of the PUBLISH whose body is buf[start:stop].

    A topic that is not UTF-8 is decoded with replacement characters: the message is kept (the telemetry
    decoder turns it into a dead letter) rather than the connection closed over one device's bad bytes."""
    qos = (header >> 1) & 3
    if qos == 3:
        raise MalformedPacket("a PUBLISH with QoS 3")
    _need(start, 2, stop, "the PUBLISH topic")
    p = start + 2 + ((buf[start] << 8) | buf[start + 1])
    _need(start + 2, p - start - 2, stop, "the PUBLISH topic")
    raw = buf[start + 2 : p]
    try:
        topic = raw.decode()
    except UnicodeDecodeError:
        topic = raw.decode(errors="replace")
    mid = 0
    if qos:
        _need(p, 2, stop, "the PUBLISH packet identifier")
        mid = (buf[p] << 8) | buf[p + 1]
        p += 2
        if mid == 0:
            raise MalformedPacket("a PUBLISH with packet identifier 0")
    _need(p, 1, stop, "the PUBLISH properties")
    if buf[p] < 0x80:
        p += 1 + buf[p]
    else:
        props = read_varint(buf, p, stop)
        if props is None:
            raise MalformedPacket("the PUBLISH properties run past the end of the packet")
        p = props[1] + props[0]
    if p > stop:
        raise MalformedPacket("the PUBLISH properties run past the end of the packet")
    return topic, mid, p


def parse_ack(body: bytes | bytearray) -> tuple[int, int]:
    """(packet id, reason code) of a PUBACK [3.4]; the reason is Success when left out."""
    if len(body) < 2:
        raise MalformedPacket("a PUBACK without a packet identifier")
    return (body[0] << 8) | body[1], body[2] if len(body) > 2 else 0


def parse_suback(body: bytes | bytearray) -> tuple[int, bytes]:
    """(packet id, one reason code per filter) of a SUBACK [3.9]."""
    stop = len(body)
    _need(0, 2, stop, "the SUBACK packet identifier")
    _, pos = read_properties(body, 2, stop)
    if pos >= stop:
        raise MalformedPacket("a SUBACK without reason codes")
    return (body[0] << 8) | body[1], bytes(body[pos:stop])


def parse_disconnect(body: bytes | bytearray) -> tuple[int, str | None]:
    """(reason code, reason string) of a DISCONNECT [3.14]; Normal disconnection when left out."""
    if not body:
        return 0, None
    why = None
    if len(body) > 1:
        props, _ = read_properties(body, 1, len(body))
        text = props.get(REASON_STRING)
        why = text if isinstance(text, str) else None
    return body[0], why


async def read_connack(reader: asyncio.StreamReader) -> Connack:
    """Read the CONNACK that answers CONNECT (its length may take several bytes when it carries properties)."""
    first = await reader.readexactly(1)
    if first[0] != 0x20:
        raise MalformedPacket(f"the first packet is of type {first[0] >> 4}, not CONNACK")
    head = bytearray(first)
    while True:
        head += await reader.readexactly(1)
        parsed = read_varint(head, 1, len(head))
        if parsed is not None:
            break
    length = parsed[0]
    if length > 65_536:
        raise MalformedPacket(f"a CONNACK of {length} bytes")
    return parse_connack(await reader.readexactly(length))
