"""The MQTT v5 codec on byte fixtures from the MQTT v5 specification, and on arbitrary and split streams.

No broker: these run in well under a second. The ingest client's parser is driven here too, so that malformed
input from a broker is shown to end the connection at once instead of killing the read task.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floor import mqtt_wire as wire
from ingest.errors import BrokerUnavailable
from ingest.mqtt import MqttLink

# -- fixtures from the specification (OASIS MQTT Version 5.0) -------------------------------------------

# 1.5.5 Variable Byte Integer: the table of sizes and their bounds
SPEC_VARINTS = [
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"),
    (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),
]


@pytest.mark.parametrize(("value", "encoded"), SPEC_VARINTS)
def test_variable_byte_integers_as_in_the_specification(value: int, encoded: bytes) -> None:
    assert wire.varint(value) == encoded
    assert wire.read_varint(encoded, 0, len(encoded)) == (value, len(encoded))


def test_a_fifth_length_byte_is_malformed_and_a_short_one_incomplete() -> None:
    with pytest.raises(wire.MalformedPacket):
        wire.read_varint(b"\xff\xff\xff\xff\x01", 0, 5)
    assert wire.read_varint(b"\xff\xff", 0, 2) is None
    with pytest.raises(ValueError, match="Variable Byte Integer"):
        wire.varint(268_435_456)


def test_utf8_string_as_in_the_specification() -> None:
    # Figure 1-1: "A" followed by U+2A6D4 (CJK ideograph) is 00 05 41 F0 AA 9B 94
    encoded = bytes([0x00, 0x05, 0x41, 0xF0, 0xAA, 0x9B, 0x94])
    assert wire.string("A\U0002a6d4") == encoded
    assert wire.read_string(encoded, 0, len(encoded), "a string") == ("A\U0002a6d4", 7)


def test_connect_variable_header_as_in_the_specification() -> None:
    # 3.1.2.11 example: protocol name "MQTT", level 5, flags 0xCE (user name, password, will QoS 1, will flag,
    # clean start), keep alive 10, properties of length 5 holding Session Expiry Interval 10.
    data = wire.connect_packet(
        "c",
        keepalive=10,
        clean_start=True,
        session_expiry_s=10,
        username="u",
        password="p",
        will=wire.Will("w", b"x", qos=1),
    )
    start, stop = wire.frame(data, 0, len(data)) or (0, 0)
    header = bytes([0x00, 0x04, 0x4D, 0x51, 0x54, 0x54, 0x05, 0xCE, 0x00, 0x0A, 0x05, 0x11, 0x00, 0x00, 0x00, 0x0A])
    assert data[0] == 0x10
    assert data[start : start + len(header)] == header
    assert stop == len(data)
    # the payload: client id, will properties (none), will topic, will payload, user name, password
    assert data[start + len(header) :] == b"\x00\x01c" + b"\x00" + b"\x00\x01w" + b"\x00\x01x" + b"\x00\x01u\x00\x01p"


def test_publish_variable_header_as_in_the_specification() -> None:
    # 3.3.2.3 example: topic "a/b", packet identifier 10, no properties
    data = wire.publish_packet(wire.string("a/b"), b"hello", 1, 10)
    start, stop = wire.frame(data, 0, len(data)) or (0, 0)
    assert data[start : start + 8] == bytes([0x00, 0x03, 0x61, 0x2F, 0x62, 0x00, 0x0A, 0x00])
    assert wire.parse_publish(data, data[0], start, stop) == ("a/b", 10, start + 8)
    assert data[start + 8 : stop] == b"hello"


def _connack(flags: int, reason: int, props: bytes) -> bytes:
    return bytes([flags, reason]) + wire.varint(len(props)) + props


def test_connack_properties_are_honoured() -> None:
    props = (
        bytes([wire.SERVER_KEEP_ALIVE]) + struct.pack("!H", 7)
        + bytes([wire.MAXIMUM_PACKET_SIZE]) + struct.pack("!I", 1024)
        + bytes([wire.RECEIVE_MAXIMUM]) + struct.pack("!H", 20)
        + bytes([wire.ASSIGNED_CLIENT_IDENTIFIER]) + wire.string("auto-1")
        + bytes([0x26]) + wire.string("k") + wire.string("v")  # user property
        + bytes([0x22]) + struct.pack("!H", 10)  # topic alias maximum
        + bytes([wire.REASON_STRING]) + wire.string("welcome")
    )  # fmt: skip
    body = _connack(1, 0, props)
    assert len(body) > 40
    got = wire.parse_connack(body)
    assert got.session_present
    assert (got.server_keep_alive, got.maximum_packet_size, got.receive_maximum) == (7, 1024, 20)
    assert got.assigned_client_id == "auto-1"
    assert got.reason_string == "welcome"


def test_a_connack_longer_than_127_bytes_is_read() -> None:
    props = bytes([wire.REASON_STRING]) + wire.string("x" * 300)
    body = _connack(0, 0, props)
    stream = b"\x20" + wire.varint(len(body)) + body
    assert len(body) > 127

    async def read() -> wire.Connack:
        reader = asyncio.StreamReader()
        reader.feed_data(stream)
        reader.feed_eof()
        return await wire.read_connack(reader)

    got = asyncio.run(read())
    assert got.reason_string == "x" * 300
    assert not got.session_present


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x00\x00", "MQTT v5"),  # an MQTT 3.1.1 CONNACK
        (b"\x02\x00\x00", "reserved"),
        (_connack(0, 0, bytes([0x21, 0x00])), "past the end"),  # receive maximum cut short
        (_connack(0, 0, bytes([0x21, 0x00, 0x00])), "of 0"),
        (_connack(0, 0, bytes([0x7F, 0x00])), "unknown property"),
        (_connack(0, 0, bytes([0x13, 0, 1, 0x13, 0, 2])), "twice"),
        (_connack(0, 0, b"") + b"\x00", "after its properties"),
        (b"\x00\x00\x05\x11", "past the end"),
    ],
)
def test_malformed_connacks_are_refused_clearly(body: bytes, why: str) -> None:
    with pytest.raises(wire.MalformedPacket, match=why):
        wire.parse_connack(body)


@pytest.mark.parametrize(
    ("packet", "why"),
    [
        (b"\x32\x00", "topic"),  # remaining length 0
        (b"\x30\x02\x00\x09", "topic"),  # topic length past the end
        (b"\x32\x04\x00\x01a\x00", "packet identifier"),  # no room for the packet id
        (b"\x32\x06\x00\x01a\x00\x00\x00", "identifier 0"),
        (b"\x30\x03\x00\x01a", "properties"),  # no property length
        (b"\x30\x04\x00\x01a\x09", "properties"),  # property length past the end
        (b"\x36\x05\x00\x01a\x00\x00", "QoS 3"),
    ],
)
def test_malformed_publishes_raise_malformed_packet(packet: bytes, why: str) -> None:
    framed = wire.frame(packet, 0, len(packet))
    assert framed is not None
    with pytest.raises(wire.MalformedPacket, match=why):
        wire.parse_publish(packet, packet[0], *framed)


def test_a_packet_above_the_announced_maximum_is_refused_before_it_is_read() -> None:
    head = b"\x30" + wire.varint(5_000_000)
    with pytest.raises(wire.MalformedPacket, match="larger than"):
        wire.frame(head, 0, len(head), max_size=1_000_000)


def test_suback_puback_and_disconnect() -> None:
    assert wire.parse_suback(b"\x00\x01\x00\x01\x80") == (1, b"\x01\x80")
    assert wire.parse_ack(b"\x00\x07") == (7, 0)
    assert wire.parse_ack(b"\x00\x07\x87\x00") == (7, 0x87)
    props = bytes([wire.REASON_STRING]) + wire.string("bye")
    assert wire.parse_disconnect(b"\x8b" + wire.varint(len(props)) + props) == (0x8B, "bye")
    assert wire.parse_disconnect(b"") == (0, None)
    with pytest.raises(wire.MalformedPacket):
        wire.parse_suback(b"\x00\x01\x00")


# -- properties: split streams and arbitrary bytes ---------------------------------------------------------

topics = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
messages = st.lists(st.tuples(topics, st.binary(max_size=300), st.sampled_from([0, 1])), min_size=1, max_size=12)


def _link(received: list[tuple[int, str, bytes]]) -> MqttLink:
    return MqttLink(
        "127.0.0.1",
        1,
        "test",
        ["t"],
        lambda _gen, mid, topic, payload: received.append((mid, topic, payload)),
        receive_maximum=10,
        session_expiry_s=0,
    )


def _stream(msgs: list[tuple[str, bytes, int]]) -> tuple[bytes, list[tuple[int, str, bytes]]]:
    data = b""
    expected = []
    for i, (topic, payload, qos) in enumerate(msgs, start=1):
        mid = i if qos else 0
        data += wire.publish_packet(wire.string(topic), payload, qos, mid)
        data += b"\xd0\x00"  # PINGRESP between the messages
        expected.append((mid, topic, payload))
    return data, expected


@given(messages, st.data())
@settings(max_examples=150, deadline=None)
def test_a_valid_stream_split_anywhere_gives_the_same_messages(
    msgs: list[tuple[str, bytes, int]], data: st.DataObject
) -> None:
    stream, expected = _stream(msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    received: list[tuple[int, str, bytes]] = []
    link = _link(received)
    buf = bytearray()
    last = 0
    for cut in [*cuts, len(stream)]:
        buf += stream[last:cut]
        last = cut
        del buf[: link._parse(buf, 1)]
    assert received == expected
    assert not buf


@given(msgs=messages)
@settings(max_examples=50, deadline=None)
def test_every_offset_of_a_valid_stream(msgs: list[tuple[str, bytes, int]]) -> None:
    stream, expected = _stream(msgs[:3])
    for cut in range(len(stream) + 1):
        received: list[tuple[int, str, bytes]] = []
        link = _link(received)
        buf = bytearray(stream[:cut])
        del buf[: link._parse(buf, 1)]
        buf += stream[cut:]
        del buf[: link._parse(buf, 1)]
        assert received == expected[:3], cut


@given(st.binary(max_size=400))
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_give_messages_or_malformed_packet_never_another_error(junk: bytes) -> None:
    received: list[tuple[int, str, bytes]] = []
    link = _link(received)
    link._subscribed = None
    # a DISCONNECT from the broker (BrokerUnavailable) is the one other way out; anything else fails the test
    with contextlib.suppress(wire.MalformedPacket, BrokerUnavailable):
        link._parse(bytearray(junk), 1)
    assert all(isinstance(t, str) and isinstance(p, bytes) for _, t, p in received)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_arbitrary_connack_bodies_parse_or_are_malformed(body: bytes) -> None:
    try:
        got = wire.parse_connack(body)
    except wire.MalformedPacket:
        return
    assert got.receive_maximum >= 1


def test_malformed_input_ends_the_connection_at_once_with_a_clear_log(caplog: pytest.LogCaptureFixture) -> None:
    """A PUBLISH with remaining length 0 used to raise IndexError in the read task, which died; the connection was
    noticed dead only after 45 s of silence. Now the read loop closes it at once (the service then reconnects)."""

    async def scenario() -> tuple[bool, str]:
        received: list[tuple[int, str, bytes]] = []
        link = _link(received)
        reader = asyncio.StreamReader()
        reader.feed_data(wire.publish_packet(wire.string("ok"), b"1", 0, 0) + b"\x32\x00")
        link._reader = reader
        task = asyncio.create_task(link._read_loop(1))
        await asyncio.wait_for(link.lost.wait(), 5)
        await task
        return bool(received), str(task.exception())

    with caplog.at_level("ERROR"):
        got_first, exc = asyncio.run(scenario())
    assert got_first
    assert exc == "None"
    assert any("malformed packet" in r.getMessage() for r in caplog.records)


def test_partitions_split_devices_stably_and_keep_malformed_topics_in_the_first() -> None:
    from ingest.mqtt import partition_of

    topics = [f"lykta/solvik/streetlight_controller/SLC-{n:04d}/telemetry" for n in range(1, 245)]
    split = [partition_of(t, 2) for t in topics]
    assert set(split) == {1, 2} and 80 < split.count(1) < 164
    assert [partition_of(t, 2) for t in topics] == split  # the same every time, in every process
    assert partition_of(topics[0].replace("telemetry", "status"), 2) == split[0]  # by device, not by channel
    assert partition_of("lykta/broken", 2) == 1
    assert all(partition_of(t, 1) == 1 for t in topics)


def test_messages_of_another_partition_are_acknowledged_not_delivered() -> None:
    received: list[tuple[int, str, bytes]] = []
    link = MqttLink(
        "127.0.0.1", 1, "test", ["t"], lambda _g, mid, t, p: received.append((mid, t, p)),
        receive_maximum=10, session_expiry_s=0, partition=(1, 2),
    )  # fmt: skip
    from ingest.mqtt import partition_of

    topics = [f"lykta/solvik/streetlight_controller/SLC-{n:04d}/telemetry" for n in range(1, 21)]
    stream = b"".join(wire.publish_packet(wire.string(t), b"x", 1, n) for n, t in enumerate(topics, start=1))
    link._parse(bytearray(stream), 1)
    mine = [n for n, t in enumerate(topics, start=1) if partition_of(t, 2) == 1]
    assert [mid for mid, _, _ in received] == mine
    others = [n for n in range(1, 21) if n not in mine]
    assert bytes(link._acks) == b"".join(wire.puback_packet(n) for n in others)
