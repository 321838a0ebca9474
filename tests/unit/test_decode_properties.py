"""Hostile input, property-based (hypothesis): whatever bytes or JSON arrive, the decoder either yields readings,
a status or an event within the contract, or rejections with a documented reason; it never fails itself."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.decode import REASONS, Decoded, decode
from tests.unit.test_decode import CATALOGUE, LIMITS, NOW

TOPICS = [
    "lykta/solvik/streetlight_controller/SLC-0001/telemetry",
    "lykta/solvik/streetlight_controller/SLC-0001/status",
    "lykta/solvik/streetlight_controller/SLC-0001/event",
    "lykta/solvik/road_weather_station/RWS-01/telemetry",
]
METRICS = sorted(CATALOGUE)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=16,
)
TIMES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.just(NOW),
    st.floats(min_value=NOW - 86400, max_value=NOW + 60),
    st.text(max_size=30),
    st.sampled_from(["2026-11-27T11:59:00Z", "2026-11-27T11:59:00+01:00", "yesterday", "", "2026-13-40T99:99Z"]),
    JSON,
)
VALUES = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(), st.booleans(), JSON)


def single() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {"ts": TIMES, "metrics": st.dictionaries(st.sampled_from(METRICS) | st.text(max_size=8), VALUES, max_size=5)},
        optional={"extra": JSON, "units": st.dictionaries(st.sampled_from(METRICS), st.text(max_size=5), max_size=2)},
    )


def senml() -> st.SearchStrategy[Any]:
    record = st.fixed_dictionaries(
        {},
        optional={
            "bn": st.text(max_size=12), "bt": TIMES, "n": st.sampled_from(METRICS) | st.text(max_size=8),
            "u": st.sampled_from(["W", "V", "kWh", "Cel", "m", "%", "K", ""]) | st.text(max_size=4), "v": VALUES,
            "vb": st.booleans() | JSON, "t": TIMES,
        },
    )  # fmt: skip
    return st.lists(record, max_size=6)


PAYLOADS = st.one_of(
    single(),
    st.fixed_dictionaries({"batch": st.lists(single() | JSON, max_size=6)}),
    senml(),
    JSON,
)


def check(d: Decoded) -> None:
    reasons = [r.reason for r in d.rejections]
    assert "decoder_error" not in reasons, d.rejections
    assert set(reasons) <= set(REASONS), reasons
    assert d.readings or d.status or d.event or d.rejections, "a message with nothing in it must say why"
    ids = {m.metric_id: m for m in CATALOGUE.values()}
    for t, metric_id, value in d.readings:
        assert math.isfinite(t) and math.isfinite(value)
        assert metric_id in ids and ids[metric_id].min_value <= value <= ids[metric_id].max_value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS) | st.text(max_size=80), payload=st.binary(max_size=3000))
def test_arbitrary_bytes_are_stored_or_refused_with_a_reason(topic: str, payload: bytes) -> None:
    check(decode(topic, payload, NOW, CATALOGUE, LIMITS))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), doc=PAYLOADS)
def test_structured_payloads_are_stored_or_refused_with_a_reason(topic: str, doc: Any) -> None:
    check(decode(topic, json.dumps(doc).encode(), NOW, CATALOGUE, LIMITS))


@settings(max_examples=300, deadline=None)
@given(doc=single(), cut=st.integers(min_value=0, max_value=400), flip=st.integers(min_value=0, max_value=255))
def test_damaged_payloads_are_refused_not_fatal(doc: Any, cut: int, flip: int) -> None:
    raw = bytearray(json.dumps(doc).encode())
    if raw:
        raw[cut % len(raw)] ^= flip
    check(decode(TOPICS[0], bytes(raw[: max(1, len(raw) - cut % 7)]), NOW, CATALOGUE, LIMITS))
