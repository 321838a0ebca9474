"""What a hostile or broken device account sends must not cost other devices memory, time or data."""

from __future__ import annotations

import tracemalloc

import orjson
import pytest

from ingest import decode as decoder
from ingest.decode import Limits, decode
from ingest.registry import MAX_MISSING, Registry
from tests.unit.test_decode import CATALOGUE, LIMITS, NOW

EVENT = "lykta/solvik/streetlight_controller/SLC-0001/event"
STATUS = "lykta/solvik/streetlight_controller/SLC-0001/status"
TELEMETRY = "lykta/solvik/streetlight_controller/SLC-0001/telemetry"


@pytest.mark.parametrize(
    ("topic", "doc"),
    [
        (EVENT, {"ts": NOW - 5, "event": "pole_tilt", "detail": {"note": "a\u0000b"}}),
        (EVENT, {"ts": NOW - 5, "event": "pole_tilt", "detail": {"k\u0000": 1}}),
        (EVENT, {"ts": NOW - 5, "event": "pole_tilt", "detail": {"deep": [{"x": "\u0000"}]}}),
        (STATUS, {"state": "offline", "reason": "power\u0000cut"}),
    ],
)
def test_text_the_database_cannot_store_is_refused_by_the_decoder(topic: str, doc: dict[str, object]) -> None:
    """PostgreSQL refuses U+0000 in text and jsonb; such a message used to reach the database and throttle the whole
    batch (retried one message per transaction). The decoder refuses it, so the batch never fails."""
    got = decode(topic, orjson.dumps(doc), NOW, CATALOGUE, LIMITS)
    assert got.rejected is not None
    assert "U+0000" in got.rejected.detail
    assert got.event is None and got.status is None


@pytest.mark.parametrize("ts", ["20261127T115900Z", "2026-11-27T11:59Z", "2026-W48-5T11:59:00Z", "2026-11-27T11:59:00"])
def test_timestamps_that_are_not_rfc_3339_are_refused(ts: str) -> None:
    doc = {"ts": ts, "metrics": {"power_w": 40}}
    got = decode(TELEMETRY, orjson.dumps(doc), NOW, CATALOGUE, Limits(max_age_s=10 * 365 * 86400.0))
    assert got.rejected is not None and got.rejected.reason == "bad_timestamp", ts


def test_rfc_3339_times_are_taken() -> None:
    for ts in ("2026-11-27T11:59:00Z", "2026-11-27T12:59:00.250+01:00", "2026-11-27t11:59:00z", "2026-11-27 11:59:00Z"):
        got = decode(TELEMETRY, orjson.dumps({"ts": ts, "metrics": {"power_w": 40}}), NOW, CATALOGUE, LIMITS)
        assert got.rejected is None, ts
        assert got.readings and abs(got.readings[0][0] - (NOW - 60)) < 1, ts


@pytest.mark.parametrize("ts", [1e300, -1e300, 1.7976931348623157e308])
def test_a_dead_letter_detail_stays_short(ts: float) -> None:
    got = decode(TELEMETRY, orjson.dumps({"ts": ts, "metrics": {"power_w": 40}}), NOW, CATALOGUE, LIMITS)
    assert got.rejected is not None
    assert len(got.rejected.detail) <= 200, got.rejected.detail


def test_many_rejections_make_one_short_detail() -> None:
    doc = {"batch": [{"ts": NOW - k, "metrics": {f"nope_{k}_" + "x" * 150: 1}} for k in range(500)]}
    got = decode(TELEMETRY, orjson.dumps(doc), NOW, CATALOGUE, LIMITS)
    assert got.rejected is not None
    assert len(got.rejected.detail) <= 1000


def test_long_topics_are_refused_without_keeping_them() -> None:
    """4,000 messages with 60,000-character device segments took a worker from 87 to 434 MB: every topic was kept
    in the decoder's cache (up to 200,000 of them). Topics longer than the contract allows are refused at once and
    never cached, and the cache is bounded by bytes."""
    decoder.clear_topic_cache()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(300):
            topic = f"lykta/solvik/streetlight_controller/{'x' * 60_000}{n}/telemetry"
            got = decode(topic, b"{}", NOW, CATALOGUE, LIMITS)
            assert got.rejected is not None and got.rejected.reason == "bad_topic"
            assert len(got.rejected.detail) <= 300
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 2_000_000, f"the decoder kept {grown:,} bytes for 300 refused topics"


def test_the_topic_cache_is_bounded_by_bytes() -> None:
    decoder.clear_topic_cache()
    for n in range(50_000):
        decoder.parse_topic(f"lykta/solvik/streetlight_controller/D-{n:06d}-{'y' * 100}/telemetry")
    assert decoder.topic_cache_bytes() <= decoder.TOPIC_CACHE_BYTES


def test_unknown_devices_are_remembered_within_a_bound() -> None:
    """100,000 unknown device ids added 43 MB to a worker for good (the registry never forgot one)."""
    registry = Registry(register_unknown=False)
    for n in range(MAX_MISSING + 5_000):
        registry._remember_missing(("solvik", f"FAKE-{n}"), float(n))
    assert len(registry._missing) == MAX_MISSING
    assert ("solvik", "FAKE-0") not in registry._missing
    assert ("solvik", f"FAKE-{MAX_MISSING + 4_999}") in registry._missing
